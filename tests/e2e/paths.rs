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

#[test]
fn sessions_cut_at_a_fixed_age_are_diagnosed_as_a_lifetime_limit_and_random_cuts_are_not() {
    let (Some((_fixed, fixed_port)), Some((_random, random_port))) = (
        python_ws(0, &["--max-age", "2"]),
        python_ws(0, &["--random-age", "1.2", "4"]),
    ) else {
        return;
    };
    let config = format!(
        "{}{}{}",
        fast_defaults(),
        "[[target]]\nname = \"fixed\"\nurl = \"ws://127.0.0.1:FIXED/\"\n".replace("FIXED", &fixed_port.to_string()),
        "[[target]]\nname = \"random\"\nurl = \"ws://127.0.0.1:RANDOM/\"\n".replace("RANDOM", &random_port.to_string()),
    );
    let agent = Agent::start(&config);
    let limit = agent.wait_metric(
        "sockpulse_session_lifetime_limit_seconds",
        &[("target", "fixed")],
        Duration::from_secs(30),
        |_| true,
    );
    // Counted from the open, the server's clock from the upgrade.
    assert!((1.95..=2.15).contains(&limit), "limit {limit}");
    let line = agent.wait_until_log("target=fixed sessions keep ending after", T);
    assert!(line.contains("diagnosis=lifetime_limit"), "{line}");
    // Later cuts are explained by it, in the log and the diagnosis counter.
    agent.wait_metric(
        "sockpulse_diagnoses_total",
        &[("target", "fixed"), ("diagnosis", "lifetime_limit")],
        T,
        |v| v >= 1.0,
    );
    agent.wait_until_log(
        "target=fixed session=0 disconnected: reason=eof diagnosis=lifetime_limit (sessions end after 2.",
        T,
    );
    // Every end was observed; all but the limit's bucket neighbours are empty.
    let text = agent.scrape();
    let ended = metric_value(
        &text,
        "sockpulse_session_duration_seconds_count",
        &[("target", "fixed")],
    )
    .unwrap_or(0.0);
    let under_5s = metric_value(
        &text,
        "sockpulse_session_duration_seconds_bucket",
        &[("target", "fixed"), ("le", "5")],
    )
    .unwrap_or(-1.0);
    let under_1s = metric_value(
        &text,
        "sockpulse_session_duration_seconds_bucket",
        &[("target", "fixed"), ("le", "1")],
    )
    .unwrap_or(-1.0);
    assert!(
        ended >= 4.0 && under_5s == ended && under_1s == 0.0,
        "{ended} {under_5s} {under_1s}"
    );

    // Cut as often, at random ages: never a limit.
    agent.wait_metric(
        "sockpulse_session_duration_seconds_count",
        &[("target", "random")],
        Duration::from_secs(30),
        |v| v >= 6.0,
    );
    let text = agent.scrape();
    assert_eq!(
        metric_value(
            &text,
            "sockpulse_session_lifetime_limit_seconds",
            &[("target", "random")]
        ),
        None
    );
    assert_eq!(
        metric_value(
            &text,
            "sockpulse_diagnoses_total",
            &[("target", "random"), ("diagnosis", "lifetime_limit")]
        ),
        Some(0.0)
    );
    // status --agent shows the limit.
    let out = sockpulse(&["status", "--agent", &format!("http://{}", agent.addr)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("fixed: sessions keep ending after 2."), "{stdout}");
}

/// Idle discovery through a proxy that closes idle tunnels after 2 s: the
/// bound found, whether pings count, and the target's own series untouched.
fn idle_discovery_finds(proxy_port: u16, path: &str, name: &str) {
    let config = format!(
        "{}[[target]]\nname = \"{name}\"\nurl = \"ws://127.0.0.1:{proxy_port}{path}\"\n\
         idle_discovery = {{ max = \"6s\" }}\n\
         [[target]]\nname = \"{name}-quiet\"\nurl = \"ws://127.0.0.1:{proxy_port}{path}\"\n\
         ping_interval = \"off\"\nidle_discovery = {{ max = \"6s\" }}\n",
        fast_defaults()
    );
    let agent = Agent::start(&config);
    let found = agent.wait_metric(
        "sockpulse_path_idle_timeout_seconds",
        &[("target", name)],
        Duration::from_secs(30),
        |_| true,
    );
    assert!(
        (1.8..=2.2).contains(&found),
        "{name}: idle timeout {found}, configured 2s"
    );
    agent.wait_metric(
        "sockpulse_path_idle_pings_keep_alive",
        &[("target", name)],
        Duration::from_secs(30),
        |v| v == 1.0,
    );
    // The trials were never the target's: one session, never dropped.
    let text = agent.scrape();
    assert_eq!(
        metric_value(&text, "sockpulse_sessions", &[("target", name), ("state", "open")]),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&text, "sockpulse_sessions_opened_total", &[("target", name)]),
        Some(1.0)
    );
    for reason in ["eof", "reset", "pong_timeout", "peer_close"] {
        assert_eq!(
            metric_value(
                &text,
                "sockpulse_disconnects_total",
                &[("target", name), ("reason", reason)]
            ),
            Some(0.0),
            "{reason}"
        );
    }
    // A target that never pings is closed by the proxy for its silence,
    // and once the timeout is known, each of those ends says so.
    let quiet = format!("{name}-quiet");
    agent.wait_metric(
        "sockpulse_diagnoses_total",
        &[("target", &quiet), ("diagnosis", "idle_killed")],
        Duration::from_secs(30),
        |v| v >= 1.0,
    );
    let line = agent.wait_until_log(
        &format!("target={quiet} session=0 disconnected: reason=eof diagnosis=idle_killed"),
        T,
    );
    assert!(line.contains("the path's idle timeout"), "{line}");
}

#[test]
fn idle_discovery_measures_nginx_proxy_read_timeout() {
    let Some((_server, backend)) = python_ws(0, &[]) else {
        return;
    };
    let Some((_nginx, port, _dir)) = nginx_ws_proxy_with(backend, "2s") else {
        return;
    };
    idle_discovery_finds(port, "/ws", "nginx");
}

#[test]
fn idle_discovery_measures_haproxy_timeout_tunnel() {
    let Some((_server, backend)) = python_ws(0, &[]) else {
        return;
    };
    let Some(haproxy) = crate::support::proxies::haproxy_ws(backend, "2s") else {
        return;
    };
    idle_discovery_finds(haproxy.port, "/", "haproxy");
}
