//! Helpers for end-to-end tests: real peer processes, the agent binary,
//! metric scraping. Peers come from `scripts/install-peers.sh`; when one is
//! missing a test prints why it skips, and under CI=true it fails instead.
#![allow(dead_code)]

pub mod delay;
pub mod hostile;
pub mod mosquitto;
pub mod netns;
pub mod proxies;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn peers_dir() -> PathBuf {
    std::env::var_os("SOCKPULSE_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".peers"))
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns whether a peer is there; prints why the test skips when it is
/// not, and panics under CI, where a missing peer is a failure.
pub fn require(peer: &str, available: bool) -> bool {
    if available {
        return true;
    }
    let msg = format!("peer {peer} is not installed (run scripts/install-peers.sh)");
    if in_ci() {
        panic!("{msg}; CI=true makes this a failure");
    }
    eprintln!("SKIP: {msg}");
    false
}

pub fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(cmd))
        .find(|p| p.is_file())
        .or_else(|| {
            ["/usr/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(cmd))
                .find(|p| p.is_file())
        })
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`, ...); 0 if unreadable.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A Python `websockets` server and an agent watching it as `target`, with
/// two RTTs measured; the caller stops the server (the hung-peer fault).
pub fn agent_on_healthy_python_peer(target: &str) -> Option<(Proc, Agent)> {
    let (server, port) = python_ws(0, &[])?;
    let agent = Agent::start(&one_target(target, &format!("ws://127.0.0.1:{port}/"), ""));
    agent.wait_metric(
        "sockpulse_ping_rtt_seconds_count",
        &[("target", target)],
        Duration::from_secs(20),
        |v| v >= 2.0,
    );
    Some((server, agent))
}

/// A loopback port nothing listens on, for a server a test starts. Taken
/// below the kernel's ephemeral range: a port from that range can go to an
/// outgoing connection of a test running in parallel (a connect storm opens
/// thousands) before the server binds it, and RabbitMQ takes seconds to boot.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOWEST: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(0);
    if ephemeral_from > LOWEST + 1_000 {
        let band = ephemeral_from - LOWEST;
        // Each test process walks the band from its own place.
        let offset = std::process::id() % band;
        for _ in 0..band {
            let port = LOWEST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % band;
            if let Ok(port) = u16::try_from(port) {
                if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                    return port;
                }
            }
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A child process whose output lines are collected; killed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = Arc::clone(&lines);
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Proc {
            name: name.to_string(),
            child,
            lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn output_text(&self) -> String {
        self.output().join("\n")
    }

    /// Waits for a line containing `needle`; returns it.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.output().into_iter().find(|l| l.contains(needle));
            found.is_some()
        });
        found
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits for exit; returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut code = None;
        wait_until(timeout, || match self.child.try_wait() {
            Ok(Some(status)) => {
                code = Some(status.code().unwrap_or(-1));
                true
            }
            _ => false,
        });
        code
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGCONT first: a stopped process cannot die until continued.
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status();
        self.kill();
    }
}

fn listening_port(p: &Proc) -> u16 {
    let line = p
        .wait_line("LISTENING ", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{} did not start:\n{}", p.name, p.output_text()));
    line.trim()
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("port")
}

pub fn python() -> Option<PathBuf> {
    let py = peers_dir().join("venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import websockets, cryptography"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require("python websockets", ok).then_some(py)
}

/// Python `websockets` echo server; `extra` are ws_server.py flags.
pub fn python_ws(port: u16, extra: &[&str]) -> Option<(Proc, u16)> {
    let py = python()?;
    let mut cmd = Command::new(py);
    cmd.arg(repo().join("tests/peers/ws_server.py"))
        .arg("--port")
        .arg(port.to_string())
        .args(extra);
    let p = Proc::spawn("python websockets", &mut cmd);
    let port = listening_port(&p);
    Some((p, port))
}

/// Python `websockets` over TLS with `certs/<cert>.pem` and `.key` (see
/// `certs()`); `extra` are more ws_server.py flags.
pub fn python_wss(certs: &Path, cert: &str, extra: &[&str]) -> Option<(Proc, u16)> {
    let pem = certs.join(format!("{cert}.pem")).display().to_string();
    let key = certs.join(format!("{cert}.key")).display().to_string();
    let mut args = vec!["--cert", pem.as_str(), "--key", key.as_str()];
    args.extend_from_slice(extra);
    python_ws(0, &args)
}

pub fn node_ws(port: u16) -> Option<(Proc, u16)> {
    node_peer("node ws", "ws_server.js", "ws", &[&port.to_string()])
}

/// A Node peer script from tests/peers, run with the project's Node
/// packages, `package` being the one it needs; `args` go to the script.
pub fn node_peer(what: &str, script: &str, package: &str, args: &[&str]) -> Option<(Proc, u16)> {
    let modules = peers_dir().join("node/node_modules");
    if !require(
        what,
        modules.join(package).join("package.json").is_file() && which("node").is_some(),
    ) {
        return None;
    }
    let mut cmd = Command::new("node");
    cmd.env("NODE_PATH", &modules)
        .arg(repo().join("tests/peers").join(script))
        .args(args);
    let p = Proc::spawn(what, &mut cmd);
    let port = listening_port(&p);
    Some((p, port))
}

/// A Python peer script from tests/peers in the project's venv, which must
/// be able to import `module`; `args` go to the script.
pub fn python_peer(what: &str, script: &str, module: &str, args: &[&str]) -> Option<(Proc, u16)> {
    let py = peers_dir().join("venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !require(what, ok) {
        return None;
    }
    let mut cmd = Command::new(py);
    cmd.arg(repo().join("tests/peers").join(script)).args(args);
    let p = Proc::spawn(what, &mut cmd);
    let port = listening_port(&p);
    Some((p, port))
}

/// A private RabbitMQ node (tests/peers/rabbitmq.sh): MQTT over WebSocket
/// and STOMP over WebSocket at `/ws`, plain MQTT for publishers; guest/guest
/// from loopback. Stopped (`rabbitmqctl stop`) on drop.
pub struct RabbitMq {
    pub node: String,
    pub mqtt_ws: u16,
    pub stomp_ws: u16,
    pub mqtt_tcp: u16,
    ports: (u16, u16),
    dir: tempfile_dir::TempDir,
    proc: Option<Proc>,
    /// The node's Erlang VM: what SIGSTOP must reach (the server script
    /// runs it under `su`).
    vm_pid: Option<u32>,
}

impl RabbitMq {
    pub fn start() -> Option<RabbitMq> {
        let available = which("rabbitmq-server").is_some() && which("rabbitmqctl").is_some();
        if !require(
            "rabbitmq-server (Debian, with its web_mqtt and web_stomp plugins)",
            available,
        ) {
            return None;
        }
        let mut r = RabbitMq {
            node: format!("sockpulse-test-{}@localhost", std::process::id()),
            mqtt_ws: free_port(),
            stomp_ws: free_port(),
            mqtt_tcp: free_port(),
            ports: (free_port(), free_port()),
            dir: tempfile_dir::TempDir::new("rabbitmq"),
            proc: None,
            vm_pid: None,
        };
        r.launch();
        Some(r)
    }

    /// Starts the node (again, after `stop`) and waits until both
    /// WebSocket listeners answer.
    pub fn launch(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(repo().join("tests/peers/rabbitmq.sh"))
            .arg(self.dir.path().join("node"))
            .arg(&self.node)
            .args([self.ports.0, self.ports.1, self.mqtt_ws, self.stomp_ws, self.mqtt_tcp].map(|p| p.to_string()));
        let p = Proc::spawn("rabbitmq", &mut cmd);
        let up = wait_until(Duration::from_secs(90), || {
            [self.mqtt_ws, self.stomp_ws]
                .iter()
                .all(|&port| TcpStream::connect(("127.0.0.1", port)).is_ok())
        });
        assert!(up, "rabbitmq did not start:\n{}", p.output_text());
        self.proc = Some(p);
        let out = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "eval", "os:getpid()."])
            .output()
            .expect("rabbitmqctl eval");
        self.vm_pid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_matches('"')
            .parse()
            .ok();
    }

    pub fn signal_vm(&self, sig: &str) {
        let pid = self.vm_pid.expect("the node's VM pid");
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub fn stop(&mut self) {
        self.vm_pid = None;
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut p) = self.proc.take() {
            p.wait_exit(Duration::from_secs(30));
            p.kill();
        }
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        if let Some(pid) = self.vm_pid {
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        self.stop();
        // The node leaves its Erlang port mapper behind.
        let _ = Command::new("epmd")
            .arg("-kill")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// nginx proxying `/ws` to a WebSocket backend; every other path is a 404.
pub fn nginx_ws_proxy(backend_port: u16) -> Option<(Proc, u16, tempfile_dir::TempDir)> {
    nginx_ws_proxy_with(backend_port, "60s")
}

/// The same with `proxy_read_timeout` (nginx closes a WebSocket whose
/// backend sent nothing for that long).
pub fn nginx_ws_proxy_with(backend_port: u16, read_timeout: &str) -> Option<(Proc, u16, tempfile_dir::TempDir)> {
    let locations = format!(
        r#"location /ws {{
      proxy_pass http://127.0.0.1:{backend_port};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout {read_timeout};
    }}
    location / {{ return 404; }}"#
    );
    let port = free_port();
    nginx_with(port, &locations).map(|(p, dir)| (p, port, dir))
}

/// nginx on 127.0.0.1:`port` with these `location` blocks.
pub fn nginx_with(port: u16, locations: &str) -> Option<(Proc, tempfile_dir::TempDir)> {
    let nginx = which("nginx");
    if !require("nginx", nginx.is_some()) {
        return None;
    }
    let dir = tempfile_dir::TempDir::new("nginx");
    let prefix = dir.path().display().to_string();
    let conf = format!(
        // One process: the test kills it with SIGKILL, which would orphan
        // a worker still holding the port.
        r#"master_process off;
error_log {prefix}/error.log info;
pid {prefix}/nginx.pid;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  server {{
    listen 127.0.0.1:{port};
    {locations}
  }}
}}
"#
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let mut cmd = Command::new(nginx.expect("checked"));
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"]);
    let p = Proc::spawn("nginx", &mut cmd);
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port))
            .is_ok()),
        "nginx did not start: {}",
        p.output_text()
    );
    Some((p, dir))
}

pub fn redis() -> Option<(Proc, u16)> {
    let bin = which("redis-server");
    if !require("redis-server", bin.is_some()) {
        return None;
    }
    let port = free_port();
    let mut cmd = Command::new(bin.expect("checked"));
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    let p = Proc::spawn("redis", &mut cmd);
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port))
            .is_ok()),
        "redis did not start: {}",
        p.output_text()
    );
    Some((p, port))
}

/// Throwaway CA and certificates (see tests/peers/make_certs.py).
pub fn certs() -> Option<tempfile_dir::TempDir> {
    let py = python()?;
    let dir = tempfile_dir::TempDir::new("certs");
    let out = Command::new(py)
        .arg(repo().join("tests/peers/make_certs.py"))
        .arg(dir.path())
        .output()
        .expect("run make_certs");
    assert!(
        out.status.success(),
        "make_certs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}

pub fn sockpulse_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockpulse")
}

/// Runs a one-shot sockpulse command to completion.
pub fn sockpulse(args: &[&str]) -> Output {
    Command::new(sockpulse_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sockpulse")
}

/// How the agent process is started.
enum Wrap {
    Direct,
    Nofile(u32),
    /// Inside a namespace (name, the address to listen on).
    Netns(String, String),
    /// With this file as its /etc/hosts (a private mount namespace).
    Hosts(PathBuf),
    /// Directly, listening on this address.
    Listen(String),
}

/// The command that runs `program` with `hosts` bind-mounted over
/// /etc/hosts in a private mount namespace (nothing else sees it; edits
/// made in place to the file show through).
pub fn with_hosts_file(hosts: &Path, program: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-m", "sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\""])
        .arg(hosts)
        .arg(program);
    c
}

/// A running `sockpulse run` with its HTTP address.
pub struct Agent {
    pub proc: Proc,
    pub addr: String,
    _dir: tempfile_dir::TempDir,
}

impl Agent {
    /// Starts the agent with `config` (TOML) on an ephemeral port.
    pub fn start(config: &str) -> Agent {
        Agent::start_with(config, &[])
    }

    pub fn start_with(config: &str, extra: &[&str]) -> Agent {
        Agent::start_env(config, &[], extra)
    }

    pub fn start_env(config: &str, env: &[(&str, &str)], extra: &[&str]) -> Agent {
        Agent::launch(config, env, extra, Wrap::Direct)
    }

    /// Starts the agent listening on `address` (to restart it on the same one).
    pub fn start_listening(config: &str, address: &str) -> Agent {
        Agent::launch(config, &[], &[], Wrap::Listen(address.to_string()))
    }

    /// Starts the agent with both the soft and the hard file limit at `nofile`.
    pub fn start_with_nofile(config: &str, nofile: u32) -> Agent {
        Agent::launch(config, &[], &[], Wrap::Nofile(nofile))
    }

    /// Starts the agent with `hosts` as its /etc/hosts.
    pub fn start_with_hosts(config: &str, hosts: &Path) -> Agent {
        Agent::launch(config, &[], &[], Wrap::Hosts(hosts.to_path_buf()))
    }

    /// Starts the agent inside a test namespace, listening on its address.
    pub fn start_in_netns(config: &str, ns: &netns::NetNs, extra: &[&str]) -> Agent {
        Agent::launch(
            config,
            &[],
            extra,
            Wrap::Netns(ns.name.clone(), format!("{}:0", ns.peer_ip)),
        )
    }

    /// Starts the agent on node `j` of a LAN, listening on its address and `port`.
    pub fn start_on_lan(config: &str, lan: &netns::Lan, j: usize, port: u16) -> Agent {
        let node = &lan.nodes[j];
        Agent::launch(
            config,
            &[],
            &[],
            Wrap::Netns(node.name.clone(), format!("{}:{port}", node.ip)),
        )
    }

    fn launch(config: &str, env: &[(&str, &str)], extra: &[&str], wrap: Wrap) -> Agent {
        let dir = tempfile_dir::TempDir::new("agent");
        let path = dir.path().join("sockpulse.toml");
        std::fs::write(&path, config).expect("write config");
        let mut listen = "127.0.0.1:0".to_string();
        let mut cmd = match wrap {
            Wrap::Nofile(n) => {
                let mut c = Command::new("bash");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), sockpulse_bin()]);
                c
            }
            Wrap::Netns(name, address) => {
                listen = address;
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &name, sockpulse_bin()]);
                c
            }
            Wrap::Hosts(path) => with_hosts_file(&path, sockpulse_bin()),
            Wrap::Listen(address) => {
                listen = address;
                Command::new(sockpulse_bin())
            }
            Wrap::Direct => Command::new(sockpulse_bin()),
        };
        cmd.arg("run")
            .arg("--config")
            .arg(&path)
            .args(["--web.listen-address", &listen])
            .args(extra);
        cmd.env("RUST_LOG", "info").envs(env.iter().copied());
        let proc = Proc::spawn("sockpulse", &mut cmd);
        let line = proc
            .wait_line("listening on http", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("agent did not start:\n{}", proc.output_text()));
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .expect("addr")
            .to_string();
        Agent { proc, addr, _dir: dir }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path)
    }

    /// The config file the agent runs with (tests rewrite it, then reload).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("sockpulse.toml")
    }

    /// Rewrites the config file and sends SIGHUP.
    pub fn reload_with(&self, config: &str) {
        std::fs::write(self.config_path(), config).expect("write config");
        self.proc.signal("HUP");
    }

    pub fn scrape(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "scrape failed: {body}");
        body
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_value(&self.scrape(), name, labels)
    }

    /// Polls until the metric satisfies `pred`; panics with the logs if not.
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        timeout: Duration,
        pred: impl Fn(f64) -> bool,
    ) -> f64 {
        let mut last = None;
        let ok = wait_until(timeout, || {
            last = self.metric(name, labels);
            last.is_some_and(&pred)
        });
        assert!(
            ok,
            "{name}{labels:?} never satisfied the condition (last {last:?}); agent log:\n{}",
            self.proc.output_text()
        );
        last.expect("checked")
    }

    /// Waits for a log line containing `needle`; panics with the logs if none.
    pub fn wait_until_log(&self, needle: &str, timeout: Duration) -> String {
        let mut found = None;
        let ok = wait_until(timeout, || {
            found = self.proc.output().into_iter().find(|l| l.contains(needle));
            found.is_some()
        });
        assert!(
            ok,
            "no log line with {needle:?}; agent log:\n{}",
            self.proc.output_text()
        );
        found.expect("checked")
    }
}

pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to agent");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    // HTTP/1.0: no chunked bodies to decode (Prometheus would chunk 1.1).
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of the series `name` whose labels include all of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if all {
            value.parse().ok()
        } else {
            None
        }
    })
}

/// A config with `fast_defaults()` and one target; `extra` is more TOML
/// for that target (empty for none).
pub fn one_target(name: &str, url: &str, extra: &str) -> String {
    format!(
        "{}\n[[target]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n",
        fast_defaults()
    )
}

/// Short timings so faults show within a second or two.
pub fn fast_defaults() -> &'static str {
    r#"[defaults]
ping_interval = "500ms"
pong_timeout = "300ms"
connect_timeout = "1s"
handshake_timeout = "1s"
close_timeout = "500ms"
backoff = { min = "100ms", max = "500ms" }
"#
}

pub mod tempfile_dir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A temporary directory removed on drop (no extra crate needed).
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "sockpulse-test-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("mkdir temp");
            TempDir(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `promtool check metrics` on an exposition: its complaints, if any.
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let promtool = which("promtool").ok_or("promtool not installed")?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
