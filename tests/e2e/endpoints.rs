//! Every endpoint behind a name: `endpoints = "all"` against Python
//! websockets servers on several loopback addresses, the name given by a
//! hosts file in a private mount namespace and edited while the agent runs.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(20);

fn server_on(host: &str, port: u16) -> Option<Proc> {
    python_ws(0, &["--host", host, "--port", &port.to_string()]).map(|(p, _)| p)
}

fn hosts(path: &Path, name: &str, addrs: &[&str]) {
    let mut text = String::from("127.0.0.1 localhost\n");
    for a in addrs {
        text.push_str(&format!("{a} {name}\n"));
    }
    // In place: the bind mount follows the inode, not the name.
    std::fs::write(path, text).expect("write hosts");
}

fn can_unshare() -> bool {
    let ok = std::process::Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .is_ok_and(|s| s.success());
    require("unshare -m (root)", ok)
}

#[test]
fn endpoints_all_holds_sessions_to_every_address_and_follows_the_name() {
    if !can_unshare() {
        return;
    }
    let port = free_port();
    let mut servers = Vec::new();
    for host in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        let Some(s) = server_on(host, port) else {
            return;
        };
        servers.push(s);
    }
    let dir = tempfile_dir::TempDir::new("endpoints");
    let hosts_file = dir.path().join("hosts");
    hosts(&hosts_file, "svc.test", &["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let config = format!(
        "{}[[target]]\nname = \"svc\"\nurl = \"ws://svc.test:{port}/\"\nendpoints = \"all\"\n\
         resolve_interval = \"500ms\"\nconnections = 2\n\
         [[target]]\nname = \"capped\"\nurl = \"ws://svc.test:{port}/\"\nendpoints = \"all\"\n\
         resolve_interval = \"500ms\"\nmax_endpoints = 2\n",
        fast_defaults()
    );
    let agent = Agent::start_with_hosts(&config, &hosts_file);
    let ep = |host: &str| format!("{host}:{port}");
    agent.wait_metric("sockpulse_endpoints", &[("target", "svc")], T, |v| v == 3.0);
    // Beyond max_endpoints: counted and logged once, not given sessions.
    agent.wait_metric("sockpulse_endpoints", &[("target", "capped")], T, |v| v == 2.0);
    agent.wait_metric("sockpulse_endpoints_dropped", &[("target", "capped")], T, |v| v == 1.0);
    agent.wait_metric(
        "sockpulse_sessions",
        &[("target", "capped"), ("state", "open")],
        T,
        |v| v == 2.0,
    );
    agent.wait_metric("sockpulse_sessions", &[("target", "svc"), ("state", "open")], T, |v| {
        v == 6.0
    });
    for host in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let e = ep(host);
        agent.wait_metric(
            "sockpulse_endpoint_up",
            &[("target", "svc"), ("endpoint", &e)],
            T,
            |v| v == 1.0,
        );
        agent.wait_metric(
            "sockpulse_endpoint_ping_rtt_seconds_count",
            &[("target", "svc"), ("endpoint", &e)],
            T,
            |v| v >= 2.0,
        );
    }

    // One endpoint's server stops: only its series go down.
    servers[1].kill();
    let down = ep("127.0.0.3");
    agent.wait_metric(
        "sockpulse_endpoint_up",
        &[("target", "svc"), ("endpoint", &down)],
        T,
        |v| v == 0.0,
    );
    agent.wait_metric(
        "sockpulse_endpoint_failures_total",
        &[("target", "svc"), ("endpoint", &down), ("reason", "refused")],
        T,
        |v| v >= 1.0,
    );
    let text = agent.scrape();
    assert_eq!(
        metric_value(&text, "sockpulse_target_up", &[("target", "svc")]),
        Some(1.0)
    );
    for host in ["127.0.0.2", "127.0.0.4"] {
        let e = ep(host);
        assert_eq!(
            metric_value(&text, "sockpulse_endpoint_up", &[("target", "svc"), ("endpoint", &e)]),
            Some(1.0)
        );
        assert!(
            !text.contains(&format!("sockpulse_endpoint_failures_total{{endpoint=\"{e}\"")),
            "{e} must be untouched:\n{text}"
        );
    }

    // The name changes: .3 leaves, .5 joins; the others keep their sessions.
    let opened_before = agent
        .metric("sockpulse_sessions_opened_total", &[("target", "svc")])
        .unwrap();
    hosts(&hosts_file, "svc.test", &["127.0.0.2", "127.0.0.4", "127.0.0.5"]);
    let added = ep("127.0.0.5");
    agent.wait_metric(
        "sockpulse_endpoint_up",
        &[("target", "svc"), ("endpoint", &added)],
        T,
        |v| v == 1.0,
    );
    agent.wait_until_log(&format!("removed {down}"), T);
    assert!(wait_until(T, || !agent
        .scrape()
        .contains(&format!("endpoint=\"{down}\""))));
    agent.wait_metric("sockpulse_sessions", &[("target", "svc"), ("state", "open")], T, |v| {
        v == 6.0
    });
    let opened_after = agent
        .metric("sockpulse_sessions_opened_total", &[("target", "svc")])
        .unwrap();
    assert_eq!(
        opened_after - opened_before,
        2.0,
        "only the new endpoint's two sessions opened"
    );
    assert_eq!(agent.metric("sockpulse_endpoints", &[("target", "svc")]), Some(3.0));

    let warned = agent
        .proc
        .output()
        .iter()
        .filter(|l| l.contains("target=capped resolves to 1 more"))
        .count();
    assert_eq!(warned, 1, "the overflow is logged once, not at every lookup");
    // status --agent prints a row per endpoint.
    let out = sockpulse(&["status", "--agent", &format!("http://{}", agent.addr)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for host in ["127.0.0.2", "127.0.0.4", "127.0.0.5"] {
        assert!(stdout.contains(&format!("svc [{}]", ep(host))), "{stdout}");
    }
}

#[test]
fn status_reports_each_endpoint_and_tries_every_address_of_a_name() {
    if !can_unshare() {
        return;
    }
    let port = free_port();
    let Some(_server) = server_on("127.0.0.2", port) else {
        return;
    };
    let dir = tempfile_dir::TempDir::new("endpoints-status");
    let hosts_file = dir.path().join("hosts");
    // ::1 and 127.0.0.6 refuse; 127.0.0.2 answers.
    std::fs::write(
        &hosts_file,
        "127.0.0.1 localhost\n::1 multi.test\n127.0.0.2 multi.test\n127.0.0.2 each.test\n127.0.0.6 each.test\n",
    )
    .unwrap();
    let config = dir.path().join("sockpulse.toml");
    std::fs::write(
        &config,
        format!(
            "[[target]]\nname = \"each\"\nurl = \"ws://each.test:{port}/\"\nendpoints = \"all\"\n\
             [[target]]\nname = \"multi\"\nurl = \"ws://multi.test:{port}/\"\n"
        ),
    )
    .unwrap();
    let out = with_hosts_file(&hosts_file, sockpulse_bin())
        .args(["status", "--config"])
        .arg(&config)
        .args(["--json", "--pings", "2"])
        .env("RUST_LOG", "debug")
        .output()
        .expect("run status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("JSON");
    let row = |target: &str, endpoint: Option<String>| {
        rows.iter()
            .find(|r| r["target"] == target && r["endpoint"].as_str().map(String::from) == endpoint)
            .unwrap_or_else(|| panic!("no row {target} {endpoint:?}: {stdout}"))
    };
    assert_eq!(row("each", Some(format!("127.0.0.2:{port}")))["healthy"], true);
    let refused = row("each", Some(format!("127.0.0.6:{port}")));
    assert_eq!(
        (refused["healthy"].clone(), refused["reason"].clone()),
        (false.into(), "refused".into())
    );
    // Without endpoints = "all": the refusing address, then the next.
    let multi = row("multi", None);
    assert_eq!(multi["healthy"], true, "{multi}");
    let log = String::from_utf8_lossy(&out.stderr);
    let tried = |addr: &str| log.find(&format!("target=multi session=0 connecting to {addr}"));
    let (v6, v4) = (tried(&format!("[::1]:{port}")), tried(&format!("127.0.0.2:{port}")));
    assert!(
        v6.is_some() && v4.is_some() && v6 < v4,
        "::1 refused first, then 127.0.0.2:\n{log}"
    );
    assert_eq!(rows.len(), 3, "{stdout}");
}

#[test]
fn a_mesh_of_three_agents_sees_every_path_and_a_dropped_pair_as_exactly_that() {
    let Some(lan) = netns::Lan::create(3) else {
        return;
    };
    const PORT: u16 = 9747;
    let mut hosts = String::from("127.0.0.1 localhost\n");
    for node in &lan.nodes {
        hosts.push_str(&format!("{} mesh.test\n", node.ip));
    }
    for j in 0..3 {
        lan.set_etc_file(j, "hosts", &hosts);
    }
    // Every agent serves /ws and targets all of them through one name.
    let config = format!(
        "[defaults]\nping_interval = \"1s\"\npong_timeout = \"600ms\"\nconnect_timeout = \"1s\"\n\
         handshake_timeout = \"1s\"\nbackoff = {{ min = \"200ms\", max = \"1s\" }}\n\
         [[target]]\nname = \"mesh\"\nurl = \"ws://mesh.test:{PORT}/ws\"\nendpoints = \"all\"\nresolve_interval = \"1s\"\n"
    );
    let agents: Vec<Agent> = (0..3).map(|j| Agent::start_on_lan(&config, &lan, j, PORT)).collect();
    let ep = |j: usize| format!("{}:{PORT}", lan.nodes[j].ip);
    for agent in &agents {
        agent.wait_metric("sockpulse_endpoints", &[("target", "mesh")], T, |v| v == 3.0);
        for j in 0..3 {
            agent.wait_metric(
                "sockpulse_endpoint_up",
                &[("target", "mesh"), ("endpoint", &ep(j))],
                T,
                |v| v == 1.0,
            );
        }
    }
    // Node 0 drops what node 1 sends: the 0-1 path is dead both ways.
    lan.drop_from(0, 1);
    let path_dead = |agent: &Agent, j: usize| {
        agent
            .metric(
                "sockpulse_endpoint_diagnoses_total",
                &[("target", "mesh"), ("endpoint", &ep(j)), ("diagnosis", "path_dead")],
            )
            .unwrap_or(0.0)
    };
    assert!(
        wait_until(T, || path_dead(&agents[0], 1) >= 1.0),
        "0 -> 1 not path_dead:\n{}",
        agents[0].scrape()
    );
    assert!(
        wait_until(T, || path_dead(&agents[1], 0) >= 1.0),
        "1 -> 0 not path_dead:\n{}",
        agents[1].scrape()
    );
    // Every other path stays up and undiagnosed.
    for (a, j) in [(0, 0), (0, 2), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)] {
        assert_eq!(path_dead(&agents[a], j), 0.0, "{a} -> {j}");
        assert_eq!(
            agents[a].metric("sockpulse_endpoint_up", &[("target", "mesh"), ("endpoint", &ep(j))]),
            Some(1.0),
            "{a} -> {j}"
        );
    }
}

/// dnsmasq inside `ns` on 127.0.0.1:53, answering `_ws._tcp.svc.test` with
/// one SRV record per `(name, address, port)`.
fn dnsmasq_in(ns: &netns::NetNs, records: &[(&str, &str, u16)]) -> Proc {
    let mut cmd = ns.command("dnsmasq");
    cmd.args([
        "-k",
        "--log-facility=-",
        "--pid-file=",
        "--no-resolv",
        "--no-hosts",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--port=53",
    ]);
    for (name, addr, port) in records {
        cmd.arg(format!("--srv-host=_ws._tcp.svc.test,{name}.svc.test,{port}"));
        cmd.arg(format!("--host-record={name}.svc.test,{addr}"));
    }
    let p = Proc::spawn("dnsmasq", &mut cmd);
    assert!(
        p.wait_line("started", T).is_some(),
        "dnsmasq did not start: {}",
        p.output_text()
    );
    p
}

#[test]
fn srv_records_give_the_endpoints_and_their_ports_and_are_followed() {
    if !require("dnsmasq", which("dnsmasq").is_some()) {
        return;
    }
    let Some(ns) = netns::NetNs::create() else {
        return;
    };
    let Some(py) = python() else {
        return;
    };
    ns.set_resolv_conf("nameserver 127.0.0.1\n");
    let mut servers = Vec::new();
    for (host, port) in [("127.0.0.2", 18081), ("127.0.0.3", 18082), ("127.0.0.4", 18083)] {
        let mut cmd = ns.command(py.to_str().expect("utf-8 path"));
        cmd.arg(repo().join("tests/peers/ws_server.py"))
            .args(["--host", host, "--port", &port.to_string()]);
        let p = Proc::spawn("python websockets in netns", &mut cmd);
        assert!(p.wait_line("LISTENING", T).is_some(), "{}", p.output_text());
        servers.push(p);
    }
    let mut dns = dnsmasq_in(&ns, &[("a", "127.0.0.2", 18081), ("b", "127.0.0.3", 18082)]);
    let config = format!(
        "{}[[target]]\nname = \"svc\"\nurl = \"ws://svc.test/\"\nsrv = \"_ws._tcp.svc.test\"\nresolve_interval = \"500ms\"\n",
        fast_defaults()
    );
    let agent = Agent::start_in_netns(&config, &ns, &[]);
    agent.wait_metric("sockpulse_endpoints", &[("target", "svc")], T, |v| v == 2.0);
    for ep in ["127.0.0.2:18081", "127.0.0.3:18082"] {
        agent.wait_metric(
            "sockpulse_endpoint_up",
            &[("target", "svc"), ("endpoint", ep)],
            T,
            |v| v == 1.0,
        );
    }
    // b leaves and c joins the SRV set.
    dns.kill();
    let _dns = dnsmasq_in(&ns, &[("a", "127.0.0.2", 18081), ("c", "127.0.0.4", 18083)]);
    agent.wait_metric(
        "sockpulse_endpoint_up",
        &[("target", "svc"), ("endpoint", "127.0.0.4:18083")],
        T,
        |v| v == 1.0,
    );
    assert!(wait_until(T, || !agent.scrape().contains("127.0.0.3:18082")));
    assert_eq!(agent.metric("sockpulse_endpoints", &[("target", "svc")]), Some(2.0));
    assert_eq!(
        agent.metric(
            "sockpulse_endpoint_up",
            &[("target", "svc"), ("endpoint", "127.0.0.2:18081")]
        ),
        Some(1.0)
    );
}
