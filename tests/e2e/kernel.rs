//! The host TCP table against real kernel states this test makes itself,
//! cross-checked with `ss` for the same sockets.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(15);

/// Sockets on one listening port in known states. Dropping it closes them.
struct States {
    port: u16,
    _keep: Vec<TcpStream>,
    _listener: TcpListener,
}

/// ESTABLISHED pairs, one CLOSE_WAIT (peer closed, we never do), one
/// TIME_WAIT (we closed first), two connections waiting in the accept queue.
fn make_states() -> States {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut keep = Vec::new();
    // ESTABLISHED on both ends.
    let a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (sa, _) = listener.accept().unwrap();
    keep.extend([a, sa]);
    // CLOSE_WAIT: the client closes, the server side never does.
    let b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (sb, _) = listener.accept().unwrap();
    drop(b);
    keep.push(sb);
    // TIME_WAIT: the client closes first, then the server.
    // (No unread data anywhere: closing with unread data sends RST, not FIN.)
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (sc, _) = listener.accept().unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(50));
    drop(sc);
    // Two connections the application never accepts.
    for _ in 0..2 {
        keep.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    std::thread::sleep(Duration::from_millis(100));
    States {
        port,
        _keep: keep,
        _listener: listener,
    }
}

/// State counts `ss` reports for sockets whose local or remote port is `port`.
fn ss_counts(port: u16) -> BTreeMap<String, u64> {
    let filter = format!("( sport = :{port} or dport = :{port} )");
    let out = Command::new("ss")
        .args(["-tanH", "state", "all", &filter])
        .output()
        .expect("run ss");
    assert!(
        out.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(state) = line.split_whitespace().next() else {
            continue;
        };
        let ours = match state {
            "ESTAB" => "established",
            "LISTEN" => "listen",
            "CLOSE-WAIT" => "close_wait",
            "TIME-WAIT" => "time_wait",
            "FIN-WAIT-1" => "fin_wait1",
            "FIN-WAIT-2" => "fin_wait2",
            "SYN-SENT" => "syn_sent",
            "SYN-RECV" => "syn_recv",
            "LAST-ACK" => "last_ack",
            "CLOSING" => "closing",
            other => panic!("unexpected ss state {other}"),
        };
        *counts.entry(ours.to_string()).or_default() += 1;
    }
    counts
}

#[test]
fn sockets_report_matches_ss_for_states_the_test_made() {
    if !require("ss (iproute2)", which("ss").is_some()) {
        return;
    }
    let s = make_states();
    let port = s.port.to_string();
    for method in ["netlink", "procfs"] {
        let out = sockpulse(&["sockets", "--json", "--method", method, "--watch-port", &port]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let ours: BTreeMap<String, u64> =
            serde_json::from_value(v["ports"][&port]["by_state"].clone()).expect("by_state");
        assert_eq!(ours, ss_counts(s.port), "sockpulse ({method}) vs ss for port {port}");
        // And the states are the ones the test made.
        assert_eq!(ours.get("listen"), Some(&1));
        assert_eq!(ours.get("close_wait"), Some(&1));
        assert_eq!(ours.get("time_wait"), Some(&1));
        assert!(ours.get("established").copied().unwrap_or(0) >= 4);
        assert_eq!(v["ports"][&port]["listen_queue"], 2, "two connections never accepted");
        assert!(v["total"].as_u64().unwrap() >= 7);
        // Only netlink knows the backlog (std listens with 128).
        let ratio = &v["ports"][&port]["listen_queue_ratio"];
        match method {
            "netlink" => assert_eq!(ratio.as_f64(), Some(2.0 / 128.0)),
            _ => assert!(ratio.is_null(), "{ratio}"),
        }
    }
}

#[test]
fn sockets_flags_a_close_wait_that_outlives_the_sampling_window() {
    let s = make_states();
    let port = s.port.to_string();
    let out = sockpulse(&["sockets", "--watch-port", &port, "--close-wait-age", "300ms"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Suspicious sockets:") && text.contains("close_wait: CLOSE_WAIT for"),
        "{text}"
    );
    let bad_pid = sockpulse(&["sockets", "--pid", "4294967295"]);
    assert_eq!(bad_pid.status.code(), Some(2));
}

#[test]
fn the_agent_exports_host_states_and_ages_close_wait() {
    let s = make_states();
    let port = s.port.to_string();
    let agent = Agent::start(&format!(
        "[kernel]\nscan_interval = \"200ms\"\nwatch_ports = [{port}]\nclose_wait_age_alert = \"1s\"\n"
    ));
    let cw = [("state", "close_wait"), ("port", port.as_str())];
    agent.wait_metric("sockpulse_tcp_sockets", &cw, T, |v| v == 1.0);
    agent.wait_metric("sockpulse_tcp_listen_queue", &[("port", &port)], T, |v| v == 2.0);
    let age = agent.wait_metric(
        "sockpulse_tcp_close_wait_oldest_age_seconds",
        &[("port", &port)],
        T,
        |v| v >= 1.0,
    );
    assert!(age < 10.0, "{age}");
    agent.wait_metric("sockpulse_tcp_close_wait_over_age", &[("port", &port)], T, |v| v == 1.0);
    let text = agent.scrape();
    // auto prefers netlink in our own namespace
    let scans = metric_value(
        &text,
        "sockpulse_kernel_scan_duration_seconds_count",
        &[("method", "netlink")],
    );
    assert!(scans.unwrap_or(0.0) >= 2.0, "{text}");
    assert_eq!(
        metric_value(&text, "sockpulse_tcp_listen_queue_ratio", &[("port", &port)]),
        Some(2.0 / 128.0)
    );
    assert_eq!(
        metric_value(&text, "sockpulse_kernel_scan_errors_total", &[]),
        Some(0.0)
    );
    assert!(metric_value(&text, "sockpulse_tcp_time_wait_port_ratio", &[]).is_some());
    // The leak ends: the gauge follows.
    drop(s);
    agent.wait_metric("sockpulse_tcp_sockets", &cw, T, |v| v == 0.0);
    agent.wait_metric("sockpulse_tcp_close_wait_over_age", &[("port", &port)], T, |v| v == 0.0);
}

#[test]
fn the_agent_sees_its_own_sockets_in_the_kernel_table_without_false_mismatches() {
    let Some((mut server, port)) = python_ws(0, &[]) else {
        return;
    };
    let agent = Agent::start(&format!(
        "{}\n[kernel]\nscan_interval = \"100ms\"\n[[target]]\nname = \"py\"\nurl = \"ws://127.0.0.1:{port}/\"\nconnections = 3\n",
        fast_defaults()
    ));
    let est = [("target", "py"), ("state", "established")];
    agent.wait_metric("sockpulse_session_kernel_state", &est, T, |v| v == 3.0);
    // Churn: the server dies and comes back; sessions close and reconnect
    // while scans run. None of that is a disagreement with the kernel.
    server.kill();
    agent.wait_metric("sockpulse_session_kernel_state", &est, T, |v| v == 0.0);
    let Some((_again, _)) = python_ws(port, &[]) else {
        return;
    };
    agent.wait_metric("sockpulse_session_kernel_state", &est, T, |v| v == 3.0);
    std::thread::sleep(Duration::from_millis(300));
    let text = agent.scrape();
    for kind in ["close_wait", "gone", "other_state"] {
        let v = metric_value(
            &text,
            "sockpulse_kernel_mismatches_total",
            &[("target", "py"), ("kind", kind)],
        );
        assert_eq!(v, Some(0.0), "false {kind} mismatch:\n{}", agent.proc.output_text());
    }
}
