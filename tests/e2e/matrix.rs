//! The fault matrix: each way a long-lived connection dies, injected for
//! real, with detection time against the bound the config promises, the
//! reason, the kernel diagnosis, and whether the session came back. Each
//! test records a row in target/fault-matrix/; scripts/fault-matrix.sh
//! prints the table the README shows.

use std::time::{Duration, SystemTime};

use crate::support::hostile::{self, Behaviour};
use crate::support::*;

const T: Duration = Duration::from_secs(20);
/// ping_interval 500 ms + pong_timeout 300 ms (fast_defaults).
const PONG_BOUND_MS: u64 = 800;
/// Timer grid (1.5 ms with these timers), scheduling, and a busy 2-core CI machine.
const SLACK_MS: u64 = 400;

struct Row {
    fault: &'static str,
    bound: String,
    detected_ms: u64,
    reason: String,
    diagnosis: String,
    recovered: &'static str,
}

fn record(slug: &str, row: Row) {
    let dir = repo().join("target/fault-matrix");
    std::fs::create_dir_all(&dir).unwrap();
    let json = serde_json::json!({
        "fault": row.fault, "bound": row.bound, "detected_ms": row.detected_ms,
        "reason": row.reason, "diagnosis": row.diagnosis, "recovered": row.recovered,
    });
    std::fs::write(dir.join(format!("{slug}.json")), json.to_string()).unwrap();
}

/// The agent's first log line for `target` containing `needle` after
/// `since`: (its wall-clock time, the line).
fn log_line_after(agent: &Agent, target: &str, needle: &str, since: SystemTime) -> (SystemTime, String) {
    let mut found = None;
    let ok = wait_until(T, || {
        found = agent.proc.output().into_iter().find_map(|l| {
            if !l.contains(&format!("target={target} ")) || !l.contains(needle) {
                return None;
            }
            let t = humantime::parse_rfc3339(l.get(1..25)?).ok()?;
            (t >= since - Duration::from_millis(5)).then_some((t, l))
        });
        found.is_some()
    });
    assert!(
        ok,
        "no {needle:?} for {target} after the fault:\n{}",
        agent.proc.output_text()
    );
    found.unwrap()
}

fn field(line: &str, key: &str) -> String {
    line.split(&format!("{key}="))
        .nth(1)
        .and_then(|s| s.split([' ', ']']).next())
        .unwrap_or("-")
        .to_string()
}

/// Waits for the disconnect after `injected`; returns (ms, reason, diagnosis).
fn detect(agent: &Agent, target: &str, injected: SystemTime, needle: &str) -> (u64, String, String) {
    let (t, line) = log_line_after(agent, target, needle, injected);
    let ms = t.duration_since(injected).unwrap_or_default().as_millis() as u64;
    (ms, field(&line, "reason"), field(&line, "diagnosis"))
}

/// Whether a session to `target` opened again after `since` (the detection).
fn recovered(agent: &Agent, target: &str, since: SystemTime) -> &'static str {
    let reopened = wait_until(T, || {
        agent.proc.output().iter().any(|l| {
            l.contains(&format!("target={target} "))
                && l.contains(" open (")
                && l.get(1..25)
                    .and_then(|t| humantime::parse_rfc3339(t).ok())
                    .is_some_and(|t| t > since)
        })
    });
    if reopened {
        "yes"
    } else {
        "no"
    }
}

#[test]
fn matrix_peer_process_hung() {
    let Some((server, agent)) = agent_on_healthy_python_peer("hung") else {
        return;
    };
    server.signal("STOP");
    let injected = SystemTime::now();
    let (ms, reason, diagnosis) = detect(&agent, "hung", injected, "disconnected");
    assert_eq!(
        (reason.as_str(), diagnosis.as_str()),
        ("pong_timeout", "peer_unresponsive")
    );
    assert!(ms <= PONG_BOUND_MS + SLACK_MS, "{ms} ms");
    server.signal("CONT");
    let back = recovered(&agent, "hung", injected + Duration::from_millis(ms));
    record(
        "01-hung",
        Row {
            fault: "peer process hung (SIGSTOP, then SIGCONT)",
            bound: format!("{PONG_BOUND_MS} ms"),
            detected_ms: ms,
            reason,
            diagnosis,
            recovered: back,
        },
    );
    assert_eq!(back, "yes");
}

fn netns_case(
    slug: &str,
    fault: &'static str,
    inject: impl FnOnce(&mut Option<netns::NetNs>),
    heal: impl FnOnce(&Option<netns::NetNs>),
    expect_back: bool,
) {
    let Some(ns) = netns::NetNs::create() else { return };
    let Some(py) = python() else { return };
    let mut cmd = ns.command(py.to_str().unwrap());
    cmd.arg(repo().join("tests/peers/ws_server.py"))
        .args(["--host", &ns.peer_ip]);
    let server = Proc::spawn("server in netns", &mut cmd);
    let line = server.wait_line("LISTENING ", T).expect("server");
    let port: u16 = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let agent = Agent::start(&one_target("remote", &format!("ws://{}:{port}/", ns.peer_ip), ""));
    agent.wait_metric("sockpulse_ping_rtt_seconds_count", &[("target", "remote")], T, |v| {
        v >= 2.0
    });
    let mut ns = Some(ns);
    inject(&mut ns);
    let injected = SystemTime::now();
    let (ms, reason, diagnosis) = detect(&agent, "remote", injected, "disconnected");
    assert_eq!(reason, "pong_timeout");
    assert_eq!(diagnosis, "path_dead", "{}", agent.proc.output_text());
    assert!(ms <= PONG_BOUND_MS + SLACK_MS, "{ms} ms");
    heal(&ns);
    let back = if expect_back {
        recovered(&agent, "remote", injected + Duration::from_millis(ms))
    } else {
        "no (host gone)"
    };
    record(
        slug,
        Row {
            fault,
            bound: format!("{PONG_BOUND_MS} ms"),
            detected_ms: ms,
            reason,
            diagnosis,
            recovered: back,
        },
    );
    if expect_back {
        assert_eq!(back, "yes");
    }
    drop(server);
}

#[test]
fn matrix_path_dead() {
    netns_case(
        "02-path-dead",
        "path dead (iptables DROP in a netns, then removed)",
        |ns| ns.as_ref().unwrap().drop_all_input(),
        |ns| ns.as_ref().unwrap().allow_input(),
        true,
    );
}

#[test]
fn matrix_cable_pulled() {
    netns_case(
        "03-cable",
        "cable pulled (peer's veth down, then up)",
        |ns| ns.as_ref().unwrap().set_cable(false),
        |ns| ns.as_ref().unwrap().set_cable(true),
        true,
    );
}

#[test]
fn matrix_peer_host_gone() {
    netns_case(
        "04-host-gone",
        "peer host gone (its netns deleted: half-open here)",
        |ns| drop(ns.take()),
        |_| {},
        false,
    );
}

fn hostile_case(slug: &str, fault: &'static str, behaviour: Behaviour, reason: &str, diagnosis: &str) {
    let port = hostile::serve(behaviour);
    let agent = Agent::start(&one_target("peer", &format!("ws://127.0.0.1:{port}/"), ""));
    assert!(
        wait_until(T, || hostile::first_action(port).is_some()),
        "server never acted"
    );
    let injected = hostile::first_action(port).unwrap();
    let (ms, got_reason, got_diagnosis) = detect(&agent, "peer", injected, "disconnected");
    assert_eq!((got_reason.as_str(), got_diagnosis.as_str()), (reason, diagnosis));
    assert!(ms <= 100 + SLACK_MS, "{ms} ms");
    let back = recovered(&agent, "peer", injected + Duration::from_millis(ms));
    record(
        slug,
        Row {
            fault,
            bound: "immediate".into(),
            detected_ms: ms,
            reason: got_reason,
            diagnosis: got_diagnosis,
            recovered: back,
        },
    );
    assert_eq!(back, "yes");
}

#[test]
fn matrix_close_frame() {
    hostile_case(
        "05-close",
        "peer sends a close frame (1001)",
        Behaviour::CloseFrameAfter(800),
        "peer_close",
        "-",
    );
}

#[test]
fn matrix_fin() {
    hostile_case(
        "06-fin",
        "peer closes TCP without a close frame (FIN)",
        Behaviour::FinAfter(800),
        "eof",
        "peer_closed",
    );
}

#[test]
fn matrix_rst() {
    hostile_case(
        "07-rst",
        "peer resets the connection (RST)",
        Behaviour::RstAfter(800),
        "reset",
        "socket_gone",
    );
}

#[test]
fn matrix_proxy_backend_dies() {
    let Some((mut backend, backend_port)) = python_ws(0, &[]) else {
        return;
    };
    let Some((_nginx, port, _dir)) = nginx_ws_proxy(backend_port) else {
        return;
    };
    let agent = Agent::start(&one_target("proxied", &format!("ws://127.0.0.1:{port}/ws"), ""));
    agent.wait_metric("sockpulse_ping_rtt_seconds_count", &[("target", "proxied")], T, |v| {
        v >= 2.0
    });
    backend.kill();
    let injected = SystemTime::now();
    let (ms, reason, diagnosis) = detect(&agent, "proxied", injected, "disconnected");
    assert_eq!(
        (reason.as_str(), diagnosis.as_str()),
        ("eof", "peer_closed"),
        "nginx closes the client side"
    );
    assert!(ms <= 100 + SLACK_MS, "{ms} ms");
    let Some((_again, _)) = python_ws(backend_port, &[]) else {
        return;
    };
    let back = recovered(&agent, "proxied", injected + Duration::from_millis(ms));
    record(
        "08-proxy",
        Row {
            fault: "backend behind nginx dies (then restarts)",
            bound: "immediate".into(),
            detected_ms: ms,
            reason,
            diagnosis,
            recovered: back,
        },
    );
    assert_eq!(back, "yes");
}

#[test]
fn matrix_handshake_never_answered() {
    let port = hostile::serve(Behaviour::Silent);
    let agent = Agent::start(&one_target("slow", &format!("ws://127.0.0.1:{port}/"), ""));
    assert!(wait_until(T, || hostile::first_action(port).is_some()));
    let accepted = hostile::first_action(port).unwrap();
    let (ms, reason, diagnosis) = detect(&agent, "slow", accepted, "connect failed");
    assert_eq!(
        (reason.as_str(), diagnosis.as_str()),
        ("handshake_timeout", "peer_unresponsive")
    );
    assert!((900..=1000 + SLACK_MS).contains(&ms), "{ms} ms");
    record(
        "09-slowloris",
        Row {
            fault: "upgrade never answered (slowloris server)",
            bound: "1000 ms".into(),
            detected_ms: ms,
            reason,
            diagnosis,
            recovered: "n/a",
        },
    );
}

#[test]
fn matrix_syn_dropped_and_refused() {
    let Some(ns) = netns::NetNs::create() else { return };
    ns.drop_all_input();
    let closed = free_port();
    let config = format!(
        "{}\n[[target]]\nname = \"filtered\"\nurl = \"ws://{}:80/\"\n[[target]]\nname = \"refused\"\nurl = \"ws://127.0.0.1:{closed}/\"\n",
        fast_defaults(),
        ns.peer_ip
    );
    let started = SystemTime::now();
    let agent = Agent::start(&config);
    let (ms, reason, diagnosis) = detect(&agent, "filtered", started, "connect failed");
    assert_eq!(
        (reason.as_str(), diagnosis.as_str()),
        ("connect_timeout", "syn_unanswered")
    );
    assert!(
        (1000..=1000 + 2 * SLACK_MS).contains(&ms),
        "{ms} ms (includes the agent's start)"
    );
    record(
        "10-syn",
        Row {
            fault: "SYN dropped (filtered port)",
            bound: "1000 ms".into(),
            detected_ms: ms,
            reason,
            diagnosis,
            recovered: "n/a",
        },
    );
    let (ms, reason, diagnosis) = detect(&agent, "refused", started, "connect failed");
    assert_eq!(reason, "refused");
    record(
        "11-refused",
        Row {
            fault: "port closed (RST to SYN)",
            bound: "immediate".into(),
            detected_ms: ms,
            reason,
            diagnosis,
            recovered: "n/a",
        },
    );
}

#[test]
fn matrix_added_latency_is_measured_without_false_timeouts() {
    let Some((_server, port)) = python_ws(0, &[]) else {
        return;
    };
    let delayed = delay::proxy(port, Duration::from_millis(100));
    let agent = Agent::start(&one_target("far", &format!("ws://127.0.0.1:{delayed}/"), ""));
    agent.wait_metric("sockpulse_ping_rtt_seconds_count", &[("target", "far")], T, |v| {
        v >= 5.0
    });
    let text = agent.scrape();
    let count = metric_value(&text, "sockpulse_ping_rtt_seconds_count", &[("target", "far")]).unwrap();
    let mean_ms = metric_value(&text, "sockpulse_ping_rtt_seconds_sum", &[("target", "far")]).unwrap() / count * 1e3;
    assert!(
        (200.0..260.0).contains(&mean_ms),
        "RTT {mean_ms} ms for 2 x 100 ms of added delay"
    );
    assert_eq!(
        metric_value(&text, "sockpulse_pong_timeouts_total", &[("target", "far")]),
        Some(0.0)
    );
    record(
        "12-latency",
        Row {
            fault: "200 ms added round trip (user-space delay proxy), under pong_timeout 300 ms",
            bound: "no false timeout".into(),
            detected_ms: 0,
            reason: format!("RTT mean {mean_ms:.0} ms, 0 pong timeouts"),
            diagnosis: "-".into(),
            recovered: "n/a",
        },
    );
}
