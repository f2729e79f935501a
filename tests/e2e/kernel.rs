//! The host TCP table against real kernel states this test makes itself,
//! cross-checked with `ss` for the same sockets.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(15);

/// Sockets on one listening port in known states. Dropping it closes them.
struct States {
    port: u16,
    _keep: Vec<TcpStream>,
    _listener: TcpListener,
}

/// ESTABLISHED pairs, one CLOSE_WAIT (peer closed, we never do), one
/// TIME_WAIT (we closed first), two connections waiting in the accept queue.
fn make_states() -> States {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut keep = Vec::new();
    // ESTABLISHED on both ends.
    let a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (sa, _) = listener.accept().unwrap();
    keep.extend([a, sa]);
    // CLOSE_WAIT: the client closes, the server side never does.
    let b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (sb, _) = listener.accept().unwrap();
    drop(b);
    keep.push(sb);
    // TIME_WAIT: the client closes first, then the server.
    // (No unread data anywhere: closing with unread data sends RST, not FIN.)
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (sc, _) = listener.accept().unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(50));
    drop(sc);
    // Two connections the application never accepts.
    for _ in 0..2 {
        keep.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    std::thread::sleep(Duration::from_millis(100));
    States {
        port,
        _keep: keep,
        _listener: listener,
    }
}

/// State counts `ss` reports for sockets whose local or remote port is `port`.
fn ss_counts(port: u16) -> BTreeMap<String, u64> {
    let filter = format!("( sport = :{port} or dport = :{port} )");
    let out = Command::new("ss")
        .args(["-tanH", "state", "all", &filter])
        .output()
        .expect("run ss");
    assert!(
        out.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(state) = line.split_whitespace().next() else {
            continue;
        };
        let ours = match state {
            "ESTAB" => "established",
            "LISTEN" => "listen",
            "CLOSE-WAIT" => "close_wait",
            "TIME-WAIT" => "time_wait",
            "FIN-WAIT-1" => "fin_wait1",
            "FIN-WAIT-2" => "fin_wait2",
            "SYN-SENT" => "syn_sent",
            "SYN-RECV" => "syn_recv",
            "LAST-ACK" => "last_ack",
            "CLOSING" => "closing",
            other => panic!("unexpected ss state {other}"),
        };
        *counts.entry(ours.to_string()).or_default() += 1;
    }
    counts
}

#[test]
fn sockets_report_matches_ss_for_states_the_test_made() {
    if !require("ss (iproute2)", which("ss").is_some()) {
        return;
    }
    let s = make_states();
    let port = s.port.to_string();
    for method in ["netlink", "procfs", "filtered"] {
        // Compared only while the table holds still: another test's socket
        // on the same port number (another address, a closing connection)
        // may come or go between the two reads.
        let (v, ours, theirs) = (0..10)
            .find_map(|_| {
                let before = ss_counts(s.port);
                let out = sockpulse(&["sockets", "--json", "--method", method, "--watch-port", &port]);
                assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
                let ours: BTreeMap<String, u64> =
                    serde_json::from_value(v["ports"][&port]["by_state"].clone()).expect("by_state");
                if ss_counts(s.port) == before {
                    return Some((v, ours, before));
                }
                std::thread::sleep(Duration::from_millis(200));
                None
            })
            .expect("the port's sockets kept changing for 10 reads");
        assert_eq!(ours, theirs, "sockpulse ({method}) vs ss for port {port}");
        // And the states are the ones the test made.
        assert_eq!(ours.get("listen"), Some(&1));
        assert_eq!(ours.get("close_wait"), Some(&1));
        assert_eq!(ours.get("time_wait"), Some(&1));
        assert!(ours.get("established").copied().unwrap_or(0) >= 4);
        assert_eq!(v["ports"][&port]["listen_queue"], 2, "two connections never accepted");
        assert!(v["total"].as_u64().unwrap() >= 7);
        // Only netlink knows the backlog (std listens with 128).
        let ratio = &v["ports"][&port]["listen_queue_ratio"];
        match method {
            "netlink" | "filtered" => assert_eq!(ratio.as_f64(), Some(2.0 / 128.0)),
            _ => assert!(ratio.is_null(), "{ratio}"),
        }
    }
}

#[test]
fn sockets_flags_a_close_wait_that_outlives_the_sampling_window() {
    let s = make_states();
    let port = s.port.to_string();
    let out = sockpulse(&["sockets", "--watch-port", &port, "--close-wait-age", "300ms"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Suspicious sockets:") && text.contains("close_wait: CLOSE_WAIT for"),
        "{text}"
    );
    let bad_pid = sockpulse(&["sockets", "--pid", "4294967295"]);
    assert_eq!(bad_pid.status.code(), Some(2));
}

#[test]
fn the_agent_exports_host_states_and_ages_close_wait() {
    let s = make_states();
    let port = s.port.to_string();
    let agent = Agent::start(&format!(
        "[kernel]\nscan_interval = \"200ms\"\nwatch_ports = [{port}]\nclose_wait_age_alert = \"1s\"\n"
    ));
    let cw = [("state", "close_wait"), ("port", port.as_str())];
    agent.wait_metric("sockpulse_tcp_sockets", &cw, T, |v| v == 1.0);
    agent.wait_metric("sockpulse_tcp_listen_queue", &[("port", &port)], T, |v| v == 2.0);
    let age = agent.wait_metric(
        "sockpulse_tcp_close_wait_oldest_age_seconds",
        &[("port", &port)],
        T,
        |v| v >= 1.0,
    );
    assert!(age < 10.0, "{age}");
    agent.wait_metric("sockpulse_tcp_close_wait_over_age", &[("port", &port)], T, |v| v == 1.0);
    let text = agent.scrape();
    // auto prefers filtered netlink reads in our own namespace
    let scans = metric_value(
        &text,
        "sockpulse_kernel_scan_duration_seconds_count",
        &[("method", "filtered")],
    );
    assert!(scans.unwrap_or(0.0) >= 2.0, "{text}");
    assert_eq!(
        metric_value(&text, "sockpulse_tcp_listen_queue_ratio", &[("port", &port)]),
        Some(2.0 / 128.0)
    );
    assert_eq!(
        metric_value(&text, "sockpulse_kernel_scan_errors_total", &[]),
        Some(0.0)
    );
    assert!(metric_value(&text, "sockpulse_tcp_time_wait_port_ratio", &[]).is_some());
    // The leak ends: the gauge follows.
    drop(s);
    agent.wait_metric("sockpulse_tcp_sockets", &cw, T, |v| v == 0.0);
    agent.wait_metric("sockpulse_tcp_close_wait_over_age", &[("port", &port)], T, |v| v == 0.0);
}

#[test]
fn the_agent_sees_its_own_sockets_in_the_kernel_table_without_false_mismatches() {
    let Some((mut server, port)) = python_ws(0, &[]) else {
        return;
    };
    let agent = Agent::start(&format!(
        "{}\n[kernel]\nscan_interval = \"100ms\"\n[[target]]\nname = \"py\"\nurl = \"ws://127.0.0.1:{port}/\"\nconnections = 3\n",
        fast_defaults()
    ));
    let est = [("target", "py"), ("state", "established")];
    agent.wait_metric("sockpulse_session_kernel_state", &est, T, |v| v == 3.0);
    // Churn: the server dies and comes back; sessions close and reconnect
    // while scans run. None of that is a disagreement with the kernel.
    server.kill();
    agent.wait_metric("sockpulse_session_kernel_state", &est, T, |v| v == 0.0);
    let Some((_again, _)) = python_ws(port, &[]) else {
        return;
    };
    agent.wait_metric("sockpulse_session_kernel_state", &est, T, |v| v == 3.0);
    std::thread::sleep(Duration::from_millis(300));
    let text = agent.scrape();
    for kind in ["close_wait", "gone", "other_state"] {
        let v = metric_value(
            &text,
            "sockpulse_kernel_mismatches_total",
            &[("target", "py"), ("kind", kind)],
        );
        assert_eq!(v, Some(0.0), "false {kind} mismatch:\n{}", agent.proc.output_text());
    }
}

/// Host-wide counts by state from node_exporter's tcpstat text.
fn node_exporter_states(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("node_tcp_connection_states{")) {
        let state = line
            .split("state=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("");
        let v: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        if v > 0.0 {
            m.insert(state.to_string(), v as u64);
        }
    }
    m
}

#[test]
fn in_a_quiet_namespace_counts_equal_ss_and_node_exporter() {
    let exporter = which("prometheus-node-exporter");
    if !require("prometheus-node-exporter", exporter.is_some()) {
        return;
    }
    let Some(ns) = netns::NetNs::create() else { return };
    let Some(py) = python() else { return };
    let port = 7700u16;
    let mut helper = ns.command(py.to_str().unwrap());
    // 50 ESTABLISHED pairs elsewhere: what a filtered scan only counts.
    helper
        .arg(repo().join("tests/peers/tcp_states.py"))
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg("50");
    let helper = Proc::spawn("tcp_states", &mut helper);
    helper
        .wait_line("READY", T)
        .unwrap_or_else(|| panic!("helper: {}", helper.output_text()));
    let mut ne = ns.command(exporter.unwrap().to_str().unwrap());
    ne.args([
        &format!("--web.listen-address={}:9100", ns.peer_ip),
        "--collector.disable-defaults",
        "--collector.tcpstat",
    ]);
    let _ne = Proc::spawn("node_exporter", &mut ne);
    let addr = format!("{}:9100", ns.peer_ip);
    assert!(
        wait_until(T, || TcpStream::connect(&addr).is_ok()),
        "node_exporter did not start"
    );
    // From outside, --pid reads the namespace of a process inside it.
    let out = sockpulse(&[
        "sockets",
        "--json",
        "--pid",
        &helper.pid().to_string(),
        "--watch-port",
        &port.to_string(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["ports"][&port.to_string()]["by_state"]["syn_sent"], 2, "{v}");
    assert_eq!(v["ports"][&port.to_string()]["by_state"]["close_wait"], 1, "{v}");

    for method in ["netlink", "procfs", "filtered"] {
        let out = ns
            .command(sockpulse_bin())
            .args([
                "sockets",
                "--json",
                "--method",
                method,
                "--watch-port",
                &port.to_string(),
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        // A quiet namespace: the counter calibrates, the read is filtered.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("listing every socket"), "{method}: {stderr}");
        let ours: BTreeMap<String, u64> = serde_json::from_value(v["by_state"].clone()).unwrap();
        // node_exporter's own sockets (its listener, our scrape) live on
        // port 9100: compare the test's port with ss, the rest with it.
        let per_port: BTreeMap<String, u64> =
            serde_json::from_value(v["ports"][&port.to_string()]["by_state"].clone()).unwrap();
        let ss = ns
            .command("ss")
            .args([
                "-tanH",
                "state",
                "all",
                &format!("( sport = :{port} or dport = :{port} )"),
            ])
            .output()
            .unwrap();
        let ss_n = String::from_utf8_lossy(&ss.stdout).lines().count() as u64;
        assert_eq!(per_port.values().sum::<u64>(), ss_n, "{method}: {per_port:?}");
        assert_eq!(
            per_port.get("syn_sent"),
            Some(&2),
            "{method}: SYNs dropped by the full accept queue: {per_port:?}"
        );
        assert_eq!(per_port.get("close_wait"), Some(&1));
        assert_eq!(per_port.get("time_wait"), Some(&1));
        assert_eq!(per_port.get("listen"), Some(&1));
        assert_eq!(v["ports"][&port.to_string()]["listen_queue"], 2, "backlog 1 admits 2");
        if method != "procfs" {
            let ratio = v["ports"][&port.to_string()]["listen_queue_ratio"].as_f64().unwrap();
            assert!(ratio >= 1.0, "a full accept queue: {ratio}");
            assert!(v["suspicious"].to_string().contains("the application is not accepting"));
        }
        // Host-wide against node_exporter: its scrape connection is the
        // only socket that differs between the two readings.
        let (_, text) = http_get(&addr, "/metrics");
        let theirs = node_exporter_states(&text);
        let mut theirs = theirs;
        // Not states: node_exporter files its queue sums under the same name.
        theirs.remove("rx_queued_bytes");
        theirs.remove("tx_queued_bytes");
        // The scrape being answered is one more ESTABLISHED socket on its side.
        let est = theirs.get("established").copied().unwrap_or(0);
        assert_eq!(
            est,
            ours.get("established").copied().unwrap_or(0) + 1,
            "{method}: {ours:?} vs {theirs:?}"
        );
        theirs.insert("established".into(), est - 1);
        assert_eq!(ours, theirs, "{method}: sockpulse vs node_exporter");
        assert!(theirs["established"] >= 100, "the bulk is counted: {theirs:?}");
    }
}
