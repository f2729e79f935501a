//! Real networks: what the path between the agent and its targets does to
//! sessions, and what the agent leaves behind on it.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(15);

/// Agent-side TIME_WAIT sockets towards `port` (local side not `port`).
fn agent_time_waits(port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-Htan", "state", "time-wait", "dport", "=", &format!(":{port}")])
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn close_rst_leaves_no_time_wait_when_a_reload_removes_targets() {
    if !require("ss", which("ss").is_some()) {
        return;
    }
    let Some((server, port)) = python_ws(0, &[]) else {
        return;
    };
    // TCP sessions are closed by the agent first, so a clean close leaves
    // TIME_WAIT on its side: the control that shows the check can fail.
    let config = format!(
        "{}
[[target]]
name = \"tcp-clean\"
url = \"tcp://127.0.0.1:{port}\"
connections = 5
[[target]]
name = \"tcp-rst\"
url = \"tcp://127.0.0.1:{port}\"
connections = 5
close = \"rst\"
[[target]]
name = \"ws-rst\"
url = \"ws://127.0.0.1:{port}/\"
connections = 5
close = \"rst\"
",
        fast_defaults()
    );
    let agent = Agent::start(&config);
    for name in ["tcp-clean", "tcp-rst", "ws-rst"] {
        agent.wait_metric("sockpulse_sessions", &[("target", name), ("state", "open")], T, |v| {
            v == 5.0
        });
    }
    let before = agent_time_waits(port);
    agent.reload_with(fast_defaults());
    agent.wait_until_log("3 removed", T);
    assert!(wait_until(T, || agent_time_waits(port) >= before + 5));
    // Give any late close its chance to show up before counting.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        agent_time_waits(port) - before,
        5,
        "only the clean TCP target's sockets may be left in TIME_WAIT"
    );
    // The WebSocket sessions still said goodbye before the reset.
    assert!(wait_until(T, || server
        .output()
        .iter()
        .filter(|l| l.as_str() == "CLOSED 1001")
        .count()
        == 5));
}
