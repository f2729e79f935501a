//! A bounded soak: real peers, thousands of connect/disconnect cycles and
//! faults injected at random; at the end RSS and open fds are flat, no
//! session is stuck, and the counters add up. CI runs it for
//! SOCKPULSE_SOAK_SECS (default 40 s); scripts/soak.sh runs 10 minutes.

use std::time::{Duration, Instant};

use crate::support::hostile::{self, Behaviour};
use crate::support::*;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn soak_with_random_faults_stays_flat_and_consistent() {
    let secs: u64 = std::env::var("SOCKPULSE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let Some((mut py, py_port)) = python_ws(0, &[]) else {
        return;
    };
    let Some((mut node, node_port)) = node_ws(0) else {
        return;
    };
    let Some((_redis, redis_port)) = redis() else { return };
    let close = hostile::serve(Behaviour::CloseFrameAfter(300));
    let fin = hostile::serve(Behaviour::FinAfter(300));
    let rst = hostile::serve(Behaviour::RstAfter(300));
    let targets: [(&str, String, u32, &str); 6] = [
        ("py", format!("ws://127.0.0.1:{py_port}/"), 20, ""),
        ("node", format!("ws://127.0.0.1:{node_port}/"), 20, ""),
        (
            "redis",
            format!("tcp://127.0.0.1:{redis_port}"),
            5,
            "probe = { send = \"PING\\r\\n\", expect = \"+PONG\" }\n",
        ),
        ("close", format!("ws://127.0.0.1:{close}/"), 10, ""),
        ("fin", format!("ws://127.0.0.1:{fin}/"), 10, ""),
        ("rst", format!("ws://127.0.0.1:{rst}/"), 10, ""),
    ];
    let mut config = fast_defaults().replace(
        "backoff = { min = \"100ms\", max = \"500ms\" }",
        "backoff = { min = \"50ms\", max = \"200ms\", reset_after = \"250ms\" }",
    );
    config.push_str("[kernel]\nscan_interval = \"1s\"\n");
    for (name, url, n, extra) in &targets {
        config.push_str(&format!(
            "[[target]]\nname = \"{name}\"\nurl = \"{url}\"\nconnections = {n}\n{extra}"
        ));
    }
    let agent = Agent::start(&config);
    let pid = agent.proc.pid();
    for t in ["py", "node", "redis"] {
        agent.wait_metric("sockpulse_target_up", &[("target", t)], Duration::from_secs(15), |v| {
            v == 1.0
        });
    }
    // Healthy baseline; the 30 hostile sessions cycle every 300 ms, so
    // their sockets come and go: that much slack is allowed.
    let healthy_fds = open_fds(pid);
    let cycling_sockets = 30;

    let started = Instant::now();
    let warmup = Duration::from_secs(secs / 4);
    let mut warm_rss = 0u64;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    while started.elapsed() < Duration::from_secs(secs) {
        match next() % 4 {
            0 => {
                py.signal("STOP");
                std::thread::sleep(Duration::from_millis(500 + next() % 1000));
                py.signal("CONT");
            }
            1 => {
                node.kill();
                std::thread::sleep(Duration::from_millis(300 + next() % 700));
                if let Some((n, _)) = node_ws(node_port) {
                    node = n;
                }
            }
            2 => {
                py.kill();
                std::thread::sleep(Duration::from_millis(200 + next() % 500));
                if let Some((p, _)) = python_ws(py_port, &[]) {
                    py = p;
                }
            }
            _ => std::thread::sleep(Duration::from_millis(500 + next() % 1000)),
        }
        if started.elapsed() >= warmup && warm_rss == 0 {
            warm_rss = proc_status_kib(pid, "VmRSS:");
        }
    }
    // Faults healed: everything that can be up comes back up.
    for t in ["py", "node", "redis"] {
        agent.wait_metric("sockpulse_target_up", &[("target", t)], Duration::from_secs(15), |v| {
            v == 1.0
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    let text = agent.scrape();
    let (end_rss, end_fds) = (proc_status_kib(pid, "VmRSS:"), open_fds(pid));
    let m = |name: &str, target: &str| metric_value(&text, name, &[("target", target)]).unwrap_or(0.0);
    let mut cycles = 0.0;
    for (name, _, n, _) in &targets {
        let attempts = m("sockpulse_connect_attempts_total", name);
        let opened = m("sockpulse_sessions_opened_total", name);
        let failed: f64 = text
            .lines()
            .filter(|l| l.starts_with("sockpulse_connect_failures_total{") && l.contains(&format!("target=\"{name}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        let in_flight = attempts - opened - failed;
        assert!(
            (0.0..=f64::from(*n)).contains(&in_flight),
            "{name}: attempts {attempts} != opened {opened} + failed {failed} (+ in flight)"
        );
        // No stuck sessions: every configured session is in some state.
        let states: f64 = text
            .lines()
            .filter(|l| l.starts_with("sockpulse_sessions{") && l.contains(&format!("target=\"{name}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(states, f64::from(*n), "{name}: sessions by state");
        cycles += opened;
    }
    let summary = serde_json::json!({
        "seconds": secs, "connect_cycles": cycles,
        "rss_kib_after_warmup": warm_rss, "rss_kib_end": end_rss,
        "open_fds_healthy_start": healthy_fds, "open_fds_end": end_fds,
        "panics": agent.proc.output_text().matches("panicked").count(),
    });
    std::fs::create_dir_all(repo().join("target")).unwrap();
    std::fs::write(repo().join("target/soak.json"), summary.to_string()).unwrap();
    eprintln!("soak: {summary}");
    assert!(cycles >= (secs * 20) as f64, "too few connect cycles: {cycles}");
    assert!(
        end_rss <= warm_rss + warm_rss / 4 + 2048,
        "RSS grew: {warm_rss} KiB -> {end_rss} KiB"
    );
    assert!(
        end_fds <= healthy_fds + cycling_sockets + 8,
        "fds grew: {healthy_fds} -> {end_fds}"
    );
    assert_eq!(summary["panics"], 0);
}
