//! A second "host" on this machine: a network namespace joined to ours by a
//! veth pair, for faults loopback cannot show (dropped packets). Needs root,
//! iproute2 and iptables; removed on drop, even when the test fails.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct NetNs {
    pub name: String,
    host_if: String,
    /// The namespace's address, reachable from the test process.
    pub peer_ip: String,
}

fn run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl NetNs {
    /// Creates the namespace, or returns `None` (after `require`) when this
    /// machine cannot.
    pub fn create() -> Option<NetNs> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        let tools = super::which("ip").is_some() && super::which("iptables").is_some();
        if !super::require("network namespaces (root, iproute2, iptables)", root && tools) {
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = (std::process::id() % 10_000) * 10 + n;
        let subnet = 1 + (std::process::id() * 7 + n) % 250;
        let ns = NetNs {
            name: format!("sockpulse-test-{id}"),
            host_if: format!("sp{id}a"),
            peer_ip: format!("10.231.{subnet}.2"),
        };
        let peer_if = format!("sp{id}b");
        let host_addr = format!("10.231.{subnet}.1/30");
        let peer_addr = format!("{}/30", ns.peer_ip);
        let steps: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", &ns.name],
            vec![
                "ip",
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &peer_if,
            ],
            vec!["ip", "link", "set", &peer_if, "netns", &ns.name],
            vec!["ip", "addr", "add", &host_addr, "dev", &ns.host_if],
            vec!["ip", "link", "set", &ns.host_if, "up"],
            vec![
                "ip", "netns", "exec", &ns.name, "ip", "addr", "add", &peer_addr, "dev", &peer_if,
            ],
            vec!["ip", "netns", "exec", &ns.name, "ip", "link", "set", &peer_if, "up"],
            vec!["ip", "netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"],
        ];
        for step in steps {
            assert!(run(&step), "netns setup failed at {step:?}");
        }
        Some(ns)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Silently drops every packet that enters the namespace.
    pub fn drop_all_input(&self) {
        assert!(
            run(&["ip", "netns", "exec", &self.name, "iptables", "-A", "INPUT", "-j", "DROP"]),
            "iptables DROP"
        );
    }

    /// Takes the namespace's end of the veth pair down or up: a pulled cable.
    pub fn set_cable(&self, up: bool) {
        let peer_if = format!("{}b", self.host_if.trim_end_matches('a'));
        let state = if up { "up" } else { "down" };
        assert!(
            run(&["ip", "netns", "exec", &self.name, "ip", "link", "set", &peer_if, state]),
            "link {state}"
        );
    }

    /// The resolv.conf processes started with `command` see.
    pub fn set_resolv_conf(&self, text: &str) {
        let dir = format!("/etc/netns/{}", self.name);
        std::fs::create_dir_all(&dir).expect("mkdir /etc/netns/NAME");
        std::fs::write(format!("{dir}/resolv.conf"), text).expect("write resolv.conf");
    }

    pub fn allow_input(&self) {
        assert!(
            run(&["ip", "netns", "exec", &self.name, "iptables", "-F", "INPUT"]),
            "iptables flush"
        );
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        run(&["ip", "netns", "del", &self.name]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
        run(&["ip", "link", "del", &self.host_if]);
    }
}
