//! Live reload: SIGHUP and POST /-/reload apply a new config without
//! touching unchanged targets; a broken config keeps the running one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(15);

fn targets(port: u16, names: &[(&str, u32)]) -> String {
    let mut c = fast_defaults().to_string();
    for (name, n) in names {
        c.push_str(&format!(
            "[[target]]\nname = \"{name}\"\nurl = \"ws://127.0.0.1:{port}/\"\nconnections = {n}\n"
        ));
    }
    c
}

fn post(addr: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "POST {path} HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn series_of(agent: &Agent, target: &str) -> usize {
    agent
        .scrape()
        .lines()
        .filter(|l| l.contains(&format!("target=\"{target}\"")))
        .count()
}

#[test]
fn sighup_keeps_unchanged_targets_adds_and_removes_the_rest() {
    let Some((server, port)) = python_ws(0, &[]) else {
        return;
    };
    let agent = Agent::start(&targets(port, &[("keep", 2), ("drop", 1)]));
    agent.wait_metric("sockpulse_sessions", &[("target", "keep"), ("state", "open")], T, |v| {
        v == 2.0
    });
    agent.wait_metric("sockpulse_target_up", &[("target", "drop")], T, |v| v == 1.0);

    std::fs::write(agent.config_path(), targets(port, &[("keep", 2), ("add", 1)])).unwrap();
    agent.proc.signal("HUP");
    agent.wait_metric("sockpulse_target_up", &[("target", "add")], T, |v| v == 1.0);
    // A target added by reload has its RTTs recorded like the first ones.
    agent.wait_metric("sockpulse_ping_rtt_seconds_count", &[("target", "add")], T, |v| v > 0.0);
    assert!(
        wait_until(T, || series_of(&agent, "drop") == 0),
        "the removed target's series stay"
    );
    // The unchanged target never reconnected.
    assert_eq!(
        agent.metric("sockpulse_sessions_opened_total", &[("target", "keep")]),
        Some(2.0)
    );
    assert_eq!(
        agent.metric(
            "sockpulse_disconnects_total",
            &[("target", "keep"), ("reason", "local_close")]
        ),
        Some(0.0)
    );
    // The removed one closed cleanly: the server saw a going-away close frame.
    assert!(
        wait_until(T, || server.output().iter().any(|l| l == "CLOSED 1001")),
        "{:?}",
        server.output()
    );
    assert_eq!(agent.metric("sockpulse_config_last_reload_successful", &[]), Some(1.0));

    // A broken config is refused and the running one stays.
    std::fs::write(agent.config_path(), "[[target]]\nurl = \"ftp://nope/\"\n").unwrap();
    agent.proc.signal("HUP");
    agent.wait_metric("sockpulse_config_last_reload_successful", &[], T, |v| v == 0.0);
    assert_eq!(agent.metric("sockpulse_target_up", &[("target", "keep")]), Some(1.0));
    assert_eq!(agent.metric("sockpulse_target_up", &[("target", "add")]), Some(1.0));
    let log = agent.proc.output_text();
    assert!(
        log.contains("configuration reload failed, keeping the running one") && log.contains("target[0].url"),
        "{log}"
    );

    // A changed target (same name, new settings) restarts its sessions.
    std::fs::write(agent.config_path(), targets(port, &[("keep", 3), ("add", 1)])).unwrap();
    agent.proc.signal("HUP");
    agent.wait_metric("sockpulse_config_last_reload_successful", &[], T, |v| v == 1.0);
    agent.wait_metric("sockpulse_sessions", &[("target", "keep"), ("state", "open")], T, |v| {
        v == 3.0
    });
    agent.wait_metric("sockpulse_ping_rtt_seconds_count", &[("target", "keep")], T, |v| {
        v > 0.0
    });
    assert_eq!(
        agent.metric("sockpulse_sessions_opened_total", &[("target", "add")]),
        Some(1.0),
        "add untouched"
    );
}

#[test]
fn post_reload_needs_the_lifecycle_flag() {
    let Some((_server, port)) = python_ws(0, &[]) else {
        return;
    };
    let closed = Agent::start(&targets(port, &[("a", 1)]));
    assert_eq!(post(&closed.addr, "/-/reload"), 403);

    let agent = Agent::start_with(&targets(port, &[("a", 1)]), &["--web.enable-lifecycle"]);
    agent.wait_metric("sockpulse_target_up", &[("target", "a")], T, |v| v == 1.0);
    std::fs::write(agent.config_path(), targets(port, &[("b", 1)])).unwrap();
    assert_eq!(post(&agent.addr, "/-/reload"), 202);
    agent.wait_metric("sockpulse_target_up", &[("target", "b")], T, |v| v == 1.0);
    assert!(wait_until(T, || series_of(&agent, "a") == 0));
    let page_lists_b_only = || {
        let (_, page) = agent.get("/");
        // Rows (not timeline items) carry data-endpoint.
        page.contains("data-target=\"b\" data-endpoint") && !page.contains("data-target=\"a\" data-endpoint")
    };
    assert!(
        wait_until(T, page_lists_b_only),
        "the page follows reloads: {}",
        agent.get("/").1
    );
}

#[test]
fn reload_and_shutdown_during_a_connect_storm() {
    let Some((_server, port)) = node_ws(0) else { return };
    let agent = Agent::start(&targets(port, &[("storm", 1500), ("other", 500)]));
    // Mid-storm: drop half the sessions, add others, then shut down at once.
    std::thread::sleep(Duration::from_millis(100));
    std::fs::write(agent.config_path(), targets(port, &[("storm", 1500), ("late", 300)])).unwrap();
    agent.proc.signal("HUP");
    agent.wait_metric("sockpulse_target_up", &[("target", "late")], T, |v| v == 1.0);
    assert!(wait_until(T, || series_of(&agent, "other") == 0));
    let mut agent = agent;
    agent.proc.signal("TERM");
    let code = agent.proc.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", agent.proc.output_text());
    let log = agent.proc.output_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("configuration reloaded: 1 target(s) kept, 1 added, 1 removed"),
        "{log}"
    );
}

#[test]
fn a_reload_that_only_relabels_keeps_the_sessions_and_updates_target_info() {
    let Some((_server, port)) = python_ws(0, &[]) else {
        return;
    };
    let config = |team: &str| {
        format!(
            "{}[[target]]\nname = \"t\"\nurl = \"ws://127.0.0.1:{port}/\"\nlabels = {{ team = \"{team}\" }}\n",
            fast_defaults()
        )
    };
    let agent = Agent::start(&config("blue"));
    agent.wait_metric("sockpulse_target_up", &[("target", "t")], T, |v| v == 1.0);
    assert_eq!(
        agent.metric("sockpulse_target_info", &[("target", "t"), ("team", "blue")]),
        Some(1.0)
    );
    agent.reload_with(&config("green"));
    agent.wait_until_log("configuration reloaded: 1 target(s) kept, 0 added, 0 removed", T);
    let text = agent.scrape();
    assert_eq!(
        metric_value(&text, "sockpulse_target_info", &[("target", "t"), ("team", "green")]),
        Some(1.0)
    );
    assert!(!text.contains("team=\"blue\""), "{text}");
    assert_eq!(
        metric_value(&text, "sockpulse_sessions_opened_total", &[("target", "t")]),
        Some(1.0)
    );
}

#[test]
fn target_files_are_followed_as_they_are_created_edited_broken_fixed_and_deleted() {
    let Some((_server, port)) = python_ws(0, &[]) else {
        return;
    };
    let dir = tempfile_dir::TempDir::new("file-sd");
    let d = dir.path().display().to_string();
    let config = format!("target_files = [\"{d}/*.json\", \"{d}/*.yml\"]\n{}", fast_defaults());
    let agent = Agent::start(&config);
    let a = format!("ws://127.0.0.1:{port}/a");
    let b = format!("ws://127.0.0.1:{port}/b");
    let write_a = |team: &str| {
        let json = format!(r#"[{{"targets": ["{a}"], "labels": {{"team": "{team}", "__meta_x": "dropped"}}}}]"#);
        std::fs::write(dir.path().join("a.json"), json).unwrap();
    };
    let up = |target: &str| agent.wait_metric("sockpulse_target_up", &[("target", target)], T, |v| v == 1.0);
    let reloaded_ok = |ok: f64| agent.wait_metric("sockpulse_config_last_reload_successful", &[], T, |v| v == ok);

    // No file yet: nothing to watch, and no stand-in "self" target either.
    agent.wait_until_log("no targets in target_files yet", T);
    let first = agent.scrape();
    assert!(!first.contains("target=\"self\""), "{first}");

    // Created: its targets come, with the group's labels on the info series.
    write_a("red");
    up(&a);
    assert_eq!(
        agent.metric("sockpulse_target_info", &[("target", &a), ("team", "red")]),
        Some(1.0)
    );
    std::fs::write(dir.path().join("b.yml"), format!("- targets: ['{b}']\n")).unwrap();
    up(&b);
    // Edited (labels only): the info series follows, the sessions stay.
    write_a("blue");
    assert!(wait_until(T, || agent
        .metric("sockpulse_target_info", &[("target", &a), ("team", "blue")])
        .is_some()));
    assert_eq!(
        agent.metric("sockpulse_sessions_opened_total", &[("target", &a)]),
        Some(1.0)
    );
    // Broken: logged, the running targets kept.
    std::fs::write(dir.path().join("b.yml"), "- targets: [unclosed\n").unwrap();
    reloaded_ok(0.0);
    agent.wait_until_log("b.yml", T);
    assert_eq!(agent.metric("sockpulse_target_up", &[("target", &b)]), Some(1.0));
    // Fixed, then one file deleted: its target and series go.
    std::fs::write(dir.path().join("b.yml"), format!("- targets: ['{b}']\n")).unwrap();
    reloaded_ok(1.0);
    std::fs::remove_file(dir.path().join("a.json")).unwrap();
    assert!(wait_until(T, || !agent.scrape().contains(&format!("target=\"{a}\""))));
    assert_eq!(agent.metric("sockpulse_target_up", &[("target", &b)]), Some(1.0));
    assert_eq!(
        agent.metric("sockpulse_sessions_opened_total", &[("target", &b)]),
        Some(1.0)
    );
    assert!(!agent.scrape().contains("__meta_x"));
}
