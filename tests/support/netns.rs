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

/// Whether this machine can make namespaces (after `require`), and if so a
/// fresh number for names and one for a subnet, unique in this process.
fn fresh_ids(subnet_salt: u32) -> Option<(u32, u32)> {
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
    Some((id, 1 + (std::process::id() * subnet_salt + n) % 250))
}

impl NetNs {
    /// Creates the namespace, or returns `None` (after `require`) when this
    /// machine cannot.
    pub fn create() -> Option<NetNs> {
        let (id, subnet) = fresh_ids(7)?;
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

/// Several namespaces on one bridge: hosts on a LAN, each reachable from
/// the test process (which has the bridge's address). Removed on drop.
pub struct Lan {
    bridge: String,
    pub nodes: Vec<Node>,
}

pub struct Node {
    pub name: String,
    pub ip: String,
    host_if: String,
}

impl Lan {
    pub fn create(n: usize) -> Option<Lan> {
        let (id, subnet) = fresh_ids(13)?;
        let mut lan = Lan {
            bridge: format!("spbr{id}"),
            nodes: Vec::new(),
        };
        let bridge_addr = format!("10.232.{subnet}.1/24");
        for step in [
            vec!["ip", "link", "add", lan.bridge.as_str(), "type", "bridge"],
            vec!["ip", "addr", "add", bridge_addr.as_str(), "dev", lan.bridge.as_str()],
            vec!["ip", "link", "set", lan.bridge.as_str(), "up"],
        ] {
            assert!(run(&step), "bridge setup failed at {step:?}");
        }
        for j in 0..n {
            let node = Node {
                name: format!("sockpulse-lan-{id}-{j}"),
                ip: format!("10.232.{subnet}.{}", j + 2),
                host_if: format!("sl{id}n{j}"),
            };
            let peer_if = format!("sl{id}p{j}");
            let addr = format!("{}/24", node.ip);
            let (name, host_if) = (node.name.clone(), node.host_if.clone());
            // Pushed first: a failed step still cleans up on drop.
            lan.nodes.push(node);
            let steps: Vec<Vec<&str>> = vec![
                vec!["ip", "netns", "add", &name],
                vec!["ip", "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if],
                vec!["ip", "link", "set", &peer_if, "netns", &name],
                vec!["ip", "link", "set", &host_if, "master", &lan.bridge],
                vec!["ip", "link", "set", &host_if, "up"],
                vec![
                    "ip", "netns", "exec", &name, "ip", "addr", "add", &addr, "dev", &peer_if,
                ],
                vec!["ip", "netns", "exec", &name, "ip", "link", "set", &peer_if, "up"],
                vec!["ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up"],
            ];
            for step in steps {
                assert!(run(&step), "lan setup failed at {step:?}");
            }
        }
        Some(lan)
    }

    /// A file `ip netns exec` shows at /etc/NAME inside node `j`.
    pub fn set_etc_file(&self, j: usize, name: &str, text: &str) {
        let dir = format!("/etc/netns/{}", self.nodes[j].name);
        std::fs::create_dir_all(&dir).expect("mkdir /etc/netns/NAME");
        std::fs::write(format!("{dir}/{name}"), text).expect("write netns file");
    }

    /// Node `j` silently drops everything node `from` sends it.
    pub fn drop_from(&self, j: usize, from: usize) {
        let from_ip = self.nodes[from].ip.clone();
        assert!(
            run(&[
                "ip",
                "netns",
                "exec",
                &self.nodes[j].name,
                "iptables",
                "-A",
                "INPUT",
                "-s",
                &from_ip,
                "-j",
                "DROP"
            ]),
            "iptables DROP"
        );
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for node in &self.nodes {
            run(&["ip", "netns", "del", &node.name]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", node.name));
            run(&["ip", "link", "del", &node.host_if]);
        }
        run(&["ip", "link", "del", &self.bridge]);
    }
}
