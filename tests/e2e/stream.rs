//! `/api/v1/stream` with Python `websockets` clients: a snapshot, then
//! deltas and events pushed as they happen; a client that stops reading is
//! dropped and the agent's memory stays put; hundreds of idle clients cost
//! the probes nothing; cross-origin upgrades and foreign subprotocols are
//! refused.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(30);

/// `tests/peers/stream_client.py` against `agent`, with `args` after the URL.
fn stream_client(agent: &Agent, args: &[&str]) -> Option<Proc> {
    stream_client_at(&format!("ws://{}/api/v1/stream", agent.addr), args)
}

/// The same against the stream at `url`.
pub(crate) fn stream_client_at(url: &str, args: &[&str]) -> Option<Proc> {
    let py = peers_dir().join("venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import websockets"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !require("python websockets", ok) {
        return None;
    }
    let mut cmd = Command::new(py);
    cmd.arg(repo().join("tests/peers/stream_client.py")).arg(url).args(args);
    Some(Proc::spawn("stream client", &mut cmd))
}

/// The messages a `read` client printed so far, parsed.
pub(crate) fn messages(client: &Proc) -> Vec<serde_json::Value> {
    client
        .output()
        .iter()
        .filter_map(|l| l.strip_prefix("MSG "))
        .filter_map(|m| serde_json::from_str(m).ok())
        .collect()
}

#[test]
fn a_snapshot_then_row_deltas_and_events_are_pushed_as_they_happen() {
    let Some((mut py, port)) = python_ws(0, &[]) else {
        return;
    };
    let agent = Agent::start(&one_target("py", &format!("ws://127.0.0.1:{port}/"), ""));
    agent.wait_metric("sockpulse_target_up", &[("target", "py")], T, |v| v == 1.0);
    let Some(client) = stream_client(&agent, &["--subprotocol", "sockpulse.v1"]) else {
        return;
    };
    assert!(
        client.wait_line("OPEN sockpulse.v1", T).is_some(),
        "{}",
        client.output_text()
    );
    assert!(wait_until(T, || !messages(&client).is_empty()));
    let first = &messages(&client)[0];
    assert_eq!(first["type"], "snapshot", "{first}");
    assert_eq!(first["targets"][0]["target"], "py", "{first}");
    assert_eq!(first["targets"][0]["healthy"], true, "{first}");
    let opened = first["events"]
        .as_array()
        .map(|e| e.iter().any(|e| e["kind"] == "opened"));
    assert_eq!(opened, Some(true), "{first}");
    assert_eq!(agent.metric("sockpulse_stream_clients", &[]), Some(1.0));

    // The server dies: the stream says so within two seconds, unasked.
    let killed = std::time::Instant::now();
    py.kill();
    let said_down = |m: &serde_json::Value| {
        m["type"] == "targets"
            && m["targets"]
                .as_array()
                .is_some_and(|t| t.iter().any(|r| r["target"] == "py" && r["healthy"] == false))
    };
    assert!(
        wait_until(T, || messages(&client).iter().any(said_down)),
        "{}",
        client.output_text()
    );
    let event = messages(&client)
        .into_iter()
        .filter(|m| m["type"] == "events")
        .flat_map(|m| m["events"].as_array().cloned().unwrap_or_default())
        .find(|e| e["kind"] == "disconnected" && e["target"] == "py");
    assert!(event.is_some(), "{}", client.output_text());
    assert!(killed.elapsed() < Duration::from_secs(3), "took {:?}", killed.elapsed());
    // No event twice: the snapshot's and the pushed ones are consecutive.
    let mut seqs: Vec<u64> = messages(&client)
        .iter()
        .flat_map(|m| m["events"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    let n = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "an event came twice: {seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[test]
fn cross_origin_upgrades_and_foreign_subprotocols_are_refused() {
    let agent = Agent::start(fast_defaults());
    let Some(evil) = stream_client(&agent, &["--origin", "https://evil.example"]) else {
        return;
    };
    assert!(evil.wait_line("REFUSED 403", T).is_some(), "{}", evil.output_text());
    let Some(other) = stream_client(&agent, &["--subprotocol", "graphql-ws"]) else {
        return;
    };
    assert!(other.wait_line("REFUSED 400", T).is_some(), "{}", other.output_text());
    let own = format!("http://{}", agent.addr);
    let Some(same) = stream_client(&agent, &["--origin", &own]) else {
        return;
    };
    assert!(same.wait_line("OPEN None", T).is_some(), "{}", same.output_text());
    assert!(same.wait_line("MSG {\"events\"", T).is_some() || !messages(&same).is_empty());
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_memory_stays_bounded() {
    let Some((_py, port)) = python_ws(0, &[]) else {
        return;
    };
    // 300 targets whose rows change every second: ~0.2 MB a second to push.
    let mut config = "[defaults]\nping_interval = \"200ms\"\npong_timeout = \"150ms\"\n\
                      [kernel]\nscan_interval = \"off\"\n"
        .to_string();
    for i in 0..300 {
        config += &format!("[[target]]\nname = \"t{i}\"\nurl = \"ws://127.0.0.1:{port}/t{i}\"\n");
    }
    let agent = Agent::start(&config);
    agent.wait_metric("sockpulse_target_up", &[("target", "t299")], T, |v| v == 1.0);
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = proc_status_kib(agent.proc.pid(), "RssAnon:");
    let peak_before = proc_status_kib(agent.proc.pid(), "VmHWM:");
    assert!(rss_before > 0);
    let Some(reader) = stream_client(&agent, &[]) else {
        return;
    };
    let Some(staller) = stream_client(&agent, &["stall"]) else {
        return;
    };
    assert!(staller.wait_line("OPEN", T).is_some(), "{}", staller.output_text());
    agent.wait_metric(
        "sockpulse_http_connections_dropped_total",
        &[("reason", "stream_too_slow")],
        T,
        |v| v == 1.0,
    );
    std::thread::sleep(Duration::from_secs(3));
    let rss_after = proc_status_kib(agent.proc.pid(), "RssAnon:");
    let peak_after = proc_status_kib(agent.proc.pid(), "VmHWM:");
    eprintln!(
        "RssAnon {rss_before} KiB before the stalled client, {rss_after} KiB after it was dropped; \
         peak RSS {peak_before} -> {peak_after} KiB"
    );
    // Its queue is bounded at 256 KiB beyond the message being written.
    assert!(rss_after < rss_before + 8 * 1024, "{rss_before} -> {rss_after} KiB");
    assert!(
        peak_after < peak_before + 12 * 1024,
        "peak {peak_before} -> {peak_after} KiB"
    );
    // The reading client kept its stream all along.
    assert_eq!(agent.metric("sockpulse_stream_clients", &[]), Some(1.0));
    let pushed = messages(&reader).iter().filter(|m| m["type"] == "targets").count();
    assert!(pushed >= 3, "{pushed} deltas");
}

#[test]
fn hundreds_of_idle_clients_cost_the_probes_nothing_and_the_limit_holds() {
    let Some((_py, port)) = python_ws(0, &[]) else {
        return;
    };
    let agent = crate::web::agent_pinging("[web]\nmax_stream_clients = 500\n", port);
    std::thread::sleep(Duration::from_secs(1));
    let window = Duration::from_secs(8);
    let baseline = crate::web::p99_over(&agent, "py", window);
    let rss_before = proc_status_kib(agent.proc.pid(), "RssAnon:");
    let Some(idle) = stream_client(&agent, &["idle", "500"]) else {
        return;
    };
    assert!(idle.wait_line("OPEN 500", T).is_some(), "{}", idle.output_text());
    std::thread::sleep(Duration::from_secs(1));
    let per_client = (proc_status_kib(agent.proc.pid(), "RssAnon:") as f64 - rss_before as f64) / 500.0;
    eprintln!("500 idle stream clients: {per_client:.1} KiB each (RssAnon)");
    assert!(per_client < 32.0, "{per_client:.1} KiB per idle stream client");
    assert_eq!(agent.metric("sockpulse_stream_clients", &[]), Some(500.0));
    let Some(one_more) = stream_client(&agent, &[]) else {
        return;
    };
    assert!(
        one_more.wait_line("REFUSED 503", T).is_some(),
        "{}",
        one_more.output_text()
    );
    let loaded = crate::web::p99_over(&agent, "py", window);
    assert!(!idle.output_text().contains("LOST"), "{}", idle.output_text());
    crate::web::assert_rtt_held("500 idle stream clients", baseline, loaded, (0.0, 60.0));
}

#[test]
fn oversized_frames_and_ping_floods_never_disturb_the_endpoint() {
    let agent = Agent::start(fast_defaults());
    let Some(big) = stream_client(&agent, &["big"]) else {
        return;
    };
    let closed = big
        .wait_line("CLOSED ", T)
        .unwrap_or_else(|| panic!("{}", big.output_text()));
    assert_ne!(closed, "CLOSED 1000", "a 64 KiB message is not accepted");
    let Some(flood) = stream_client(&agent, &["flood"]) else {
        return;
    };
    assert!(flood.wait_line("OPEN", T).is_some(), "{}", flood.output_text());
    // While it floods, scrapes and the page are answered.
    for _ in 0..20 {
        let started = std::time::Instant::now();
        assert_eq!(agent.get("/metrics").0, 200);
        assert_eq!(agent.get("/").0, 200);
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let flooded = flood
        .wait_line("FLOODED ", T)
        .unwrap_or_else(|| panic!("{}", flood.output_text()));
    let pings: u64 = flooded.trim_start_matches("FLOODED ").parse().unwrap();
    assert!(pings > 1000, "{pings} pings");
    agent.wait_metric("sockpulse_target_up", &[("target", "self")], T, |v| v == 1.0);
}
