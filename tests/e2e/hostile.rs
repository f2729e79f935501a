//! Broken and malicious servers, one agent per case: each answer gets its
//! reason and a log line naming it, the session retries with backoff, the
//! agent keeps serving, and its peak memory (VmHWM) stays bounded. The
//! measured peaks land in `target/hostile-memory.md` (the README quotes it).

use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::support::hostile::{serve, Behaviour};
use crate::support::*;

const T: Duration = Duration::from_secs(20);
/// Attempts that prove the session keeps retrying (with backoff) after the fault.
const ATTEMPTS: f64 = 3.0;
/// Peak RSS allowed above the quiet agent's: buffers and allocator slack
/// (messages are streamed, never held; see messages.rs).
const PEAK_ALLOWANCE_KIB: u64 = 4 * 1024;

/// A ping with a 126-byte payload (control frames may carry at most 125).
const LONG_PING: [u8; 130] = {
    let mut f = [b'p'; 130];
    f[0] = 0x89;
    f[1] = 126;
    f[2] = 0;
    f[3] = 126;
    f
};

struct Case {
    what: &'static str,
    behaviour: Behaviour,
    family: &'static str,
    reason: &'static str,
}

fn cases() -> Vec<Case> {
    let c = |what, behaviour, family, reason| Case {
        what,
        behaviour,
        family,
        reason,
    };
    let hs = "connect_failures";
    let dc = "disconnects";
    vec![
        c(
            "non-101 status (404)",
            Behaviour::Answer("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            hs,
            "handshake_status",
        ),
        c("101 without Upgrade", Behaviour::NoUpgradeHeader, hs, "protocol_error"),
        c("wrong Sec-WebSocket-Accept", Behaviour::BadAccept, hs, "bad_accept"),
        c(
            "unrequested subprotocol",
            Behaviour::Extra101Header("Sec-WebSocket-Protocol: chat"),
            hs,
            "protocol_error",
        ),
        c(
            "unrequested extension",
            Behaviour::Extra101Header("Sec-WebSocket-Extensions: permessage-deflate"),
            hs,
            "protocol_error",
        ),
        c("garbage instead of HTTP", Behaviour::Garbage, hs, "protocol_error"),
        c(
            "header section over 16 KiB",
            Behaviour::EndlessHeaders,
            hs,
            "protocol_error",
        ),
        c(
            "101 dripping a byte per 200 ms",
            Behaviour::Drip,
            hs,
            "handshake_timeout",
        ),
        c("upgrade never answered", Behaviour::Silent, hs, "handshake_timeout"),
        c(
            "masked frame from the server",
            Behaviour::MaskedFrame,
            dc,
            "protocol_error",
        ),
        c(
            "reserved opcode 0x3",
            Behaviour::Frames(&[0x83, 0x01, b'x']),
            dc,
            "protocol_error",
        ),
        c(
            "RSV1 set without an extension",
            Behaviour::Frames(&[0xC1, 0x01, b'x']),
            dc,
            "protocol_error",
        ),
        c(
            "control frame over 125 bytes",
            Behaviour::Frames(&LONG_PING),
            dc,
            "protocol_error",
        ),
        c(
            "fragmented control frame",
            Behaviour::Frames(&[0x09, 0x01, b'p']),
            dc,
            "protocol_error",
        ),
        c(
            "invalid UTF-8 in a text message",
            Behaviour::Frames(&[0x81, 0x02, 0xC3, 0x28]),
            dc,
            "protocol_error",
        ),
        c(
            "invalid UTF-8 in a close reason",
            Behaviour::Frames(&[0x88, 0x04, 0x03, 0xE8, 0xFF, 0xFE]),
            dc,
            "protocol_error",
        ),
        c(
            "close code out of range (999)",
            Behaviour::Frames(&[0x88, 0x02, 0x03, 0xE7]),
            dc,
            "protocol_error",
        ),
        c(
            "frame announcing 2^63 bytes",
            Behaviour::HugeFrame,
            dc,
            "protocol_error",
        ),
        c("ping flood, never reading", Behaviour::PingFlood, dc, "send_backlog"),
    ]
}

/// Runs the agent against `behaviour` until `reason` was counted and the
/// session retried; returns its peak RSS in KiB.
fn run_case(case: &Case) -> u64 {
    eprintln!("hostile case: {}", case.what);
    let port = serve(case.behaviour);
    let agent = Agent::start(&one_target("hostile", &format!("ws://127.0.0.1:{port}/"), ""));
    let metric = format!("sockpulse_{}_total", case.family);
    agent.wait_metric(&metric, &[("target", "hostile"), ("reason", case.reason)], T, |v| {
        v >= 1.0
    });
    agent.wait_metric("sockpulse_connect_attempts_total", &[("target", "hostile")], T, |v| {
        v >= ATTEMPTS
    });
    assert_eq!(agent.get("/healthz").0, 200, "{}: agent stopped serving", case.what);
    let log = agent.proc.output_text();
    let needle = format!("reason={}", case.reason);
    assert!(
        log.lines().any(|l| l.contains("target=hostile") && l.contains(&needle)),
        "{}: no log line with {needle}:\n{log}",
        case.what
    );
    proc_status_kib(agent.proc.pid(), "VmHWM:")
}

#[test]
fn every_hostile_peer_gets_its_reason_a_log_line_a_retry_and_bounded_memory() {
    // The quiet baseline: the same agent whose target refuses connections.
    let closed = free_port();
    let quiet = Agent::start(&one_target("hostile", &format!("ws://127.0.0.1:{closed}/"), ""));
    quiet.wait_metric("sockpulse_connect_attempts_total", &[("target", "hostile")], T, |v| {
        v >= ATTEMPTS
    });
    let baseline = proc_status_kib(quiet.proc.pid(), "VmHWM:");
    drop(quiet);

    let cases = cases();
    let peaks = Mutex::new(Vec::new());
    // Three agents at a time: each case waits on timeouts, not on the CPU.
    for group in cases.chunks(3) {
        thread::scope(|s| {
            for case in group {
                let peaks = &peaks;
                s.spawn(move || {
                    let peak = run_case(case);
                    peaks.lock().unwrap().push((case.what, case.reason, peak));
                });
            }
        });
    }
    let mut peaks = peaks.into_inner().unwrap();
    let order: Vec<&str> = cases.iter().map(|c| c.what).collect();
    peaks.sort_by_key(|(what, _, _)| order.iter().position(|o| o == what));
    let mut report =
        format!("| hostile peer | reason | peak RSS | above quiet agent ({baseline} KiB) |\n|---|---|---|---|\n");
    for (what, reason, peak) in &peaks {
        report.push_str(&format!(
            "| {what} | {reason} | {peak} KiB | {} KiB |\n",
            peak.saturating_sub(baseline)
        ));
    }
    eprint!("{report}");
    let _ = std::fs::create_dir_all(repo().join("target"));
    let _ = std::fs::write(repo().join("target/hostile-memory.md"), &report);
    for (what, _, peak) in &peaks {
        assert!(
            *peak < baseline + PEAK_ALLOWANCE_KIB,
            "{what}: peak RSS {peak} KiB, quiet agent {baseline} KiB"
        );
    }
}

#[test]
fn unsolicited_pongs_are_counted_and_do_not_pass_for_answers() {
    let port = serve(Behaviour::UnsolicitedPongs);
    let agent = Agent::start(&one_target("pongs", &format!("ws://127.0.0.1:{port}/"), ""));
    agent.wait_metric("sockpulse_stray_pongs_total", &[("target", "pongs")], T, |v| v >= 10.0);
    // The session's own pings are answered: it stays up, with RTT samples.
    agent.wait_metric("sockpulse_ping_rtt_seconds_count", &[("target", "pongs")], T, |v| {
        v >= 1.0
    });
    let text = agent.scrape();
    let disconnects: f64 = text
        .lines()
        .filter(|l| l.starts_with("sockpulse_disconnects_total{") && l.contains("target=\"pongs\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(disconnects, 0.0, "stray pongs must not end the session:\n{text}");
}
