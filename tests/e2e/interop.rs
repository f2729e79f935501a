//! Healthy sessions against independent implementations.

use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(15);

/// Asserts a healthy target: up, pings answered with plausible RTTs, no failures.
fn assert_healthy(agent: &Agent, name: &str) {
    agent.wait_metric("sockpulse_target_up", &[("target", name)], T, |v| v == 1.0);
    let pongs = agent.wait_metric("sockpulse_ping_rtt_seconds_count", &[("target", name)], T, |v| v >= 3.0);
    let text = agent.scrape();
    let sum = metric_value(&text, "sockpulse_ping_rtt_seconds_sum", &[("target", name)]).expect("rtt sum");
    let mean = sum / pongs;
    assert!(mean > 0.0 && mean < 0.25, "mean loopback RTT {mean}s is implausible");
    assert_eq!(
        metric_value(&text, "sockpulse_sessions", &[("target", name), ("state", "open")]),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&text, "sockpulse_pong_timeouts_total", &[("target", name)]),
        Some(0.0)
    );
    let handshakes = metric_value(
        &text,
        "sockpulse_connect_duration_seconds_count",
        &[("target", name), ("phase", "handshake")],
    );
    assert_eq!(handshakes, Some(1.0), "one handshake, no reconnects");
}

#[test]
fn python_websockets_session_is_healthy_with_rtt_in_metrics() {
    let Some((_server, port)) = python_ws(0, &[]) else {
        return;
    };
    let agent = Agent::start(&one_target("py", &format!("ws://127.0.0.1:{port}/"), ""));
    assert_healthy(&agent, "py");
}

#[test]
fn node_ws_session_is_healthy_and_on_open_messages_are_sent() {
    let Some((_server, port)) = node_ws(0) else { return };
    let agent = Agent::start(&one_target(
        "node",
        &format!("ws://localhost:{port}/"),
        "on_open = ['{\"op\":\"subscribe\"}']",
    ));
    assert_healthy(&agent, "node");
    // The echo of the subscription counts as a received message.
    let age = agent.wait_metric("sockpulse_last_message_age_seconds", &[("target", "node")], T, |v| {
        v >= 0.0
    });
    assert!(age < 60.0);
}

#[test]
fn nginx_proxy_in_front_of_python_is_healthy_and_its_404_is_handshake_status() {
    let Some((_backend, backend_port)) = python_ws(0, &[]) else {
        return;
    };
    let Some((_nginx, port, _dir)) = nginx_ws_proxy(backend_port) else {
        return;
    };
    let config = format!(
        "{}\n[[target]]\nname = \"proxied\"\nurl = \"ws://127.0.0.1:{port}/ws\"\n\n[[target]]\nname = \"missing\"\nurl = \"ws://127.0.0.1:{port}/nope\"\n",
        fast_defaults()
    );
    let agent = Agent::start(&config);
    assert_healthy(&agent, "proxied");
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", "missing"), ("reason", "handshake_status")],
        T,
        |v| v >= 1.0,
    );
    assert_eq!(agent.metric("sockpulse_target_up", &[("target", "missing")]), Some(0.0));
}

#[test]
fn redis_tcp_probe_measures_ping_pong_round_trips() {
    let Some((_redis, port)) = redis() else { return };
    let agent = Agent::start(&one_target(
        "redis",
        &format!("tcp://127.0.0.1:{port}"),
        "probe = { send = \"PING\\r\\n\", expect = \"+PONG\" }",
    ));
    agent.wait_metric("sockpulse_target_up", &[("target", "redis")], T, |v| v == 1.0);
    agent.wait_metric("sockpulse_ping_rtt_seconds_count", &[("target", "redis")], T, |v| {
        v >= 3.0
    });
    assert_eq!(
        agent.metric("sockpulse_pong_timeouts_total", &[("target", "redis")]),
        Some(0.0)
    );
}

#[test]
fn redis_probe_with_wrong_expectation_times_out() {
    let Some((_redis, port)) = redis() else { return };
    let agent = Agent::start(&one_target(
        "redis",
        &format!("tcp://127.0.0.1:{port}"),
        "probe = { send = \"PING\\r\\n\", expect = \"+PANG\" }",
    ));
    agent.wait_metric(
        "sockpulse_disconnects_total",
        &[("target", "redis"), ("reason", "pong_timeout")],
        T,
        |v| v >= 1.0,
    );
    assert_eq!(
        agent.metric("sockpulse_ping_rtt_seconds_count", &[("target", "redis")]),
        Some(0.0)
    );
}

#[test]
fn wss_with_test_ca_reports_tls_timing_and_certificate_expiry() {
    let Some(certs) = certs() else { return };
    let dir = certs.path().display().to_string();
    let Some((_server, port)) = python_wss(certs.path(), "good", &[]) else {
        return;
    };
    let agent = Agent::start(&one_target(
        "secure",
        &format!("wss://localhost:{port}/"),
        &format!("tls = {{ ca_file = \"{dir}/ca.pem\" }}"),
    ));
    assert_healthy(&agent, "secure");
    let text = agent.scrape();
    let tls = metric_value(
        &text,
        "sockpulse_connect_duration_seconds_count",
        &[("target", "secure"), ("phase", "tls")],
    );
    assert_eq!(tls, Some(1.0));
    let expiry = metric_value(
        &text,
        "sockpulse_tls_cert_expiry_timestamp_seconds",
        &[("target", "secure")],
    )
    .expect("expiry exported");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let days = (expiry - now) / 86_400.0;
    assert!(
        (19.0..=20.5).contains(&days),
        "certificate made for 20 days, metric says {days}"
    );
}

/// Handshakes of `target` by kind (full, resumed).
fn tls_handshakes(agent: &Agent, target: &str) -> (f64, f64) {
    let text = agent.scrape();
    let kind = |k| {
        metric_value(
            &text,
            "sockpulse_tls_handshakes_total",
            &[("target", target), ("kind", k)],
        )
    };
    (kind("full").unwrap_or(0.0), kind("resumed").unwrap_or(0.0))
}

#[test]
fn wss_sessions_cut_by_the_server_resume_their_tls_sessions_unless_told_not_to() {
    let Some(certs) = certs() else { return };
    let dir = certs.path().display().to_string();
    let (cert, key) = (format!("{dir}/good.pem"), format!("{dir}/good.key"));
    let Some((server, port)) = node_peer(
        "node ws over TLS",
        "snapshot_server.js",
        "ws",
        &["0", "--tls", &cert, &key],
    ) else {
        return;
    };
    let control = server.wait_line("CONTROL ", T).expect("the control port");
    let control = format!("127.0.0.1:{}", control.trim_start_matches("CONTROL ").trim());
    let url = format!("wss://localhost:{port}/");
    // All reconnect at the same instant (a fixed 1 s backoff), more than
    // rustls's default store's 8 tickets per server.
    let agent = Agent::start(&format!(
        "[defaults]\nbackoff = {{ min = \"1s\", max = \"1s\" }}\n[kernel]\nscan_interval = \"off\"\n\
         [[target]]\nname = \"resume\"\nurl = \"{url}\"\nconnections = 24\n\
         tls = {{ ca_file = \"{dir}/ca.pem\" }}\n\
         [[target]]\nname = \"full\"\nurl = \"{url}\"\nconnections = 8\n\
         tls = {{ ca_file = \"{dir}/ca.pem\", resumption = false }}\n"
    ));
    let open = |target| if target == "resume" { 24.0 } else { 8.0 };
    for target in ["resume", "full"] {
        agent.wait_metric("sockpulse_sessions", &[("target", target), ("state", "open")], T, |v| {
            v == open(target)
        });
    }
    let (resume_full, resume_resumed) = tls_handshakes(&agent, "resume");
    assert_eq!(resume_full + resume_resumed, 24.0, "one handshake per session");
    assert_eq!(tls_handshakes(&agent, "full"), (8.0, 0.0));
    // Node sends its session tickets right after the handshake.
    std::thread::sleep(Duration::from_secs(1));

    let (status, body) = http_get(&control, "/drop");
    assert_eq!((status, body.trim()), (200, "32"));
    for target in ["resume", "full"] {
        let n = open(target);
        agent.wait_metric(
            "sockpulse_disconnects_total",
            &[("target", target), ("reason", "eof")],
            T,
            |v| v == n,
        );
        agent.wait_metric("sockpulse_sessions", &[("target", target), ("state", "open")], T, |v| {
            v == n
        });
    }
    let (full, resumed) = tls_handshakes(&agent, "resume");
    assert_eq!(
        (full - resume_full, resumed - resume_resumed),
        (0.0, 24.0),
        "every reconnect resumes from a ticket of an earlier session"
    );
    assert_eq!(tls_handshakes(&agent, "full"), (16.0, 0.0), "resumption = false");
    assert!(agent
        .metric("sockpulse_tls_cert_expiry_timestamp_seconds", &[("target", "resume")])
        .is_some());
}

#[test]
fn wss_expired_certificate_wrong_hostname_and_unknown_ca_fail_as_tls() {
    let Some(certs) = certs() else { return };
    let dir = certs.path().display().to_string();
    let Some((_expired, expired_port)) = python_wss(certs.path(), "expired", &[]) else {
        return;
    };
    let Some((_other, other_port)) = python_wss(certs.path(), "other", &[]) else {
        return;
    };
    let ca = format!("{dir}/ca.pem");
    let config = format!(
        "{}
[[target]]
name = \"expired\"
url = \"wss://localhost:{expired_port}/\"
tls = {{ ca_file = \"{ca}\" }}
[[target]]
name = \"wrong_host\"
url = \"wss://localhost:{other_port}/\"
tls = {{ ca_file = \"{ca}\" }}
[[target]]
name = \"system_roots\"
url = \"wss://localhost:{other_port}/\"
[[target]]
name = \"overridden\"
url = \"wss://127.0.0.1:{other_port}/\"
tls = {{ ca_file = \"{ca}\", server_name = \"other.test\" }}
",
        fast_defaults()
    );
    let agent = Agent::start(&config);
    for name in ["expired", "wrong_host", "system_roots"] {
        agent.wait_metric(
            "sockpulse_connect_failures_total",
            &[("target", name), ("reason", "tls")],
            T,
            |v| v >= 1.0,
        );
    }
    // The server-name override makes the same certificate acceptable.
    agent.wait_metric("sockpulse_target_up", &[("target", "overridden")], T, |v| v == 1.0);
    let log = agent.proc.output_text();
    assert!(
        log.contains("target=expired") && log.to_lowercase().contains("expired"),
        "{log}"
    );
}

#[test]
fn wss_client_certificate_is_presented_when_configured_and_required_by_the_server() {
    let Some(certs) = certs() else { return };
    let dir = certs.path().display().to_string();
    let Some((_server, port)) = python_wss(certs.path(), "good", &["--client-ca", &format!("{dir}/ca.pem")]) else {
        return;
    };
    let config = format!(
        "{}
[[target]]
name = \"with_cert\"
url = \"wss://localhost:{port}/\"
tls = {{ ca_file = \"{dir}/ca.pem\", client_cert = \"{dir}/client.pem\", client_key = \"{dir}/client.key\" }}
[[target]]
name = \"without_cert\"
url = \"wss://localhost:{port}/\"
tls = {{ ca_file = \"{dir}/ca.pem\" }}
",
        fast_defaults()
    );
    let agent = Agent::start(&config);
    assert_healthy(&agent, "with_cert");
    // Python's TLS server drops a client without a certificate without an
    // alert, right after the client's Finished: the upgrade never gets an
    // answer. Servers that send the alert first give `tls` instead.
    let failed = wait_until(T, || {
        let text = agent.scrape();
        let by = |r: &str| {
            metric_value(
                &text,
                "sockpulse_connect_failures_total",
                &[("target", "without_cert"), ("reason", r)],
            )
            .unwrap_or(0.0)
        };
        by("handshake_eof") + by("tls") >= 2.0
    });
    assert!(failed, "{}", agent.proc.output_text());
    assert_eq!(
        agent.metric("sockpulse_sessions_opened_total", &[("target", "without_cert")]),
        Some(0.0)
    );
    assert!(
        agent.proc.output_text().contains("client certificate"),
        "the log hints at the likely cause"
    );
}

#[test]
fn insecure_skip_verify_accepts_an_expired_certificate_and_says_so() {
    let Some(certs) = certs() else { return };
    let Some((_server, port)) = python_wss(certs.path(), "expired", &[]) else {
        return;
    };
    let agent = Agent::start(&one_target(
        "trusting",
        &format!("wss://localhost:{port}/"),
        "tls = { insecure_skip_verify = true }",
    ));
    assert_healthy(&agent, "trusting");
    let log = agent.proc.output_text();
    assert!(
        log.contains("WARN") && log.contains("verification is DISABLED"),
        "{log}"
    );
}

#[test]
fn subprotocol_negotiation_with_python_websockets() {
    let Some((_chat, chat_port)) = python_ws(0, &["--subprotocol", "chat.v2"]) else {
        return;
    };
    let Some((_plain, plain_port)) = python_ws(0, &[]) else {
        return;
    };
    let config = format!(
        "{}
[[target]]
name = \"agreed\"
url = \"ws://127.0.0.1:{chat_port}/\"
subprotocols = [\"chat.v1\", \"chat.v2\"]
[[target]]
name = \"server_refuses\"
url = \"ws://127.0.0.1:{chat_port}/\"
subprotocols = [\"chat.v9\"]
[[target]]
name = \"server_ignores\"
url = \"ws://127.0.0.1:{plain_port}/\"
subprotocols = [\"chat.v9\"]
[[target]]
name = \"optional\"
url = \"ws://127.0.0.1:{plain_port}/\"
subprotocols = [\"chat.v9\"]
require_subprotocol = false
",
        fast_defaults()
    );
    let agent = Agent::start(&config);
    assert_healthy(&agent, "agreed");
    assert_healthy(&agent, "optional");
    // websockets answers 400 when none of the offered subprotocols is its own.
    let refused = [("target", "server_refuses"), ("reason", "handshake_status")];
    agent.wait_metric("sockpulse_connect_failures_total", &refused, T, |v| v >= 1.0);
    // A server without subprotocols selects none: required, so it fails.
    let ignored = [("target", "server_ignores"), ("reason", "protocol_error")];
    agent.wait_metric("sockpulse_connect_failures_total", &ignored, T, |v| v >= 1.0);
    assert!(agent.proc.output_text().contains("none of the requested subprotocols"));
}

#[test]
fn custom_headers_and_origin_reach_the_server_and_secrets_stay_out_of_logs() {
    let Some((server, port)) = python_ws(
        0,
        &[
            "--show-header",
            "Authorization",
            "--show-header",
            "Origin",
            "--show-header",
            "X-Team",
        ],
    ) else {
        return;
    };
    let config = one_target(
        "auth",
        &format!("ws://127.0.0.1:{port}/"),
        "headers = { Authorization = \"Bearer ${SOCKPULSE_TEST_TOKEN}\", X-Team = \"sre\" }\norigin = \"https://example.net\"",
    );
    let agent = Agent::start_env(&config, &[("SOCKPULSE_TEST_TOKEN", "tok-5ecr3t")], &[]);
    assert_healthy(&agent, "auth");
    let seen = server.output();
    for expected in [
        "HEADER Authorization: Bearer tok-5ecr3t",
        "HEADER Origin: https://example.net",
        "HEADER X-Team: sre",
    ] {
        assert!(seen.iter().any(|l| l == expected), "server saw {seen:?}");
    }
    assert!(
        !agent.proc.output_text().contains("tok-5ecr3t"),
        "the secret leaked into the log"
    );
}
