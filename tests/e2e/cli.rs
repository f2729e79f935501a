//! The user-facing commands: exit codes, output, the exposition format.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(15);

#[test]
fn status_reports_a_healthy_target_as_json_and_exits_0() {
    let Some((_server, port)) = python_ws(0, &[]) else {
        return;
    };
    let url = format!("ws://127.0.0.1:{port}/");
    let out = sockpulse(&[
        "status",
        "--target",
        &url,
        "--pings",
        "4",
        "--interval",
        "50ms",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    let r = &v[0];
    assert_eq!(r["target"], url.as_str());
    assert_eq!(r["healthy"], true);
    assert_eq!(r["reason"], serde_json::Value::Null);
    assert_eq!(r["pings_answered"], 4);
    let (min, avg, max) = (
        r["rtt_min_ms"].as_f64().unwrap(),
        r["rtt_avg_ms"].as_f64().unwrap(),
        r["rtt_max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < min && min <= avg && avg <= max && max < 250.0, "{r}");
    assert!(r["handshake_ms"].as_f64().is_some() && r["tcp_connect_ms"].as_f64().is_some());
}

#[test]
fn status_with_one_bad_target_prints_the_reason_and_exits_1() {
    let Some((_server, port)) = python_ws(0, &["--reject", "404"]) else {
        return;
    };
    let Some((_ok, ok_port)) = python_ws(0, &[]) else {
        return;
    };
    let bad = format!("ws://127.0.0.1:{port}/");
    let good = format!("ws://127.0.0.1:{ok_port}/");
    let out = sockpulse(&["status", "-t", &good, "-t", &bad]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("TARGET") && lines[0].contains("RTT min/avg/max ms"),
        "{stdout}"
    );
    let good_line = lines.iter().find(|l| l.starts_with(&good)).expect("good row");
    assert!(good_line.contains(" ok "), "{good_line}");
    let bad_line = lines
        .iter()
        .find(|l| l.starts_with(&bad) && l.contains("FAIL"))
        .expect("bad row");
    assert!(bad_line.contains("handshake_status"), "{bad_line}");
    assert!(stdout.contains("HTTP 404"), "detail line: {stdout}");
}

#[test]
fn status_of_refused_and_unresolvable_targets() {
    let port = free_port();
    let out = sockpulse(&[
        "status",
        "--json",
        "-t",
        &format!("tcp://127.0.0.1:{port}"),
        "-t",
        "ws://no-such-host.invalid/",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v[0]["reason"], "refused");
    assert_eq!(v[1]["reason"], "dns");
    assert_eq!(v[0]["healthy"], false);
}

#[test]
fn usage_and_config_errors_exit_2() {
    assert_eq!(sockpulse(&["status"]).status.code(), Some(2), "no targets");
    assert_eq!(sockpulse(&["status", "--bogus-flag"]).status.code(), Some(2));
    assert_eq!(sockpulse(&["status", "-t", "http://x/"]).status.code(), Some(2));
    assert_eq!(sockpulse(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(sockpulse(&["--version"]).status.code(), Some(0));
    let out = sockpulse(&["run", "--config", "/nonexistent/sockpulse.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn check_config_lists_every_problem_with_its_field() {
    let dir = tempfile_dir::TempDir::new("cfg");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[defaults]\nping_interval = \"2s\"\npong_timeout = \"3s\"\n[[target]]\nurl = \"ftp://x/\"\nfoo = 1\n[[target]]\nurl = \"ws://h/\"\nidle_timeout = \"forever\"\n",
    )
    .unwrap();
    let out = sockpulse(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for field in [
        "defaults.pong_timeout",
        "target[0].url",
        "target[0].foo",
        "target[1].idle_timeout",
    ] {
        assert!(err.contains(field), "missing {field} in:\n{err}");
    }
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[target]]\nname = \"a\"\nurl = \"ws://127.0.0.1:1/\"\nconnections = 2\n",
    )
    .unwrap();
    let out = sockpulse(&["check-config", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 target(s)"));
    // The shipped example config must stay valid.
    let example = repo().join("examples/sockpulse.toml");
    let out = Command::new(sockpulse_bin())
        .arg("check-config")
        .arg(&example)
        .env("QUOTES_TOKEN", "x")
        .env("FEED_TOKEN", "x")
        .env("API_TOKEN", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn out_of_the_box_the_agent_monitors_its_own_echo_endpoint() {
    let dir = tempfile_dir::TempDir::new("rttlog");
    let rtt_log = dir.path().join("rtt.log");
    let agent = Agent::start_with("", &["--rtt-log", rtt_log.to_str().unwrap()]);
    agent.wait_metric("sockpulse_target_up", &[("target", "self")], T, |v| v == 1.0);
    agent.wait_metric("sockpulse_ping_rtt_seconds_count", &[("target", "self")], T, |v| {
        v >= 1.0
    });
    // The RTT log is flushed by the once-a-second tick: `unix_ms target rtt_us read_delay_us`.
    let mut line = String::new();
    assert!(wait_until(T, || {
        line = std::fs::read_to_string(&rtt_log)
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        !line.is_empty()
    }));
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 4, "{line}");
    assert_eq!(fields[1], "self");
    let rtt_us: u64 = fields[2].parse().expect("rtt in µs");
    assert!(rtt_us > 0 && rtt_us < 250_000, "{line}");
    // The kernel stamped the pong on arrival: the loop's read delay is known.
    let read_delay_us: u64 = fields[3].parse().expect("read delay in µs");
    assert!(read_delay_us < 250_000, "{line}");
    agent.wait_metric("sockpulse_loop_read_delay_seconds_count", &[], T, |v| v >= 1.0);
    let (status, page) = agent.get("/");
    assert_eq!(status, 200);
    assert!(
        page.contains("href=\"metrics\"") && page.contains("data-target=\"self\""),
        "{page}"
    );
    assert_eq!(agent.get("/healthz"), (200, "ok\n".to_string()));
    assert_eq!(agent.get("/nope").0, 404);
    assert_eq!(
        agent.get("/ws").0,
        426,
        "plain GET on the echo endpoint asks for an upgrade"
    );
}

#[test]
fn metrics_exposition_passes_promtool_and_has_the_catalogue() {
    let promtool = which("promtool");
    if !require("promtool", promtool.is_some()) {
        return;
    }
    let Some((_server, port)) = python_ws(0, &[]) else {
        return;
    };
    let agent = Agent::start(&one_target("py", &format!("ws://127.0.0.1:{port}/"), ""));
    agent.wait_metric("sockpulse_ping_rtt_seconds_count", &[("target", "py")], T, |v| v >= 1.0);
    // Ages are refreshed by the loop's once-a-second tick.
    let age = agent.wait_metric("sockpulse_last_pong_age_seconds", &[("target", "py")], T, |v| v >= 0.0);
    assert!(age < 2.0, "pings every 500ms, yet the last pong is {age}s old");
    let text = agent.scrape();
    for name in [
        "sockpulse_target_up",
        "sockpulse_sessions",
        "sockpulse_connect_attempts_total",
        "sockpulse_connect_failures_total",
        "sockpulse_disconnects_total",
        "sockpulse_ping_rtt_seconds_bucket",
        "sockpulse_pong_timeouts_total",
        "sockpulse_last_pong_age_seconds",
        "sockpulse_last_message_age_seconds",
        "sockpulse_connect_duration_seconds_bucket",
        "sockpulse_build_info",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing");
    }
    if let Err(e) = promtool_check_metrics(&text) {
        panic!("promtool check metrics:\n{e}");
    }
}

#[test]
fn status_of_a_hung_server_names_the_kernel_diagnosis() {
    let Some((server, port)) = python_ws(0, &[]) else {
        return;
    };
    server.signal("STOP");
    let url = format!("ws://127.0.0.1:{port}/");
    let dir = tempfile_dir::TempDir::new("hung");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[defaults]\nhandshake_timeout = \"500ms\"\n").unwrap();
    let out = sockpulse(&["status", "--json", "--config", cfg.to_str().unwrap(), "-t", &url]);
    server.signal("CONT");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v[0]["reason"], "handshake_timeout");
    // The kernel accepted the connection and ACKed the upgrade request for
    // the stopped process: its application is what does not answer.
    assert_eq!(v[0]["diagnosis"], "peer_unresponsive", "{v}");
    assert!(
        v[0]["kernel"]
            .as_str()
            .is_some_and(|k| k.starts_with("kernel: established unacked=0")),
        "{v}"
    );
}

#[test]
fn output_into_a_closed_pipe_is_not_a_crash() {
    // Regression: `sockpulse check-config … | head -1` panicked on EPIPE.
    use std::process::Stdio;
    let dir = tempfile_dir::TempDir::new("pipe");
    let cfg = dir.path().join("c.toml");
    let targets: String = (0..2000)
        .map(|i| format!("[[target]]\nurl = \"ws://127.0.0.1:{}/\"\n", 1000 + i))
        .collect();
    std::fs::write(&cfg, targets).unwrap();
    let mut child = Command::new(sockpulse_bin())
        .args(["check-config", cfg.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn status_agent_reports_what_a_running_agent_sees() {
    let Some((_ok, ok_port)) = python_ws(0, &[]) else {
        return;
    };
    let Some((hung, hung_port)) = python_ws(0, &[]) else {
        return;
    };
    let agent = Agent::start(&format!(
        "{}\n[[target]]\nname = \"ok\"\nurl = \"ws://127.0.0.1:{ok_port}/\"\n[[target]]\nname = \"hung\"\nurl = \"ws://127.0.0.1:{hung_port}/\"\n",
        fast_defaults()
    ));
    agent.wait_metric("sockpulse_target_up", &[("target", "hung")], T, |v| v == 1.0);
    let url = format!("http://{}", agent.addr);
    // Both healthy: exit 0, with RTTs from the live window.
    assert!(wait_until(T, || sockpulse(&["status", "--agent", &url]).status.code() == Some(0)));
    hung.signal("STOP");
    agent.wait_metric("sockpulse_target_up", &[("target", "hung")], T, |v| v == 0.0);
    std::thread::sleep(Duration::from_millis(1100)); // one publish tick
    let out = sockpulse(&["status", "--agent", &url, "--json"]);
    hung.signal("CONT");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let by_name = |n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == n)
            .cloned()
            .unwrap()
    };
    let ok = by_name("ok");
    assert_eq!(ok["healthy"], true);
    assert!(ok["rtt_avg_ms"].as_f64().is_some_and(|r| r > 0.0 && r < 250.0), "{ok}");
    let bad = by_name("hung");
    assert_eq!(bad["healthy"], false);
    assert_eq!(bad["reason"], "pong_timeout", "{bad}");
    assert_eq!(bad["diagnosis"], "peer_unresponsive", "{bad}");
    // Usage errors and an unreachable agent.
    assert_eq!(sockpulse(&["status", "--agent", "ftp://x/"]).status.code(), Some(2));
    assert_eq!(
        sockpulse(&["status", "--agent", &url, "-t", "ws://x/"]).status.code(),
        Some(2),
        "--agent excludes --target"
    );
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let out = sockpulse(&["status", "--agent", &nobody, "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent http://127.0.0.1:"));
}

#[test]
fn telemetry_path_and_listen_address_from_the_environment() {
    let port = free_port();
    let dir = tempfile_dir::TempDir::new("envcfg");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[kernel]\nscan_interval = \"off\"\n").unwrap();
    let mut cmd = Command::new(sockpulse_bin());
    cmd.args(["run", "--web.telemetry-path", "/internal/metrics"])
        .env("SOCKPULSE_LISTEN_ADDRESS", format!("127.0.0.1:{port}"))
        .env("SOCKPULSE_CONFIG", &cfg)
        .env("RUST_LOG", "info");
    let agent = Proc::spawn("sockpulse", &mut cmd);
    let addr = format!("127.0.0.1:{port}");
    agent
        .wait_line(&format!("listening on http://{addr}"), T)
        .unwrap_or_else(|| panic!("{}", agent.output_text()));
    assert!(wait_until(T, || {
        let (status, body) = http_get(&addr, "/internal/metrics");
        status == 200 && body.contains("sockpulse_target_up{target=\"self\"}")
    }));
    assert_eq!(http_get(&addr, "/metrics").0, 404, "metrics moved");
    assert!(
        http_get(&addr, "/").1.contains("href=\"internal/metrics\""),
        "landing page links the new path"
    );
}
