//! Dashboards and alert rules, proven with the real tools: promtool checks
//! and unit-tests every rule; a real Prometheus scrapes a running agent and
//! answers every dashboard query and evaluates every rule.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(30);

fn rules_dir() -> std::path::PathBuf {
    repo().join("packaging/prometheus")
}

#[test]
fn promtool_checks_and_unit_tests_every_alert() {
    let Some(promtool) = which("promtool") else {
        require("promtool", false);
        return;
    };
    for args in [
        vec!["check", "rules", "sockpulse-rules.yml"],
        vec!["test", "rules", "sockpulse-rules.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(rules_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert in the rules file has a unit test.
    let rules = std::fs::read_to_string(rules_dir().join("sockpulse-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(rules_dir().join("sockpulse-rules.test.yml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "no promtool test for {alert}"
        );
    }
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("dashboards/sockpulse.json")).unwrap()).unwrap()
}

/// Every PromQL expression in the dashboard, with Grafana's variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dashboard()["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$instance", ".*")
                .replace("$target", ".*")
                .replace("$__rate_interval", "1m")
                .replace("$__range", "5m");
            out.push((p["title"].as_str().unwrap().to_string(), expr));
        }
    }
    out
}

#[test]
fn dashboard_json_is_structurally_sound() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "instance", "team", "target"]);
    let mut ids = std::collections::HashSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id {}", p["id"]);
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {} must use the datasource variable",
            p["title"]
        );
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}");
            assert!(t["expr"].as_str().is_some_and(|e| e.contains("sockpulse_")));
        }
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "panel {} overflows the grid",
            p["title"]
        );
    }
    // The committed file is what the generator writes.
    let regenerated = Command::new("python3")
        .arg(repo().join("scripts/gen-dashboard.py"))
        .output()
        .unwrap();
    assert!(regenerated.status.success());
    assert_eq!(
        dashboard(),
        d,
        "dashboards/sockpulse.json is stale: run scripts/gen-dashboard.py"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn prom_query(addr: &str, expr: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, &format!("/api/v1/query?query={}", urlencode(expr)));
    assert_eq!(status, 200, "query {expr}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("query {expr}: {e}: {body}"))
}

/// A real Prometheus scraping `agents` every second (job `sockpulse`) with
/// the shipped rules, ready to query.
fn start_prometheus(bin: &std::path::Path, agents: &[&str]) -> (Proc, String, tempfile_dir::TempDir) {
    let work = tempfile_dir::TempDir::new("prometheus");
    std::fs::copy(
        rules_dir().join("sockpulse-rules.yml"),
        work.path().join("sockpulse-rules.yml"),
    )
    .unwrap();
    let targets = agents.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [sockpulse-rules.yml]\nscrape_configs:\n  - job_name: sockpulse\n    static_configs:\n      - targets: [{targets}]\n"
    );
    run_prometheus(bin, work, &config)
}

/// Prometheus with `config` (written into `work`), ready to query.
pub(crate) fn run_prometheus(
    bin: &std::path::Path,
    work: tempfile_dir::TempDir,
    config: &str,
) -> (Proc, String, tempfile_dir::TempDir) {
    std::fs::write(work.path().join("prometheus.yml"), config).unwrap();
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(bin);
    cmd.arg(format!(
        "--config.file={}",
        work.path().join("prometheus.yml").display()
    ))
    .arg(format!("--storage.tsdb.path={}", work.path().join("data").display()))
    .arg(format!("--web.listen-address={prom_addr}"));
    let prom = Proc::spawn("prometheus", &mut cmd);
    assert!(
        wait_until(T, || std::net::TcpStream::connect(&prom_addr).is_ok()
            && http_get(&prom_addr, "/-/ready").0 == 200),
        "prometheus not ready:\n{}",
        prom.output_text()
    );
    (prom, prom_addr, work)
}

#[test]
fn two_sharded_agents_monitor_every_target_once_and_a_missing_one_is_alerted() {
    let Some(prometheus) = which("prometheus") else {
        require("prometheus", false);
        return;
    };
    let Some((_server, port)) = python_ws(0, &[]) else {
        return;
    };
    let names: Vec<String> = (0..8).map(|i| format!("shard-t{i}")).collect();
    let mut config = fast_defaults().to_string();
    for n in &names {
        config.push_str(&format!(
            "[[target]]\nname = \"{n}\"\nurl = \"ws://127.0.0.1:{port}/\"\n"
        ));
    }
    let mut agents = vec![
        Agent::start_with(&config, &["--shard", "0/2"]),
        Agent::start_with(&config, &["--shard", "1/2"]),
    ];
    let held = |agent: &Agent| -> Vec<String> {
        let mut mine: Vec<String> = names
            .iter()
            .filter(|n| agent.metric("sockpulse_target_up", &[("target", n.as_str())]).is_some())
            .cloned()
            .collect();
        mine.sort();
        mine
    };
    let (a, b) = (held(&agents[0]), held(&agents[1]));
    assert!(!a.is_empty() && !b.is_empty(), "both shards hold targets: {a:?} {b:?}");
    assert!(a.iter().all(|n| !b.contains(n)), "no target twice: {a:?} {b:?}");
    assert_eq!(a.len() + b.len(), names.len(), "every target once: {a:?} {b:?}");
    for agent in &agents {
        assert_eq!(agent.metric("sockpulse_shards", &[]), Some(2.0));
    }

    let (prom, prom_addr, _work) = start_prometheus(&prometheus, &[&agents[0].addr, &agents[1].addr]);
    let count = |expr: &str| -> Option<f64> {
        let v = prom_query(&prom_addr, expr);
        v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse().ok())
    };
    let monitored = "count(sockpulse_target_up{target=~\"shard-t.*\"})";
    assert!(
        wait_until(T, || count(monitored) == Some(8.0)),
        "union of the shards: {:?}\n{}",
        count(monitored),
        prom.output_text()
    );
    let rule = "count by (job) (sockpulse_shards > 0) < max by (job) (sockpulse_shards)";
    assert_eq!(count(rule), None, "all shards report: the rule is quiet");
    // Shard 1 stops: its targets leave the union, and the rule fires.
    agents.pop();
    assert!(
        wait_until(T, || count(monitored) == Some(a.len() as f64)),
        "after shard 1 stopped: {:?}",
        count(monitored)
    );
    assert!(wait_until(T, || count(rule) == Some(1.0)), "{:?}", count(rule));
}

#[test]
fn real_prometheus_scrapes_the_agent_answers_every_panel_and_evaluates_every_rule() {
    let Some(prometheus) = which("prometheus") else {
        require("prometheus", false);
        return;
    };
    let Some((_server, ws_port)) = python_ws(0, &[]) else {
        return;
    };
    let Some(certs) = certs() else { return };
    let dir = certs.path().display().to_string();
    let Some((_tls, tls_port)) = python_wss(certs.path(), "good", &[]) else {
        return;
    };
    let closed = free_port();
    let agent = Agent::start(&format!(
        "{}
[kernel]
scan_interval = \"500ms\"
watch_ports = [{ws_port}]
[[target]]
name = \"py\"
url = \"ws://127.0.0.1:{ws_port}/\"
connections = 2
labels = {{ team = \"payments\", env = \"prod\" }}
[[target]]
name = \"secure\"
url = \"wss://localhost:{tls_port}/\"
tls = {{ ca_file = \"{dir}/ca.pem\" }}
labels = {{ team = \"edge\" }}
[[target]]
name = \"down\"
url = \"ws://127.0.0.1:{closed}/\"
",
        fast_defaults()
    ));
    agent.wait_metric("sockpulse_target_up", &[("target", "py")], T, |v| v == 1.0);

    let (prom, prom_addr, _work) = start_prometheus(&prometheus, &[&agent.addr]);
    // Enough scrapes for rate() over 1m windows to have two points.
    assert!(
        wait_until(T, || {
            prom_query(&prom_addr, "count_over_time(sockpulse_build_info[1m]) >= 4")["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        }),
        "prometheus never collected enough samples:\n{}",
        prom.output_text()
    );

    // Panels that must show data for this setup (a healthy, a TLS and a down
    // target, a watched port); the others must at least be valid queries.
    let must_have_data = [
        "Targets up",
        "Sessions by state",
        "Ping RTT p50 / p99",
        "Ping RTT distribution",
        "Seconds since last pong (worst session)",
        "Connect failures by reason",
        "Connect phase p99",
        "TLS certificate days left",
        "Own sockets by kernel state",
        "Host TCP sockets by state",
        "TIME_WAIT / ephemeral ports",
        "Host scan duration p99",
    ];
    let mut empty = Vec::new();
    for (title, expr) in dashboard_queries() {
        let v = prom_query(&prom_addr, &expr);
        assert_eq!(v["status"], "success", "panel {title}: {expr}: {v}");
        let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
        if must_have_data.contains(&title.as_str()) && result.is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "panels without data:\n{}", empty.join("\n"));
    // Targets' labels join onto any series, and the dashboard's variables
    // pick targets by them.
    let joined = prom_query(
        &prom_addr,
        "sockpulse_target_up * on (instance, target) group_left (team, env) sockpulse_target_info",
    );
    let mut teams: Vec<(String, String, String)> = joined["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let m = &r["metric"];
            let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
            (s("target"), s("team"), s("env"))
        })
        .collect();
    teams.sort();
    assert_eq!(
        teams,
        [
            ("down".into(), "".into(), "".into()),
            ("py".into(), "payments".into(), "prod".into()),
            ("secure".into(), "edge".into(), "".into())
        ]
    );
    let d = dashboard();
    let var_query = |name: &str| {
        d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["query"].as_str())
            .unwrap()
            .to_string()
    };
    let series_of = |query: &str, team: &str| {
        // label_values(SELECTOR, LABEL) as Grafana runs it: the selector's series.
        let selector = query
            .trim_start_matches("label_values(")
            .rsplit_once(',')
            .unwrap()
            .0
            .replace("$instance", ".*")
            .replace("$team", team);
        let v = prom_query(&prom_addr, &selector);
        let mut names: Vec<String> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["metric"]["target"].as_str().unwrap_or("").to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(series_of(&var_query("target"), ".*"), ["down", "py", "secure"]);
    assert_eq!(series_of(&var_query("target"), "payments"), ["py"]);
    let days = prom_query(
        &prom_addr,
        "(sockpulse_tls_cert_expiry_timestamp_seconds{target=\"secure\"} - time()) / 86400",
    );
    let days: f64 = days["data"]["result"][0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((19.0..=20.5).contains(&days), "{days}");

    // Every rule evaluates without error, and the firing ones are the right ones.
    let shipped = std::fs::read_to_string(repo().join("packaging/prometheus/sockpulse-rules.yml")).expect("rules");
    let rule_count = shipped
        .lines()
        .filter(|l| l.trim_start().starts_with("- record:") || l.trim_start().starts_with("- alert:"))
        .count();
    assert!(rule_count >= 16, "{rule_count} rules in the shipped file");
    assert!(wait_until(T, || {
        let (_, body) = http_get(&prom_addr, "/api/v1/rules");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let rules: Vec<serde_json::Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        rules.len() == rule_count && rules.iter().all(|r| r["health"] == "ok")
    }));
    let p99 = prom_query(&prom_addr, "target:sockpulse_ping_rtt_seconds:p99_5m{target=\"py\"}");
    assert_eq!(p99["data"]["result"].as_array().map(|r| r.len()), Some(1), "{p99}");
    let (_, alerts) = http_get(&prom_addr, "/api/v1/alerts");
    assert!(
        alerts.contains("SockpulseTargetDown") && alerts.contains("\"target\":\"down\""),
        "{alerts}"
    );
    assert!(
        !alerts.contains("\"target\":\"py\""),
        "the healthy target raised an alert: {alerts}"
    );
}

/// A real Prometheus probing through the agent's /probe the way
/// blackbox_exporter's documentation wires it: targets from file_sd,
/// `__param_target` from the address, the agent as the scraped address.
fn start_probing_prometheus(bin: &std::path::Path, agent: &str, groups: &str) -> (Proc, String, tempfile_dir::TempDir) {
    let work = tempfile_dir::TempDir::new("prometheus-probe");
    std::fs::write(work.path().join("targets.json"), groups).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: sockpulse_probe\n    metrics_path: /probe\n\
         \x20   file_sd_configs:\n      - files: ['{}']\n\
         \x20   relabel_configs:\n\
         \x20     - source_labels: [__address__]\n        target_label: __param_target\n\
         \x20     - source_labels: [module]\n        target_label: __param_module\n\
         \x20     - source_labels: [__param_target]\n        target_label: instance\n\
         \x20     - target_label: __address__\n        replacement: {agent}\n",
        work.path().join("targets.json").display()
    );
    run_prometheus(bin, work, &config)
}

#[test]
fn prometheus_probes_through_the_agent_as_it_would_through_blackbox_exporter() {
    let Some(prometheus) = which("prometheus") else {
        require("prometheus", false);
        return;
    };
    let Some((_server, ws_port)) = python_ws(0, &[]) else {
        return;
    };
    let Some((_sio, sio_port)) = node_peer("node socket.io 4", "socketio_server.js", "socket.io", &["0"]) else {
        return;
    };
    let hostile = crate::support::hostile::serve(crate::support::hostile::Behaviour::BadAccept);
    let refused = free_port();
    let agent = Agent::start(&format!(
        "[module.socketio]\nprotocol = \"socketio\"\n[probe]\npings = 2\ntimeout_offset = \"200ms\"\n{}",
        fast_defaults()
    ));
    let healthy = format!("ws://127.0.0.1:{ws_port}/");
    let sio = format!("ws://127.0.0.1:{sio_port}/socket.io/?EIO=4&transport=websocket");
    let bad = format!("ws://127.0.0.1:{hostile}/");
    let down = format!("ws://127.0.0.1:{refused}/");
    let groups = format!(
        r#"[{{"targets": ["{healthy}", "{bad}", "{down}"]}}, {{"targets": ["{sio}"], "labels": {{"module": "socketio"}}}}]"#
    );
    let (prom, prom_addr, _work) = start_probing_prometheus(&prometheus, &agent.addr, &groups);
    let value = |expr: String| -> Option<f64> {
        let v = prom_query(&prom_addr, &expr);
        v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse().ok())
    };
    for (url, success) in [(&healthy, 1.0), (&sio, 1.0), (&bad, 0.0), (&down, 0.0)] {
        assert!(
            wait_until(T, || value(format!("probe_success{{instance=\"{url}\"}}"))
                == Some(success)),
            "{url}: probe_success {:?}, want {success}\n{}",
            value(format!("probe_success{{instance=\"{url}\"}}")),
            prom.output_text()
        );
        // Every scrape answered within its timeout: none failed.
        assert_eq!(value(format!("up{{instance=\"{url}\"}}")), Some(1.0), "{url}");
    }
    let reason =
        |url: &str, reason: &str| value(format!("probe_failure_info{{instance=\"{url}\",reason=\"{reason}\"}}"));
    assert_eq!(reason(&bad, "bad_accept"), Some(1.0));
    assert_eq!(reason(&down, "refused"), Some(1.0));
    assert!(value(format!("probe_rtt_seconds{{instance=\"{sio}\",stat=\"max\"}}")).is_some());
    // The agent's own series know nothing of the probes.
    assert!(!agent.scrape().contains(&format!("127.0.0.1:{ws_port}")));

    // The answer is valid exposition, as promtool reads it.
    let (status, body) = agent.get(&format!("/probe?target={}", urlencode(&healthy)));
    assert_eq!(status, 200, "{body}");
    if let Err(e) = promtool_check_metrics(&body) {
        panic!("promtool check metrics on /probe:\n{e}");
    }
    // Bad requests are 400s with the reason.
    let (status, body) = agent.get(&format!("/probe?target={}&module=nope", urlencode(&healthy)));
    assert_eq!((status, body.contains("unknown module")), (400, true), "{body}");
    assert_eq!(agent.get("/probe").0, 400);
}

#[test]
fn probes_beyond_the_concurrency_limit_fail_at_once_and_the_rest_answer_by_their_deadline() {
    // A server that accepts and never answers: every probe runs to its deadline.
    let silent = crate::support::hostile::serve(crate::support::hostile::Behaviour::Silent);
    let agent = Agent::start(
        "[probe]\nmax_concurrent = 4\ndefault_timeout = \"1500ms\"\n[defaults]\nhandshake_timeout = \"10s\"\n",
    );
    let url = urlencode(&format!("ws://127.0.0.1:{silent}/"));
    let addr = agent.addr.clone();
    let started = std::time::Instant::now();
    let answers: Vec<(std::time::Duration, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..24)
            .map(|_| {
                let (addr, url) = (addr.clone(), url.clone());
                s.spawn(move || {
                    let t = std::time::Instant::now();
                    let (status, body) = http_get(&addr, &format!("/probe?target={url}"));
                    assert_eq!(status, 200, "{body}");
                    (t.elapsed(), body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let rejected = answers
        .iter()
        .filter(|(_, b)| b.contains("reason=\"concurrency_limit\""))
        .count();
    assert_eq!(rejected, 20, "4 run, the rest fail at once");
    for (took, body) in &answers {
        assert!(body.contains("probe_success 0"), "{body}");
        if body.contains("concurrency_limit") {
            assert!(*took < std::time::Duration::from_millis(500), "rejected late: {took:?}");
        } else {
            assert!(
                body.contains("reason=\"incomplete\"") || body.contains("handshake_timeout"),
                "{body}"
            );
            assert!(
                *took < std::time::Duration::from_millis(2500),
                "answered after its deadline: {took:?}"
            );
        }
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
