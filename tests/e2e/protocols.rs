//! Application protocols against their real servers: Node `socket.io` 4
//! and 2, Python `python-socketio`, Node `graphql-ws`, Python
//! `strawberry-graphql`; custom probes and `message_timeout` against Node
//! `ws` and Python `websockets`. Each server heartbeats every 2 s + 1 s.

use std::time::{Duration, Instant, SystemTime};

use crate::support::mosquitto::Mosquitto;
use crate::support::*;

const T: Duration = Duration::from_secs(20);
/// Three server heartbeat periods (2 s) and some.
const HOLD: Duration = Duration::from_secs(7);

fn socketio_node(v2: bool, port: u16) -> Option<(Proc, u16)> {
    let port = port.to_string();
    if v2 {
        node_peer(
            "node socket.io 2",
            "socketio_server.js",
            "socket.io-v2",
            &[&port, "--v2"],
        )
    } else {
        node_peer("node socket.io 4", "socketio_server.js", "socket.io", &[&port])
    }
}

fn graphql_node(port: u16) -> Option<(Proc, u16)> {
    node_peer(
        "node graphql-ws",
        "graphql_server.js",
        "graphql-ws",
        &[&port.to_string()],
    )
}

/// Every series of `name` for `target` summed (any other labels).
fn total(agent: &Agent, name: &str, target: &str) -> f64 {
    let text = agent.scrape();
    let needle = format!("target=\"{target}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&needle))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Opens, holds through several heartbeats without a single disconnect or
/// failure, with the app handshake timed and RTTs of `probe` recorded.
fn assert_steady(agent: &Agent, target: &str, probe: &str) {
    agent.wait_metric("sockpulse_target_up", &[("target", target)], T, |v| v == 1.0);
    std::thread::sleep(HOLD);
    let text = agent.scrape();
    let rtts = metric_value(
        &text,
        "sockpulse_ping_rtt_seconds_count",
        &[("target", target), ("probe", probe)],
    );
    assert!(
        rtts.is_some_and(|n| n >= 3.0),
        "{probe} RTTs: {rtts:?}\n{}",
        agent.proc.output_text()
    );
    assert_eq!(
        total(agent, "sockpulse_disconnects_total", target),
        0.0,
        "{}",
        agent.proc.output_text()
    );
    assert_eq!(
        total(agent, "sockpulse_connect_failures_total", target),
        0.0,
        "{}",
        agent.proc.output_text()
    );
    assert_eq!(
        metric_value(
            &text,
            "sockpulse_connect_duration_seconds_count",
            &[("target", target), ("phase", "app")]
        ),
        Some(1.0),
        "one application handshake, timed"
    );
    assert_eq!(
        metric_value(&text, "sockpulse_target_up", &[("target", target)]),
        Some(1.0)
    );
}

/// The first log line for `target` containing `needle`.
fn log_line(agent: &Agent, target: &str, needle: &str) -> String {
    let mut found = None;
    let ok = wait_until(T, || {
        found = agent
            .proc
            .output()
            .into_iter()
            .find(|l| l.contains(&format!("target={target} ")) && l.contains(needle));
        found.is_some()
    });
    assert!(ok, "no {needle:?} for {target}:\n{}", agent.proc.output_text());
    found.unwrap_or_default()
}

/// The first disconnect of `target` logged after line `since`.
fn disconnect_after(agent: &Agent, target: &str, since: usize) -> String {
    let mut found = None;
    let ok = wait_until(T, || {
        found = agent
            .proc
            .output()
            .into_iter()
            .skip(since)
            .find(|l| l.contains(&format!("target={target} ")) && l.contains("disconnected"));
        found.is_some()
    });
    assert!(ok, "no disconnect of {target}:\n{}", agent.proc.output_text());
    found.unwrap_or_default()
}

fn socketio_target(name: &str, port: u16, extra: &str) -> String {
    one_target(
        name,
        &format!("ws://127.0.0.1:{port}/"),
        &format!("protocol = \"socketio\"\n{extra}"),
    )
}

#[test]
fn socketio_4_on_node_holds_a_session_through_its_heartbeats() {
    let Some((_server, port)) = socketio_node(false, 0) else {
        return;
    };
    // The auth payload's secret comes from the environment.
    let config = socketio_target(
        "sio",
        port,
        "socketio = { namespace = \"/admin\", auth = '{\"token\":\"${SIO_TOKEN}\"}' }",
    );
    let agent = Agent::start_env(&config, &[("SIO_TOKEN", "secret")], &[]);
    assert_steady(&agent, "sio", "ping");
}

#[test]
fn socketio_2_on_node_speaks_engine_io_3_and_times_its_own_heartbeat() {
    let Some((_server, port)) = socketio_node(true, 0) else {
        return;
    };
    let agent = Agent::start(&one_target(
        "sio2",
        &format!("ws://127.0.0.1:{port}/socket.io/?EIO=3&transport=websocket"),
        "protocol = \"socketio\"",
    ));
    assert_steady(&agent, "sio2", "app");
}

#[test]
fn socketio_on_python_holds_a_session_and_refuses_bad_credentials() {
    let Some((_server, port)) = python_peer("python-socketio", "socketio_server.py", "socketio, aiohttp", &["0"])
    else {
        return;
    };
    let config = format!(
        "{}\n[[target]]\nname = \"pysio\"\nurl = \"ws://127.0.0.1:{port}/\"\nprotocol = \"socketio\"\n\
         socketio = {{ namespace = \"/admin\", auth = '{{\"token\":\"secret\"}}' }}\n\
         [[target]]\nname = \"pysio-refused\"\nurl = \"ws://127.0.0.1:{port}/\"\nprotocol = \"socketio\"\n\
         socketio = {{ namespace = \"/admin\", auth = '{{\"token\":\"wrong\"}}' }}\n",
        fast_defaults()
    );
    let agent = Agent::start(&config);
    assert_steady(&agent, "pysio", "ping");
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", "pysio-refused"), ("reason", "app_handshake")],
        T,
        |v| v >= 1.0,
    );
    let line = log_line(&agent, "pysio-refused", "connect failed");
    assert!(line.contains("Not authorized"), "{line}");
}

#[test]
fn socketio_refusal_is_app_handshake_in_status_with_the_servers_message() {
    let Some((_server, port)) = socketio_node(false, 0) else {
        return;
    };
    let dir = tempfile_dir::TempDir::new("status");
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        socketio_target(
            "refused",
            port,
            "socketio = { namespace = \"/admin\", auth = '{\"token\":\"no\"}' }",
        ),
    )
    .expect("write");
    let out = sockpulse(&["status", "--config", path.to_str().expect("utf-8"), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let r = &reports[0];
    assert_eq!(r["reason"], "app_handshake", "{r}");
    assert_eq!(r["protocol"], "socketio", "{r}");
    assert!(
        r["detail"].as_str().is_some_and(|d| d.contains("Not authorized")),
        "{r}"
    );
}

#[test]
fn a_hung_socketio_server_is_caught_by_its_own_heartbeat_and_a_server_disconnect_is_app_error() {
    let Some((server, port)) = socketio_node(false, 0) else {
        return;
    };
    // RFC 6455 pings off: the application's own heartbeat must catch it.
    let agent = Agent::start(&socketio_target("hung", port, "ping_interval = \"off\""));
    agent.wait_metric("sockpulse_target_up", &[("target", "hung")], T, |v| v == 1.0);
    server.signal("STOP");
    let stopped = Instant::now();
    let line = log_line(&agent, "hung", "disconnected");
    let took = stopped.elapsed();
    assert!(line.contains("reason=app_timeout"), "{line}");
    // pingInterval + pingTimeout after the last ping, which came at most
    // a pingInterval before the stop; slack for a loaded machine.
    assert!(took < Duration::from_millis(3_000 + 1_500), "detected after {took:?}");
    server.signal("CONT");
    agent.wait_metric("sockpulse_sessions_opened_total", &[("target", "hung")], T, |v| {
        v >= 2.0
    });
    agent.wait_metric("sockpulse_target_up", &[("target", "hung")], T, |v| v == 1.0);
    // The server disconnects the client: the application ended it.
    server.signal("USR2");
    agent.wait_metric(
        "sockpulse_disconnects_total",
        &[("target", "hung"), ("reason", "app_error")],
        T,
        |v| v >= 1.0,
    );
    agent.wait_metric("sockpulse_target_up", &[("target", "hung")], T, |v| v == 1.0);
}

#[test]
fn a_socketio_server_killed_and_restarted_gets_its_session_back() {
    let port = free_port();
    let Some((mut server, _)) = socketio_node(false, port) else {
        return;
    };
    let agent = Agent::start(&socketio_target("restarted", port, ""));
    agent.wait_metric("sockpulse_target_up", &[("target", "restarted")], T, |v| v == 1.0);
    server.kill();
    agent.wait_metric("sockpulse_target_up", &[("target", "restarted")], T, |v| v == 0.0);
    let Some((_again, _)) = socketio_node(false, port) else {
        return;
    };
    agent.wait_metric("sockpulse_target_up", &[("target", "restarted")], T, |v| v == 1.0);
    assert!(agent.metric("sockpulse_sessions_opened_total", &[("target", "restarted")]) >= Some(2.0));
}

fn graphql_target(name: &str, port: u16, extra: &str) -> String {
    one_target(
        name,
        &format!("ws://127.0.0.1:{port}/graphql"),
        &format!("protocol = \"graphql-ws\"\n{extra}"),
    )
}

/// An agent holding `name` on the GraphQL server at `port` with the token
/// it wants, and `name-refused` without one: the first held through its
/// heartbeats, the second refused with 4403 as app_handshake.
fn graphql_held_and_refused(port: u16, name: &str) -> Agent {
    let config = format!(
        "{}\n[[target]]\nname = \"{name}\"\nurl = \"ws://127.0.0.1:{port}/graphql\"\nprotocol = \"graphql-ws\"\n\
         graphql = {{ payload = '{{\"token\":\"secret\"}}' }}\n\
         [[target]]\nname = \"{name}-refused\"\nurl = \"ws://127.0.0.1:{port}/graphql\"\nprotocol = \"graphql-ws\"\n",
        fast_defaults()
    );
    let agent = Agent::start(&config);
    assert_steady(&agent, name, "app");
    let refused = format!("{name}-refused");
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", &refused), ("reason", "app_handshake")],
        T,
        |v| v >= 1.0,
    );
    let line = log_line(&agent, &refused, "connect failed");
    assert!(line.contains("4403"), "{line}");
    agent
}

#[test]
fn graphql_ws_on_node_holds_pings_and_maps_its_close_codes() {
    let Some((server, port)) = graphql_node(0) else {
        return;
    };
    let agent = graphql_held_and_refused(port, "gql");
    assert!(log_line(&agent, "gql-refused", "connect failed").contains("4403 Forbidden"));
    // The server terminates every connection (4499): an application error.
    server.signal("USR2");
    agent.wait_metric(
        "sockpulse_disconnects_total",
        &[("target", "gql"), ("reason", "app_error")],
        T,
        |v| v >= 1.0,
    );
    let line = log_line(&agent, "gql", "reason=app_error");
    assert!(line.contains("close_code=4499"), "{line}");
    agent.wait_metric("sockpulse_target_up", &[("target", "gql")], T, |v| v == 1.0);
}

#[test]
fn graphql_ws_against_a_hung_or_restarted_server() {
    let port = free_port();
    let Some((mut server, _)) = graphql_node(port) else {
        return;
    };
    let agent = Agent::start(&graphql_target(
        "gql-faults",
        port,
        "graphql = { payload = '{\"token\":\"secret\"}' }",
    ));
    agent.wait_metric("sockpulse_target_up", &[("target", "gql-faults")], T, |v| v == 1.0);
    server.signal("STOP");
    let stopped = Instant::now();
    let line = log_line(&agent, "gql-faults", "disconnected");
    // Its ping and an RFC 6455 ping go out together: either is unanswered.
    assert!(
        line.contains("reason=app_timeout") || line.contains("reason=pong_timeout"),
        "{line}"
    );
    assert!(
        stopped.elapsed() < Duration::from_millis(800 + 1_500),
        "{:?}",
        stopped.elapsed()
    );
    server.signal("CONT");
    server.kill();
    let Some((_again, _)) = graphql_node(port) else {
        return;
    };
    agent.wait_metric("sockpulse_sessions_opened_total", &[("target", "gql-faults")], T, |v| {
        v >= 2.0
    });
    agent.wait_metric("sockpulse_target_up", &[("target", "gql-faults")], T, |v| v == 1.0);
}

#[test]
fn graphql_ws_on_strawberry_holds_and_refuses() {
    let Some((_server, port)) = python_peer(
        "strawberry-graphql",
        "graphql_server.py",
        "strawberry.asgi, uvicorn",
        &["0"],
    ) else {
        return;
    };
    graphql_held_and_refused(port, "straw");
}

#[test]
fn a_custom_probe_is_answered_by_an_echo_and_times_out_on_silence() {
    let Some((_echo, echo_port)) = node_ws(0) else {
        return;
    };
    let Some((_quiet, quiet_port)) = python_ws(0, &[]) else {
        return;
    };
    let probe = r#"probe = { send = '{"op":"ping","id":${seq}}', expect = '"op":"ping","id":${seq}\}' }"#;
    let config = format!(
        "{}\n[[target]]\nname = \"custom\"\nurl = \"ws://127.0.0.1:{echo_port}/\"\n{probe}\n\
         [[target]]\nname = \"silent\"\nurl = \"ws://127.0.0.1:{quiet_port}/\"\nmessage_timeout = \"1s\"\n",
        fast_defaults()
    );
    let agent = Agent::start(&config);
    agent.wait_metric(
        "sockpulse_ping_rtt_seconds_count",
        &[("target", "custom"), ("probe", "app")],
        T,
        |v| v >= 3.0,
    );
    assert_eq!(total(&agent, "sockpulse_disconnects_total", "custom"), 0.0);
    // The echo server never sends anything of its own: the feed is silent.
    let started = SystemTime::now();
    agent.wait_metric(
        "sockpulse_disconnects_total",
        &[("target", "silent"), ("reason", "message_timeout")],
        T,
        |v| v >= 1.0,
    );
    let line = log_line(&agent, "silent", "reason=message_timeout");
    assert!(
        !line.contains("diagnosis="),
        "a healthy transport needs no diagnosis: {line}"
    );
    assert!(started.elapsed().unwrap_or_default() < T);
}

/// Publishes to `topic` through RabbitMQ's plain MQTT listener every 300 ms
/// until `stop` is set (mosquitto_pub, one process per message).
fn publish_until(
    port: u16,
    topic: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(60);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < end {
            let _ = std::process::Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-u", "guest", "-P", "guest"])
                .args(["-t", &topic, "-m", "tick", "-q", "0"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(300));
        }
    })
}

#[test]
fn mqtt_and_stomp_over_websocket_on_rabbitmq() {
    if !require("mosquitto_pub (mosquitto-clients)", which("mosquitto_pub").is_some()) {
        return;
    }
    let Some(mut rabbit) = RabbitMq::start() else {
        return;
    };
    let (mqtt, stomp) = (rabbit.mqtt_ws, rabbit.stomp_ws);
    let config = format!(
        "{defaults}\n\
         [[target]]\nname = \"mqtt\"\nurl = \"ws://127.0.0.1:{mqtt}/ws\"\nprotocol = \"mqtt\"\nmessage_timeout = \"2s\"\n\
         mqtt = {{ username = \"guest\", password = \"${{RABBIT_PASSWORD}}\", topic = \"sockpulse/feed\" }}\n\
         [[target]]\nname = \"mqtt-refused\"\nurl = \"ws://127.0.0.1:{mqtt}/ws\"\nprotocol = \"mqtt\"\n\
         mqtt = {{ username = \"guest\", password = \"wrong\" }}\n\
         [[target]]\nname = \"stomp\"\nurl = \"ws://127.0.0.1:{stomp}/ws\"\nprotocol = \"stomp\"\n\
         stomp = {{ login = \"guest\", passcode = \"${{RABBIT_PASSWORD}}\", subscribe = \"/topic/feed\" }}\n\
         [[target]]\nname = \"stomp-refused\"\nurl = \"ws://127.0.0.1:{stomp}/ws\"\nprotocol = \"stomp\"\n\
         stomp = {{ login = \"guest\", passcode = \"wrong\" }}\n\
         [[target]]\nname = \"stomp-bad-destination\"\nurl = \"ws://127.0.0.1:{stomp}/ws\"\nprotocol = \"stomp\"\n\
         stomp = {{ login = \"guest\", passcode = \"guest\", subscribe = \"/nowhere/x\" }}\n",
        defaults = fast_defaults()
    );
    let agent = Agent::start_env(&config, &[("RABBIT_PASSWORD", "guest")], &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = publish_until(rabbit.mqtt_tcp, "sockpulse/feed", std::sync::Arc::clone(&stop));
    // Steady while the feed flows: PINGREQ and RECEIPT round trips timed.
    for target in ["mqtt", "stomp"] {
        assert_steady(&agent, target, "app");
    }
    let age = agent.metric("sockpulse_last_message_age_seconds", &[("target", "mqtt")]);
    assert!(age.is_some_and(|a| a < 2.0), "published messages arrive: {age:?}");
    // Refusals and the broker's own errors, in its words.
    for (target, needle) in [("mqtt-refused", "unauthenticated"), ("stomp-refused", "Access refused")] {
        agent.wait_metric(
            "sockpulse_connect_failures_total",
            &[("target", target), ("reason", "app_handshake")],
            T,
            |v| v >= 1.0,
        );
        let line = log_line(&agent, target, "connect failed");
        assert!(line.contains(needle), "{line}");
    }
    agent.wait_metric(
        "sockpulse_disconnects_total",
        &[("target", "stomp-bad-destination"), ("reason", "app_error")],
        T,
        |v| v >= 1.0,
    );
    // The feed stops: message_timeout, while MQTT itself stays healthy.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = publisher.join();
    agent.wait_metric(
        "sockpulse_disconnects_total",
        &[("target", "mqtt"), ("reason", "message_timeout")],
        T,
        |v| v >= 1.0,
    );
    // A hung broker is caught within a probe's bound: STOMP's session is
    // open (MQTT's may be reconnecting after its message_timeout).
    let before = agent.proc.output().len();
    rabbit.signal_vm("STOP");
    let stopped = Instant::now();
    let line = disconnect_after(&agent, "stomp", before);
    assert!(
        line.contains("reason=app_timeout") || line.contains("reason=pong_timeout"),
        "{line}"
    );
    for target in ["mqtt", "stomp"] {
        agent.wait_metric("sockpulse_target_up", &[("target", target)], T, |v| v == 0.0);
    }
    assert!(stopped.elapsed() < Duration::from_secs(6), "{:?}", stopped.elapsed());
    rabbit.signal_vm("CONT");
    agent.wait_metric("sockpulse_target_up", &[("target", "stomp")], T, |v| v == 1.0);
    // Stopped and started again: the sessions come back.
    rabbit.stop();
    agent.wait_metric("sockpulse_target_up", &[("target", "stomp")], T, |v| v == 0.0);
    rabbit.launch();
    for target in ["mqtt", "stomp"] {
        agent.wait_metric(
            "sockpulse_target_up",
            &[("target", target)],
            Duration::from_secs(40),
            |v| v == 1.0,
        );
    }
}

/// Mosquitto 2.0 grants a subscription its ACL forbids (and filters what
/// it delivers): a refused SUBACK is covered by the core's unit tests.
#[test]
fn mqtt_5_on_mosquitto_opens_and_names_refusals() {
    let acl = "user probe\ntopic read allowed/#\n";
    let Some(broker) = Mosquitto::with_password("probe", "s3cret", acl) else {
        return;
    };
    let url = format!("ws://127.0.0.1:{}/", broker.ws_port);
    let config = format!(
        "{}\n[[target]]\nname = \"m5\"\nurl = \"{url}\"\nprotocol = \"mqtt\"\n\
         mqtt = {{ version = \"5\", username = \"probe\", password = \"s3cret\", topic = \"allowed/x\" }}\n\
         [[target]]\nname = \"m5-refused\"\nurl = \"{url}\"\nprotocol = \"mqtt\"\n\
         mqtt = {{ version = \"5\", username = \"probe\", password = \"wrong\" }}\n",
        fast_defaults()
    );
    let agent = Agent::start(&config);
    assert_steady(&agent, "m5", "app");
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", "m5-refused"), ("reason", "app_handshake")],
        T,
        |v| v >= 1.0,
    );
    let line = log_line(&agent, "m5-refused", "connect failed");
    assert!(
        line.contains("CONNACK refused") && line.contains("not authorized"),
        "{line}"
    );
}

/// A client its administrator disables is kicked with an MQTT 5
/// DISCONNECT of reason 0x98 (mosquitto's dynamic security): `app_error`
/// in the broker's words; refused at the next CONNECT; back once enabled.
#[test]
fn an_mqtt_5_broker_disconnect_is_app_error_with_its_reason() {
    let Some(broker) = Mosquitto::with_dynamic_security() else {
        return;
    };
    broker.ctrl(&["createClient", "probe", "-p", "s3cret"]);
    let config = format!(
        "{}\n[[target]]\nname = \"kicked\"\nurl = \"ws://127.0.0.1:{}/\"\nprotocol = \"mqtt\"\n\
         mqtt = {{ version = \"5\", username = \"probe\", password = \"s3cret\" }}\n",
        fast_defaults(),
        broker.ws_port
    );
    let agent = Agent::start(&config);
    agent.wait_metric("sockpulse_target_up", &[("target", "kicked")], T, |v| v == 1.0);
    broker.ctrl(&["disableClient", "probe"]);
    agent.wait_metric(
        "sockpulse_disconnects_total",
        &[("target", "kicked"), ("reason", "app_error")],
        T,
        |v| v >= 1.0,
    );
    let line = log_line(&agent, "kicked", "reason=app_error");
    assert!(
        line.contains("DISCONNECT") && line.contains("0x98") && line.contains("administrative action"),
        "{line}"
    );
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", "kicked"), ("reason", "app_handshake")],
        T,
        |v| v >= 1.0,
    );
    broker.ctrl(&["enableClient", "probe"]);
    agent.wait_metric("sockpulse_sessions_opened_total", &[("target", "kicked")], T, |v| {
        v >= 2.0
    });
    agent.wait_metric("sockpulse_target_up", &[("target", "kicked")], T, |v| v == 1.0);
}

#[test]
fn a_token_file_is_read_again_at_every_reconnect_and_never_logged() {
    let Some((_server, port)) = socketio_node(false, 0) else {
        return;
    };
    let dir = tempfile_dir::TempDir::new("token");
    let token = dir.path().join("token");
    std::fs::write(&token, "wrong-tok-8x1\n").expect("write token");
    let auth = format!(
        "socketio = {{ namespace = \"/admin\", auth = '{{\"token\":\"${{file:{}}}\"}}' }}",
        token.display()
    );
    let agent = Agent::start(&socketio_target("rotating", port, &auth));
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", "rotating"), ("reason", "app_handshake")],
        T,
        |v| v >= 1.0,
    );
    // The token rotates (as a projected Kubernetes token does): the next
    // attempt reads the new one.
    std::fs::write(&token, "secret\n").expect("rotate token");
    agent.wait_metric("sockpulse_target_up", &[("target", "rotating")], T, |v| v == 1.0);
    assert!(
        !agent.proc.output_text().contains("wrong-tok-8x1"),
        "a secret was logged"
    );
}
