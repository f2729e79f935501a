//! Broken and malicious servers: each answer gets its reason, the agent
//! stays up and keeps serving metrics.

use std::time::Duration;

use crate::support::hostile::{serve, Behaviour};
use crate::support::*;

const T: Duration = Duration::from_secs(15);

#[test]
fn hostile_handshakes_and_frames_get_the_right_reasons() {
    let cases = [
        (Behaviour::BadAccept, "connect_failures", "bad_accept"),
        (Behaviour::Garbage, "connect_failures", "protocol_error"),
        (Behaviour::NoUpgradeHeader, "connect_failures", "protocol_error"),
        (Behaviour::Silent, "connect_failures", "handshake_timeout"),
        (Behaviour::HugeFrame, "disconnects", "protocol_error"),
        (Behaviour::MaskedFrame, "disconnects", "protocol_error"),
    ];
    let mut config = fast_defaults().to_string();
    for (b, _, _) in &cases {
        let port = serve(*b);
        config.push_str(&format!(
            "[[target]]\nname = \"{b:?}\"\nurl = \"ws://127.0.0.1:{port}/\"\n"
        ));
    }
    let agent = Agent::start(&config);
    for (b, family, reason) in cases {
        let name = format!("{b:?}");
        let metric = format!("sockpulse_{family}_total");
        agent.wait_metric(&metric, &[("target", &name), ("reason", reason)], T, |v| v >= 1.0);
    }
    let log = agent.proc.output_text();
    assert!(
        log.contains("target=BadAccept") && log.contains("Sec-WebSocket-Accept"),
        "{log}"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ping_flood_from_a_peer_that_never_reads_is_cut_off_with_bounded_memory() {
    let port = serve(Behaviour::PingFlood);
    let agent = Agent::start(&one_target("flood", &format!("ws://127.0.0.1:{port}/"), ""));
    agent.wait_metric(
        "sockpulse_disconnects_total",
        &[("target", "flood"), ("reason", "send_backlog")],
        T,
        |v| v >= 1.0,
    );
    // Still serving, and memory stayed near its idle size.
    assert_eq!(agent.get("/healthz").0, 200);
    let rss = rss_kib(agent.proc.pid());
    assert!(rss > 0 && rss < 64 * 1024, "RSS {rss} KiB after the flood");
}
