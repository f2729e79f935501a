//! The agent's HTTP endpoint under the load and abuse it meets when it is
//! exposed: 200 `/probe` checks at once, clients that trickle request
//! heads (slowloris) while a real Prometheus scrapes, keep-alive and
//! pipelining, and `status --agent` showing recent checks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::observability::{prom_query, run_prometheus};
use crate::support::*;

const T: Duration = Duration::from_secs(30);

/// Cumulative bucket counts (upper bound, count) of the ping RTTs of
/// `target`'s sessions.
fn rtt_buckets(agent: &Agent, target: &str) -> Vec<(f64, f64)> {
    let series = format!("target=\"{target}\"");
    agent
        .scrape()
        .lines()
        .filter(|l| l.starts_with("sockpulse_ping_rtt_seconds_bucket{") && l.contains(&series))
        .filter(|l| l.contains("probe=\"ping\""))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// The p99 of the RTTs observed between two snapshots (the upper bound of
/// its bucket), and how many there were.
fn p99_between(before: &[(f64, f64)], after: &[(f64, f64)]) -> (f64, f64) {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, n)| {
            let was = before.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, b)| *b);
            (le, n - was)
        })
        .collect();
    let total = delta.iter().map(|d| d.1).fold(0.0, f64::max);
    let p99 = delta
        .iter()
        .find(|(_, n)| *n >= 0.99 * total)
        .map_or(f64::INFINITY, |d| d.0);
    (p99, total)
}

/// `target`'s RTT p99 over `window`, measured now.
pub(crate) fn p99_over(agent: &Agent, target: &str, window: Duration) -> (f64, f64) {
    let before = rtt_buckets(agent, target);
    std::thread::sleep(window);
    p99_between(&before, &rtt_buckets(agent, target))
}

/// A loop that stalled on the HTTP side would push pongs' RTTs far past a
/// loopback round trip; 50 ms leaves room for a loaded CI machine.
const RTT_P99_BOUND: f64 = 0.05;

/// An agent configured with `head` and the target "py": 4 sessions to the
/// server on `port`, pinging every 250 ms, whose RTTs the load tests watch;
/// returned once the target is up.
pub(crate) fn agent_pinging(head: &str, port: u16) -> Agent {
    let agent = Agent::start(&format!(
        "{head}{}",
        one_target(
            "py",
            &format!("ws://127.0.0.1:{port}/"),
            "connections = 4\nping_interval = \"250ms\"\npong_timeout = \"200ms\""
        )
    ));
    agent.wait_metric("sockpulse_target_up", &[("target", "py")], T, |v| v == 1.0);
    agent
}

/// Reports the RTT p99 (bucket bound, pings) without and with `load`, and
/// checks that enough pings were seen and the loaded p99 stayed in bounds.
pub(crate) fn assert_rtt_held(load: &str, baseline: (f64, f64), loaded: (f64, f64), min_pings: (f64, f64)) {
    eprintln!(
        "persistent RTT p99 (bucket bound): {:.4}s over {} pings without {load}, {:.4}s over {} pings with it",
        baseline.0, baseline.1, loaded.0, loaded.1
    );
    assert!(
        baseline.1 >= min_pings.0 && loaded.1 >= min_pings.1,
        "too few pings: {baseline:?} {loaded:?}"
    );
    assert!(
        loaded.0 <= RTT_P99_BOUND,
        "p99 {loaded:?} with {load} (baseline {baseline:?})"
    );
}

#[test]
fn two_hundred_probes_at_once_answer_by_their_deadline_the_limit_holds_and_sessions_keep_their_rtt() {
    let Some((_py, py_port)) = python_ws(0, &[]) else {
        return;
    };
    let Some((_node, node_port)) = node_ws(0) else {
        return;
    };
    let agent = agent_pinging(
        "[probe]\nmax_concurrent = 200\ndefault_timeout = \"8s\"\npings = 8\ninterval = \"500ms\"\n",
        py_port,
    );
    std::thread::sleep(Duration::from_secs(1));

    let probe = format!(
        "/probe?target={}",
        format!("ws://127.0.0.1:{node_port}/")
            .replace(':', "%3A")
            .replace('/', "%2F")
    );
    let baseline = p99_over(&agent, "py", Duration::from_secs(5));
    let before = rtt_buckets(&agent, "py");
    let started = Instant::now();
    let (answers, extras) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..200)
            .map(|_| {
                let (addr, probe) = (agent.addr.clone(), probe.clone());
                s.spawn(move || {
                    let t = Instant::now();
                    let (status, body) = http_get(&addr, &probe);
                    (status, t.elapsed(), body)
                })
            })
            .collect();
        // All 200 running: one more fails at once.
        assert!(
            wait_until(T, || agent.metric("sockpulse_probes_in_flight", &[]) == Some(200.0)),
            "in flight: {:?}",
            agent.metric("sockpulse_probes_in_flight", &[])
        );
        let extras: Vec<_> = (0..20)
            .map(|_| {
                let t = Instant::now();
                let (status, body) = http_get(&agent.addr, &probe);
                (status, t.elapsed(), body)
            })
            .collect();
        let answers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (answers, extras)
    });
    let under_load = p99_between(&before, &rtt_buckets(&agent, "py"));
    let took = started.elapsed();

    for (status, elapsed, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert!(body.contains("probe_success 1"), "{body}");
        assert!(body.contains("probe_pings_answered 8"), "{body}");
        assert!(
            *elapsed < Duration::from_secs(9),
            "answered after its deadline: {elapsed:?}"
        );
    }
    for (status, elapsed, body) in &extras {
        assert_eq!(*status, 200, "{body}");
        assert!(body.contains("reason=\"concurrency_limit\""), "{body}");
        assert!(*elapsed < Duration::from_secs(1), "a rejected probe waited {elapsed:?}");
    }
    assert!(wait_until(T, || agent.metric("sockpulse_probes_in_flight", &[]) == Some(0.0)));
    let load = format!("200 probes in flight ({took:?})");
    assert_rtt_held(&load, baseline, under_load, (40.0, 20.0));
}

/// Holds `n` connections that send a request line and then one header
/// line every `every`, reconnecting whenever the agent closes one, for
/// `duration`. Returns how many connections it opened.
fn slowloris(addr: &str, n: usize, every: Duration, duration: Duration) -> usize {
    let open = |opened: &mut usize| -> Option<TcpStream> {
        *opened += 1;
        let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").ok()?;
        Some(s)
    };
    let mut opened = 0;
    let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| open(&mut opened)).collect();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        std::thread::sleep(every);
        for c in conns.iter_mut() {
            let alive = c.as_mut().is_some_and(|s| s.write_all(b"X-Trickle: 1\r\n").is_ok());
            if !alive && opened < 20 * n {
                *c = open(&mut opened);
            }
        }
    }
    opened
}

#[test]
fn trickling_request_heads_never_fail_a_real_prometheus_scrape_nor_move_session_rtts() {
    let Some(prometheus) = which("prometheus") else {
        require("prometheus", false);
        return;
    };
    let Some((_py, py_port)) = python_ws(0, &[]) else {
        return;
    };
    let agent = agent_pinging("[web]\nmax_connections = 200\nheader_timeout = \"2s\"\n", py_port);

    // One head that never ends is cut at header_timeout.
    let mut slow = TcpStream::connect(&agent.addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let t = Instant::now();
    while slow.write_all(b"X-Trickle: 1\r\n").is_ok() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let cut = t.elapsed();
    assert!(
        cut >= Duration::from_millis(1500) && cut < Duration::from_secs(6),
        "cut after {cut:?}"
    );
    assert_eq!(
        agent.metric(
            "sockpulse_http_connections_dropped_total",
            &[("reason", "header_timeout")]
        ),
        Some(1.0)
    );

    let work = tempfile_dir::TempDir::new("prometheus-slowloris");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sockpulse\n\
         \x20   static_configs:\n      - targets: ['{}']\n",
        agent.addr
    );
    let (prom, prom_addr, _work) = run_prometheus(&prometheus, work, &config);
    let up_samples = |expr: &str| -> Option<f64> {
        let v = prom_query(&prom_addr, expr);
        v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse().ok())
    };
    assert!(
        wait_until(T, || up_samples("up{job=\"sockpulse\"}") == Some(1.0)),
        "{}",
        prom.output_text()
    );

    let window = Duration::from_secs(10);
    let baseline = p99_over(&agent, "py", window);
    let before = rtt_buckets(&agent, "py");
    let attack_started = Instant::now();
    let opened = slowloris(&agent.addr, 1000, Duration::from_millis(500), window);
    let under_attack = p99_between(&before, &rtt_buckets(&agent, "py"));
    let attack = attack_started.elapsed();

    // Every scrape during the attack succeeded.
    let range = format!("{}s", attack.as_secs() - 1);
    let scrapes = up_samples(&format!("count_over_time(up{{job=\"sockpulse\"}}[{range}])"));
    let worst = up_samples(&format!("min_over_time(up{{job=\"sockpulse\"}}[{range}])"));
    assert_eq!(
        worst,
        Some(1.0),
        "a scrape failed during the attack ({scrapes:?} scrapes)"
    );
    assert!(
        scrapes.is_some_and(|n| n >= (attack.as_secs() - 3) as f64),
        "scrapes: {scrapes:?}"
    );
    let evicted = agent.metric("sockpulse_http_connections_dropped_total", &[("reason", "evicted")]);
    assert!(
        evicted.is_some_and(|n| n >= 800.0),
        "evicted: {evicted:?}, opened {opened}"
    );
    let open_now = agent.metric("sockpulse_http_connections", &[]);
    assert!(open_now.is_some_and(|n| n <= 200.0), "{open_now:?}");
    let load = format!("slowloris: {opened} connections in {attack:?}, {evicted:?} evicted");
    assert_rtt_held(&load, baseline, under_attack, (80.0, 40.0));
}

/// Reads one HTTP/1.1 answer with a Content-Length body off `s`.
fn read_answer(s: &mut TcpStream, pending: &mut Vec<u8>) -> (String, String) {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if pending.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&pending[end + 4..end + 4 + len]).to_string();
                pending.drain(..end + 4 + len);
                return (head, body);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).expect("read an answer");
        assert!(
            n > 0,
            "closed before a whole answer: {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn one_connection_carries_pipelined_requests_a_probe_and_the_next_request() {
    let agent = Agent::start(fast_defaults());
    let mut s = TcpStream::connect(&agent.addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let mut pending = Vec::new();
    // Two requests in one write: two answers, in order.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let (head, body) = read_answer(&mut s, &mut pending);
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("Connection: keep-alive"),
        "{head}"
    );
    assert_eq!(body, "ok\n");
    let (head, _) = read_answer(&mut s, &mut pending);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    // A check answered later, on the same connection, then one more request.
    let own = format!("ws://{}/ws", agent.addr)
        .replace(':', "%3A")
        .replace('/', "%2F");
    write!(s, "GET /probe?target={own} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let (head, body) = read_answer(&mut s, &mut pending);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("probe_success 1"), "{body}");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, body) = read_answer(&mut s, &mut pending);
    assert!(head.contains("Connection: close") && body == "ok\n", "{head}");
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap(),
        0,
        "the connection ends after Connection: close"
    );

    // Heads that are too big or not HTTP get their status and a close.
    let mut big = TcpStream::connect(&agent.addr).unwrap();
    big.set_read_timeout(Some(T)).unwrap();
    let _ = big.write_all(format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(9000)).as_bytes());
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let mut junk = TcpStream::connect(&agent.addr).unwrap();
    junk.set_read_timeout(Some(T)).unwrap();
    junk.write_all(b"\x16\x03\x01\x02\x00 hello\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = junk.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[test]
fn status_of_a_running_agent_lists_file_discovered_targets_and_recent_probes() {
    let Some((_py, port)) = python_ws(0, &[]) else {
        return;
    };
    let dir = tempfile_dir::TempDir::new("status-file-sd");
    let url = format!("ws://127.0.0.1:{port}/from-file");
    std::fs::write(dir.path().join("t.json"), format!(r#"[{{"targets": ["{url}"]}}]"#)).unwrap();
    let agent = Agent::start(&format!(
        "target_files = [\"{}/*.json\"]\n{}",
        dir.path().display(),
        fast_defaults()
    ));
    agent.wait_metric("sockpulse_target_up", &[("target", &url)], T, |v| v == 1.0);
    let refused = format!("ws://127.0.0.1:{}/", free_port());
    let (status, body) = agent.get(&format!(
        "/probe?target={}",
        refused.replace(':', "%3A").replace('/', "%2F")
    ));
    assert_eq!((status, body.contains("probe_success 0")), (200, true), "{body}");

    let out = sockpulse(&["status", "--agent", &format!("http://{}", agent.addr)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&url), "{text}");
    assert!(text.contains("Recent /probe checks (1)"), "{text}");
    let row = text.lines().find(|l| l.contains(&refused)).unwrap_or_default();
    assert!(row.contains("FAIL") && row.contains("refused"), "{text}");

    let (status, json) = agent.get("/api/v1/probes");
    assert_eq!(status, 200);
    let probes: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(probes[0]["url"], refused.as_str(), "{json}");
    assert_eq!(probes[0]["reason"], "refused", "{json}");
    assert!(probes[0]["finished_unix"].as_f64().is_some_and(|t| t > 1.7e9), "{json}");
}

#[test]
fn events_are_kept_numbered_filtered_and_shown_by_status_and_its_watch() {
    let Some((mut py, port)) = python_ws(0, &[]) else {
        return;
    };
    let refused = free_port();
    let config = format!(
        "{}[[target]]\nname = \"down\"\nurl = \"ws://127.0.0.1:{refused}/\"\n",
        one_target("py", &format!("ws://127.0.0.1:{port}/"), "")
    );
    let agent = Agent::start(&config);
    agent.wait_metric("sockpulse_target_up", &[("target", "py")], T, |v| v == 1.0);
    py.kill();
    agent.wait_metric("sockpulse_target_up", &[("target", "py")], T, |v| v == 0.0);
    let events = |query: &str| -> Vec<serde_json::Value> {
        let (status, body) = agent.get(&format!("/api/v1/events{query}"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let all = events("");
    let kinds = |target: &str| -> Vec<String> {
        all.iter()
            .filter(|e| e["target"] == target)
            .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(kinds("py")[..2], ["opened", "disconnected"], "{all:?}");
    assert_eq!(kinds("down")[0], "connect_failed", "{all:?}");
    let failed = all.iter().find(|e| e["target"] == "down").unwrap();
    assert_eq!(failed["reason"], "refused", "{failed}");
    let dropped = all.iter().find(|e| e["kind"] == "disconnected").unwrap();
    assert!(
        dropped["reason"].is_string() && dropped["open_for_seconds"].as_f64().is_some(),
        "{dropped}"
    );
    // Numbered in order; `since` and `target` select; bad numbers are 400s.
    let seqs: Vec<u64> = all.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let last = *seqs.last().unwrap();
    assert!(events(&format!("?since={last}")).is_empty());
    let after_first = events(&format!("?since={}", seqs[0]));
    assert_eq!(after_first.len(), all.len() - 1);
    assert!(events("?target=down").iter().all(|e| e["target"] == "down"));
    assert_eq!(events("?target=down&limit=1").len(), 1);
    assert_eq!(agent.get("/api/v1/events?since=x").0, 400);

    let url = format!("http://{}", agent.addr);
    let out = sockpulse(&["status", "--agent", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("Recent events:"), "{text}");
    let row = text.lines().find(|l| l.contains("down #0")).unwrap_or_default();
    assert!(row.contains("connect_failed") && row.contains("refused"), "{text}");

    // --watch redraws every second until stopped.
    let mut watch = Proc::spawn(
        "status --watch",
        std::process::Command::new(sockpulse_bin()).args(["status", "--agent", &url, "--watch"]),
    );
    assert!(wait_until(T, || watch.output_text().matches("Recent events:").count() >= 3));
    watch.kill();
    assert!(watch.output_text().contains("\x1b[H\x1b[2J"));
    assert_eq!(
        sockpulse(&["status", "--watch"]).status.code(),
        Some(2),
        "--watch needs --agent"
    );
}

#[test]
fn kernel_findings_reach_the_event_history_and_the_host_summary() {
    let Some(py) = python() else {
        return;
    };
    let port = free_port();
    // A full accept queue (backlog 1) and a CLOSE_WAIT socket on `port`.
    let mut cmd = std::process::Command::new(py);
    cmd.arg(repo().join("tests/peers/tcp_states.py"))
        .arg("127.0.0.1")
        .arg(port.to_string());
    let mut helper = Proc::spawn("tcp_states", &mut cmd);
    helper
        .wait_line("READY", T)
        .unwrap_or_else(|| panic!("helper: {}", helper.output_text()));
    let agent = Agent::start(&format!(
        "[kernel]\nscan_interval = \"500ms\"\nwatch_ports = [{port}]\nclose_wait_age_alert = \"1s\"\n{}",
        fast_defaults()
    ));
    let kernel_details = || -> Vec<String> {
        let (_, body) = agent.get("/api/v1/events");
        let events: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
        events
            .iter()
            .filter(|e| e["kind"] == "kernel" && e["target"] == "")
            .filter_map(|e| e["detail"].as_str().map(str::to_string))
            .collect()
    };
    let leak = format!("port {port}: 1 CLOSE_WAIT socket(s) past the age alert");
    let full = format!("port {port}: accept queue");
    assert!(
        wait_until(T, || {
            let d = kernel_details();
            d.iter().any(|l| l.starts_with(&leak)) && d.iter().any(|l| l.starts_with(&full) && l.contains("% full"))
        }),
        "{:?}",
        kernel_details()
    );
    let (status, body) = agent.get("/api/v1/host");
    assert_eq!(status, 200);
    let host: serde_json::Value = serde_json::from_str(&body).unwrap();
    let p = &host["ports"][port.to_string()];
    assert_eq!(p["by_state"]["close_wait"], 1, "{p}");
    assert_eq!(p["close_wait_over_age"], 1, "{p}");
    assert!(p["listen_queue_ratio"].as_f64().is_some_and(|r| r >= 0.9), "{p}");
    // The sockets go: so do the findings, each with its event.
    helper.kill();
    let gone = format!("port {port}: no CLOSE_WAIT socket past the age alert any more");
    let drained = format!("port {port}: accept queue drained");
    assert!(
        wait_until(T, || {
            let d = kernel_details();
            d.contains(&gone) && d.contains(&drained)
        }),
        "{:?}",
        kernel_details()
    );
}
