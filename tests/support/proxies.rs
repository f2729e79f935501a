//! Real proxies for the tests: tinyproxy (HTTP CONNECT), microsocks
//! (SOCKS5) and haproxy (a WebSocket load balancer), each started on a free
//! loopback port.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use super::{free_port, require, tempfile_dir::TempDir, wait_until, which, Proc};

/// A running proxy; stopped on drop.
pub struct Proxy {
    pub proc: Proc,
    pub port: u16,
    _dir: Option<TempDir>,
}

impl Proxy {
    fn started(proc: Proc, port: u16, dir: Option<TempDir>) -> Proxy {
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port))
                .is_ok()),
            "{} did not start:\n{}",
            proc.name,
            proc.output_text()
        );
        Proxy { proc, port, _dir: dir }
    }
}

/// tinyproxy allowing CONNECT only to `connect_ports`; with `basic_auth`
/// it demands those credentials (407 without).
pub fn tinyproxy(connect_ports: &[u16], basic_auth: Option<(&str, &str)>) -> Option<Proxy> {
    let bin = which("tinyproxy");
    if !require("tinyproxy", bin.is_some()) {
        return None;
    }
    let dir = TempDir::new("tinyproxy");
    let port = free_port();
    let mut conf =
        format!("Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 512\nAllow 127.0.0.1\nLogLevel Connect\n");
    // As root, tinyproxy insists on dropping privileges.
    conf.push_str("User nobody\nGroup nogroup\n");
    for p in connect_ports {
        conf.push_str(&format!("ConnectPort {p}\n"));
    }
    if let Some((user, password)) = basic_auth {
        conf.push_str(&format!("BasicAuth {user} {password}\n"));
    }
    let path = dir.path().join("tinyproxy.conf");
    std::fs::write(&path, conf).expect("write tinyproxy.conf");
    let mut cmd = Command::new(bin.expect("checked"));
    cmd.arg("-d").arg("-c").arg(&path);
    Some(Proxy::started(Proc::spawn("tinyproxy", &mut cmd), port, Some(dir)))
}

/// microsocks (SOCKS5, names resolved by the proxy when asked to); with
/// `auth` it demands username/password.
pub fn microsocks(auth: Option<(&str, &str)>) -> Option<Proxy> {
    let bin = which("microsocks");
    if !require("microsocks", bin.is_some()) {
        return None;
    }
    let port = free_port();
    let mut cmd = Command::new(bin.expect("checked"));
    cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((user, password)) = auth {
        cmd.args(["-u", user, "-P", password]);
    }
    Some(Proxy::started(Proc::spawn("microsocks", &mut cmd), port, None))
}

/// haproxy in HTTP mode in front of `backend_port`, closing WebSocket
/// tunnels idle (no traffic either way) for `tunnel_timeout`.
pub fn haproxy_ws(backend_port: u16, tunnel_timeout: &str) -> Option<Proxy> {
    let bin = which("haproxy");
    if !require("haproxy", bin.is_some()) {
        return None;
    }
    let dir = TempDir::new("haproxy");
    let port = free_port();
    let conf = format!(
        "global\n  maxconn 1000\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n  \
         timeout tunnel {tunnel_timeout}\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
         backend be\n  server s1 127.0.0.1:{backend_port}\n"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, conf).expect("write haproxy.cfg");
    let mut cmd = Command::new(bin.expect("checked"));
    cmd.arg("-db").arg("-f").arg(&path);
    Some(Proxy::started(Proc::spawn("haproxy", &mut cmd), port, Some(dir)))
}
