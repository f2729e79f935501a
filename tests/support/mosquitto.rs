//! Mosquitto (MQTT 5) behind websocat as its WebSocket listener: Debian's
//! mosquitto 2.0 has no WebSocket listener that starts here.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, require, tempfile_dir, wait_until, which, Proc};

pub struct Mosquitto {
    _broker: Proc,
    _bridge: Proc,
    /// The broker's own MQTT port (for mosquitto_ctrl and publishers).
    pub tcp_port: u16,
    /// The WebSocket port sessions connect to.
    pub ws_port: u16,
    _dir: tempfile_dir::TempDir,
}

const ADMIN: (&str, &str) = ("admin", "admin-secret");

impl Mosquitto {
    /// A broker whose users are in a password file, with an ACL file.
    pub fn with_password(user: &str, password: &str, acl: &str) -> Option<Mosquitto> {
        if !available(&["mosquitto_passwd"]) {
            return None;
        }
        let dir = tempfile_dir::TempDir::new("mosquitto");
        let passwords = dir.path().join("passwords");
        let status = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwords)
            .args([user, password])
            .status()
            .expect("mosquitto_passwd");
        assert!(status.success());
        let acl_file = dir.path().join("acl");
        std::fs::write(&acl_file, acl).expect("write acl");
        let auth = format!(
            "password_file {}\nacl_file {}\n",
            passwords.display(),
            acl_file.display()
        );
        Some(start(dir, &auth))
    }

    /// A broker with the dynamic-security plugin, administered with
    /// mosquitto_ctrl (`ctrl`): it can kick a client, which is how a real
    /// broker sends an MQTT 5 DISCONNECT of its own.
    pub fn with_dynamic_security() -> Option<Mosquitto> {
        let plugin = Path::new("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so");
        if !available(&["mosquitto_ctrl"]) || !require("mosquitto's dynamic security plugin", plugin.is_file()) {
            return None;
        }
        let dir = tempfile_dir::TempDir::new("mosquitto");
        let state = dir.path().join("dynamic-security.json");
        let out = Command::new("mosquitto_ctrl")
            .args(["dynsec", "init"])
            .arg(&state)
            .args([ADMIN.0, ADMIN.1])
            .output()
            .expect("mosquitto_ctrl");
        assert!(out.status.success(), "dynsec init: {out:?}");
        let auth = format!(
            "plugin {}\nplugin_opt_config_file {}\n",
            plugin.display(),
            state.display()
        );
        Some(start(dir, &auth))
    }

    /// Runs `mosquitto_ctrl dynsec ARGS` against this broker as its admin.
    pub fn ctrl(&self, args: &[&str]) {
        let out = Command::new("mosquitto_ctrl")
            .args(["-h", "127.0.0.1", "-p", &self.tcp_port.to_string()])
            .args(["-u", ADMIN.0, "-P", ADMIN.1, "dynsec"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("mosquitto_ctrl");
        assert!(out.status.success(), "mosquitto_ctrl dynsec {args:?}: {out:?}");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(!said.contains("Error"), "mosquitto_ctrl dynsec {args:?}: {said}");
    }
}

fn websocat() -> Option<std::path::PathBuf> {
    which("websocat").or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = Path::new(&home).join(".cargo/bin/websocat");
        p.is_file().then_some(p)
    })
}

fn available(tools: &[&str]) -> bool {
    let all = which("mosquitto").is_some() && websocat().is_some() && tools.iter().all(|t| which(t).is_some());
    require(&format!("mosquitto, websocat and {}", tools.join(", ")), all)
}

fn start(dir: tempfile_dir::TempDir, auth: &str) -> Mosquitto {
    let tcp_port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {tcp_port} 127.0.0.1\nallow_anonymous false\n{auth}log_dest stdout\n"),
    )
    .expect("write mosquitto.conf");
    let broker = Proc::spawn("mosquitto", Command::new("mosquitto").arg("-c").arg(&conf));
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", tcp_port))
            .is_ok()),
        "mosquitto did not listen:\n{}",
        broker.output_text()
    );
    let ws_port = free_port();
    let bridge = Proc::spawn(
        "websocat",
        Command::new(websocat().expect("checked by available()"))
            .args(["--binary", "--server-protocol", "mqtt"])
            .arg(format!("ws-l:127.0.0.1:{ws_port}"))
            .arg(format!("tcp:127.0.0.1:{tcp_port}")),
    );
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", ws_port))
            .is_ok()),
        "websocat did not listen:\n{}",
        bridge.output_text()
    );
    Mosquitto {
        _broker: broker,
        _bridge: bridge,
        tcp_port,
        ws_port,
        _dir: dir,
    }
}
