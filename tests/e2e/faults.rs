//! Real faults on real peers: killed, hung, silent, absent, unresolvable.

use std::time::{Duration, Instant};

use crate::support::*;

const T: Duration = Duration::from_secs(15);

#[test]
fn killed_server_is_a_disconnect_and_the_session_comes_back_with_it() {
    let Some((mut server, port)) = python_ws(0, &[]) else {
        return;
    };
    let agent = Agent::start(&one_target("py", &format!("ws://127.0.0.1:{port}/"), ""));
    agent.wait_metric("sockpulse_target_up", &[("target", "py")], T, |v| v == 1.0);
    server.kill();
    agent.wait_metric("sockpulse_target_up", &[("target", "py")], T, |v| v == 0.0);
    let text = agent.scrape();
    let by =
        |r: &str| metric_value(&text, "sockpulse_disconnects_total", &[("target", "py"), ("reason", r)]).unwrap_or(0.0);
    assert_eq!(by("eof") + by("reset"), 1.0, "one disconnect, by FIN or RST:\n{text}");
    // The kernel agrees: after a FIN our socket sits in CLOSE_WAIT; after an RST it is gone.
    let diag = |d: &str| {
        metric_value(
            &text,
            "sockpulse_diagnoses_total",
            &[("target", "py"), ("diagnosis", d)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(diag("peer_closed") + diag("socket_gone"), 1.0, "{text}");
    assert_eq!(diag("peer_closed"), by("eof"), "FIN means peer_closed");
    // While the server is down, attempts are refused and retried with backoff.
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", "py"), ("reason", "refused")],
        T,
        |v| v >= 2.0,
    );
    let Some((_again, _)) = python_ws(port, &[]) else {
        return;
    };
    agent.wait_metric("sockpulse_target_up", &[("target", "py")], T, |v| v == 1.0);
    agent.wait_metric("sockpulse_sessions_opened_total", &[("target", "py")], T, |v| v == 2.0);
}

#[test]
fn stopped_server_is_a_pong_timeout_within_the_configured_bound_and_recovers() {
    let Some((server, agent)) = agent_on_healthy_python_peer("hung") else {
        return;
    };
    server.signal("STOP");
    let stopped = Instant::now();
    agent.wait_metric(
        "sockpulse_disconnects_total",
        &[("target", "hung"), ("reason", "pong_timeout")],
        T,
        |v| v >= 1.0,
    );
    let detected = stopped.elapsed();
    // ping_interval 500ms + pong_timeout 300ms, plus scrape polling slack.
    assert!(
        detected <= Duration::from_millis(800 + 700),
        "pong timeout took {detected:?}"
    );
    assert_eq!(
        agent.metric("sockpulse_pong_timeouts_total", &[("target", "hung")]),
        Some(1.0)
    );
    // The kernel still accepts connections for the stopped process: the
    // upgrade is never answered.
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", "hung"), ("reason", "handshake_timeout")],
        T,
        |v| v >= 1.0,
    );
    server.signal("CONT");
    agent.wait_metric("sockpulse_target_up", &[("target", "hung")], T, |v| v == 1.0);
    let log = agent.proc.output_text();
    assert!(log.contains("reason=pong_timeout"), "log names the reason:\n{log}");
    // The stopped process's kernel still ACKs our pings: the application is hung.
    assert!(
        log.contains("reason=pong_timeout diagnosis=peer_unresponsive [kernel: established unacked=0"),
        "{log}"
    );
    let unresponsive = [("target", "hung"), ("diagnosis", "peer_unresponsive")];
    assert!(agent.metric("sockpulse_diagnoses_total", &unresponsive).unwrap_or(0.0) >= 1.0);
}

#[test]
fn idle_timeout_with_pings_disabled() {
    let Some((_server, port)) = python_ws(0, &[]) else {
        return;
    };
    let agent = Agent::start(&one_target(
        "quiet",
        &format!("ws://127.0.0.1:{port}/"),
        "ping_interval = \"off\"\nidle_timeout = \"700ms\"",
    ));
    agent.wait_metric(
        "sockpulse_sessions",
        &[("target", "quiet"), ("state", "open")],
        T,
        |v| v == 1.0,
    );
    // The session opened at most one polling step before this point.
    let opened = Instant::now() - Duration::from_millis(100);
    agent.wait_metric(
        "sockpulse_disconnects_total",
        &[("target", "quiet"), ("reason", "idle_timeout")],
        T,
        |v| v >= 1.0,
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(700),
        "idle timeout fired early: {:?}",
        opened.elapsed()
    );
    assert_eq!(
        agent.metric("sockpulse_ping_rtt_seconds_count", &[("target", "quiet")]),
        Some(0.0)
    );
}

#[test]
fn refused_and_unresolvable_targets_are_classified() {
    let closed = free_port();
    let config = format!(
        "{}\n[[target]]\nname = \"refused\"\nurl = \"ws://127.0.0.1:{closed}/\"\n[[target]]\nname = \"nxdomain\"\nurl = \"ws://no-such-host.invalid/\"\n",
        fast_defaults()
    );
    let agent = Agent::start(&config);
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", "refused"), ("reason", "refused")],
        T,
        |v| v >= 2.0,
    );
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", "nxdomain"), ("reason", "dns")],
        T,
        |v| v >= 1.0,
    );
    let text = agent.scrape();
    let attempts = metric_value(&text, "sockpulse_connect_attempts_total", &[("target", "refused")]).unwrap();
    let failures = metric_value(
        &text,
        "sockpulse_connect_failures_total",
        &[("target", "refused"), ("reason", "refused")],
    )
    .unwrap();
    // The attempt in flight at scrape time may not have failed yet.
    assert!(attempts - failures <= 1.0, "attempts {attempts}, failures {failures}");
}

#[test]
fn sigterm_sends_going_away_close_frames_and_exits_promptly() {
    let Some((server, port)) = python_ws(0, &[]) else {
        return;
    };
    let mut agent = Agent::start(&one_target("py", &format!("ws://127.0.0.1:{port}/"), "connections = 3"));
    agent.wait_metric("sockpulse_sessions", &[("target", "py"), ("state", "open")], T, |v| {
        v == 3.0
    });
    agent.proc.signal("TERM");
    let code = agent.proc.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "agent log:\n{}", agent.proc.output_text());
    assert!(
        wait_until(Duration::from_secs(5), || server
            .output()
            .iter()
            .filter(|l| *l == "CLOSED 1001")
            .count()
            == 3),
        "server saw: {:?}",
        server.output()
    );
}

/// A Python websockets server inside a namespace; returns it and its port.
fn server_in(ns: &netns::NetNs) -> Option<(Proc, u16)> {
    let py = python()?;
    let mut cmd = ns.command(py.to_str().expect("utf-8 path"));
    cmd.arg(repo().join("tests/peers/ws_server.py"))
        .args(["--host", &ns.peer_ip]);
    let p = Proc::spawn("python websockets in netns", &mut cmd);
    let line = p
        .wait_line("LISTENING ", T)
        .unwrap_or_else(|| panic!("server did not start: {}", p.output_text()));
    let port = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("port");
    Some((p, port))
}

#[test]
fn dropped_path_is_diagnosed_path_dead_and_dropped_syn_syn_unanswered() {
    let Some(ns) = netns::NetNs::create() else { return };
    let Some((_server, port)) = server_in(&ns) else { return };
    let config = format!(
        "[defaults]
ping_interval = \"2s\"
pong_timeout = \"1s\"
connect_timeout = \"1s\"
handshake_timeout = \"1s\"
backoff = {{ min = \"200ms\", max = \"1s\" }}
[[target]]
name = \"remote\"
url = \"ws://{}:{port}/\"
",
        ns.peer_ip
    );
    let agent = Agent::start(&config);
    agent.wait_metric("sockpulse_target_up", &[("target", "remote")], T, |v| v == 1.0);
    // The namespace goes dark: our ping is never ACKed and TCP retransmits it.
    ns.drop_all_input();
    let dead = [("target", "remote"), ("diagnosis", "path_dead")];
    agent.wait_metric("sockpulse_diagnoses_total", &dead, T, |v| v >= 1.0);
    assert_eq!(
        agent.metric(
            "sockpulse_disconnects_total",
            &[("target", "remote"), ("reason", "pong_timeout")]
        ),
        Some(1.0)
    );
    // Reconnects now send SYNs into the void: connect_timeout, not refused.
    let syn = [("target", "remote"), ("diagnosis", "syn_unanswered")];
    agent.wait_metric("sockpulse_diagnoses_total", &syn, T, |v| v >= 1.0);
    let timeouts = [("target", "remote"), ("reason", "connect_timeout")];
    assert!(
        agent
            .metric("sockpulse_connect_failures_total", &timeouts)
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        agent.metric(
            "sockpulse_connect_failures_total",
            &[("target", "remote"), ("reason", "refused")]
        ),
        Some(0.0)
    );
    let log = agent.proc.output_text();
    assert!(
        log.contains("diagnosis=path_dead [kernel: established unacked="),
        "{log}"
    );
    assert!(log.contains("diagnosis=syn_unanswered [kernel: syn_sent"), "{log}");
    // The path comes back, and so does the session.
    ns.allow_input();
    agent.wait_metric("sockpulse_target_up", &[("target", "remote")], T, |v| v == 1.0);
}

#[test]
fn a_file_descriptor_limit_below_the_session_count_is_fd_limit_not_a_crash() {
    let Some((_server, port)) = python_ws(0, &[]) else {
        return;
    };
    // 160 descriptors: 64 are kept for the agent itself and 36 for HTTP
    // connections, 60 go to sessions.
    let agent = Agent::start_with_nofile(
        &format!(
            "[web]\nmax_connections = 36\n{}",
            one_target("many", &format!("ws://127.0.0.1:{port}/"), "connections = 100")
        ),
        160,
    );
    agent.wait_metric("sockpulse_sessions", &[("target", "many"), ("state", "open")], T, |v| {
        v == 60.0
    });
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", "many"), ("reason", "fd_limit")],
        T,
        |v| v >= 40.0,
    );
    // Still serving, still within its limit, still answering pings.
    assert_eq!(agent.get("/healthz").0, 200);
    let open_fds = agent.metric("process_open_fds", &[]).unwrap();
    assert!(open_fds <= 160.0, "{open_fds}");
    agent.wait_metric("sockpulse_target_up", &[("target", "many")], T, |v| v == 1.0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        agent.metric("sockpulse_sessions", &[("target", "many"), ("state", "open")]),
        Some(60.0)
    );
    let log = agent.proc.output_text();
    assert!(
        log.contains("only 60 descriptors available") && log.contains("fd_limit"),
        "{log}"
    );
}

#[test]
fn slow_dns_never_stalls_other_sessions() {
    let Some(ns) = netns::NetNs::create() else { return };
    let Some(py) = python() else { return };
    // A DNS server that never answers, as the namespace's only resolver.
    let mut dns = ns.command(py.to_str().unwrap());
    dns.args([
        "-c",
        "import socket, sys, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind((sys.argv[1], 53))\nprint('LISTENING 53', flush=True)\ntime.sleep(300)",
        &ns.peer_ip,
    ]);
    let dns = Proc::spawn("black-hole dns", &mut dns);
    dns.wait_line("LISTENING", T).expect("dns");
    ns.set_resolv_conf(&format!("nameserver {}\noptions timeout:3 attempts:1\n", ns.peer_ip));
    let Some((_server, port)) = server_in(&ns) else { return };
    let dir = tempfile_dir::TempDir::new("slowdns");
    let rtt_log = dir.path().join("rtt.log");
    let config = format!(
        "{}\n[[target]]\nname = \"direct\"\nurl = \"ws://{ip}:{port}/\"\nconnections = 2\n[[target]]\nname = \"named\"\nurl = \"ws://slow.sockpulse.test:{port}/\"\nconnections = 8\n",
        fast_defaults(),
        ip = ns.peer_ip
    );
    let agent = Agent::start_in_netns(&config, &ns, &["--rtt-log", rtt_log.to_str().unwrap()]);
    // Every lookup hangs 3 s and the 4 resolver threads are all stuck...
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", "named"), ("reason", "dns")],
        T,
        |v| v >= 16.0,
    );
    // ...while the target that needs no DNS kept pinging undisturbed.
    assert_eq!(agent.metric("sockpulse_target_up", &[("target", "direct")]), Some(1.0));
    assert_eq!(
        agent.metric("sockpulse_pong_timeouts_total", &[("target", "direct")]),
        Some(0.0)
    );
    let rtts: Vec<u64> = std::fs::read_to_string(&rtt_log)
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some("direct"))
        .filter_map(|l| l.split(' ').nth(2)?.parse().ok())
        .collect();
    assert!(rtts.len() >= 6, "{rtts:?}");
    assert!(
        rtts.iter().all(|us| *us < 50_000),
        "a ping stalled behind DNS: {rtts:?} µs"
    );
    assert!(agent.proc.output_text().contains("resolution timed out"));
}

#[test]
fn a_thousand_sessions_failing_together_log_a_few_lines_not_thousands() {
    let Some((mut server, port)) = node_ws(0) else {
        return;
    };
    let agent = Agent::start(&format!(
        "[defaults]\nbackoff = {{ min = \"200ms\", max = \"1s\" }}\n[kernel]\nscan_interval = \"off\"\n\
         [[target]]\nname = \"fleet\"\nurl = \"ws://127.0.0.1:{port}/\"\nconnections = 1000\n"
    ));
    let open = [("target", "fleet"), ("state", "open")];
    agent.wait_metric("sockpulse_sessions", &open, T, |v| v == 1000.0);
    let lines_of = |needle: &str| {
        let out = agent.proc.output();
        out.iter()
            .filter(|l| l.contains("target=fleet ") && l.contains(needle))
            .count()
    };
    assert_eq!(
        lines_of(" open ("),
        2,
        "the first open and the one that made the target whole"
    );
    server.kill();
    // Every session is cut and then refused round after round (backoff at
    // most 1 s): thousands of failures over the summary interval.
    let refused = [("target", "fleet"), ("reason", "refused")];
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &refused,
        Duration::from_secs(30),
        |v| v >= 5000.0,
    );
    let summary = agent.wait_until_log("still failing", Duration::from_secs(15));
    let text = agent.scrape();
    let disconnects: f64 = ["eof", "reset"]
        .iter()
        .filter_map(|r| {
            metric_value(
                &text,
                "sockpulse_disconnects_total",
                &[("target", "fleet"), ("reason", r)],
            )
        })
        .sum();
    assert_eq!(disconnects, 1000.0);
    // One line per reason that occurred (eof and/or reset, refused), then
    // summaries: one per 10 s.
    let first = lines_of(" disconnected: ") + lines_of(" connect failed: ");
    assert!(
        (2..=3).contains(&first),
        "{first} full failure lines:\n{}",
        agent.proc.output_text()
    );
    assert!(summary.contains("refused×"), "{summary}");
    assert!(summary.contains("1000 of 1000 session(s) affected"), "{summary}");
    // The server comes back on its port: one recovery line for the target.
    let Some((_again, _)) = node_ws(port) else {
        return;
    };
    agent.wait_metric("sockpulse_sessions", &open, Duration::from_secs(30), |v| v == 1000.0);
    agent.wait_until_log("recovered: all 1000 session(s) open", T);
    assert_eq!(lines_of(" open ("), 3, "{}", agent.proc.output_text());
}
