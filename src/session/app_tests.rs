//! Application protocols driven through the session core with a virtual
//! clock: each handshake, heartbeat answered, every deadline firing at its
//! time and not before, each server error mapped.

use super::spec::*;
use super::tests::{client_frames, frame, request_key, sent_ping_payload, Harness, MS};
use super::*;

const S: Duration = Duration::from_secs(1);

fn text(t: &str) -> Vec<u8> {
    frame(true, 0x1, t.as_bytes())
}

/// The text messages the client sent since the last call.
fn sent_texts(h: &mut Harness) -> Vec<String> {
    client_frames(&h.take_wire())
        .into_iter()
        .filter(|(op, _)| *op == 0x1)
        .map(|(_, p)| String::from_utf8(p).expect("utf-8"))
        .collect()
}

/// Connects and answers the upgrade (with `subprotocol` if given); the
/// session is then in its application handshake.
fn upgrade(spec: TargetSpec, subprotocol: Option<&str>) -> Harness {
    let mut h = Harness::new(spec, Mode::Persistent);
    let key = request_key(&h.connect());
    h.advance(MS);
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        handshake::accept_key(&key)
    );
    if let Some(p) = subprotocol {
        answer.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    answer.push_str("\r\n");
    h.input(answer.as_bytes());
    h
}

fn opened(events: &[SessionEvent]) -> Option<Option<Duration>> {
    events.iter().find_map(|e| match e {
        SessionEvent::Opened { app, .. } => Some(*app),
        _ => None,
    })
}

fn socketio(eio: u8, namespace: &str, auth: Option<&str>) -> TargetSpec {
    TargetSpec {
        protocol: Protocol::SocketIo(SocketIoOptions {
            eio,
            namespace: namespace.into(),
            auth: auth.map(Into::into),
        }),
        ..TargetSpec::for_test(Scheme::Ws)
    }
}

const OPEN_2S_1S: &str = r#"0{"sid":"x","upgrades":[],"pingInterval":2000,"pingTimeout":1000,"maxPayload":1000000}"#;

#[test]
fn socketio_v4_opens_on_the_connect_ack_answers_pings_and_times_out_without_them() {
    let mut spec = socketio(4, "/admin", Some(r#"{"token":"t"}"#));
    // RFC 6455 pings far enough apart not to share the heartbeat's deadline.
    spec.timing.ping_interval = Some(20 * S);
    let mut h = upgrade(spec, None);
    assert_eq!(h.s.phase(), Phase::Handshaking, "open only after the namespace connect");
    h.take_events();
    h.advance(MS);
    h.input(&text(OPEN_2S_1S));
    assert_eq!(sent_texts(&mut h), [r#"40/admin,{"token":"t"}"#]);
    h.advance(3 * MS);
    h.input(&text(r#"40/admin,{"sid":"y"}"#));
    assert_eq!(h.s.phase(), Phase::Open);
    assert_eq!(
        opened(&h.take_events()),
        Some(Some(4 * MS)),
        "the app handshake is timed"
    );
    // RFC 6455 pings run beside the application's heartbeat.
    h.tick();
    let ping = sent_ping_payload(&mut h);
    h.input(&frame(true, 0xA, &ping));
    assert!(matches!(
        h.take_events()[..],
        [SessionEvent::Pong {
            probe: ProbeKind::Ping,
            ..
        }]
    ));
    // The server's ping is answered; it must come every 2 s + 1 s.
    h.advance(2 * S);
    h.input(&text("2"));
    assert_eq!(sent_texts(&mut h), ["3"]);
    let last_ping = h.now;
    h.now = last_ping + 3 * S - MS;
    h.tick();
    assert_eq!(h.s.phase(), Phase::Open, "not before pingInterval + pingTimeout");
    h.now = last_ping + 3 * S;
    h.tick();
    let events = h.take_events();
    assert!(
        events.contains(&SessionEvent::PongTimeout { probe: ProbeKind::App }),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            SessionEvent::Disconnected {
                reason: DisconnectReason::AppTimeout,
                ..
            }
        )),
        "{events:?}"
    );
}

#[test]
fn socketio_refusals_and_disconnects_carry_the_servers_words() {
    let mut h = upgrade(socketio(4, "/", None), None);
    h.input(&text(OPEN_2S_1S));
    assert_eq!(sent_texts(&mut h), ["40"]);
    h.take_events();
    h.input(&text(r#"44{"message":"Not authorized"}"#));
    let (reason, detail) = h.connect_failure();
    assert_eq!(reason, FailureReason::AppHandshake);
    assert!(detail.contains("Not authorized"), "{detail}");

    let mut h = upgrade(socketio(4, "/", None), None);
    h.input(&text(OPEN_2S_1S));
    h.input(&text(r#"40{"sid":"y"}"#));
    assert_eq!(h.s.phase(), Phase::Open);
    h.take_events();
    h.input(&text(r#"42["tick",1]"#));
    assert_eq!(h.s.stats.last_message, Some(h.now), "events are data");
    h.input(&text("41"));
    assert_eq!(h.disconnects(), [DisconnectReason::AppError]);
}

#[test]
fn socketio_v3_pings_itself_and_times_the_pong() {
    let mut h = upgrade(socketio(3, "/", None), None);
    h.input(&text(OPEN_2S_1S));
    assert!(sent_texts(&mut h).is_empty(), "Socket.IO 2 connects / by itself");
    h.input(&text("40"));
    assert_eq!(h.s.phase(), Phase::Open);
    h.take_events();
    h.tick();
    let sent = sent_texts(&mut h);
    assert_eq!(sent, ["2"], "the first heartbeat at once");
    h.advance(5 * MS);
    h.input(&text("3"));
    let events = h.take_events();
    assert!(
        events.contains(&SessionEvent::Pong {
            rtt: 5 * MS,
            probe: ProbeKind::App
        }),
        "{events:?}"
    );
}

fn graphql(payload: Option<&str>) -> TargetSpec {
    let base = TargetSpec::for_test(Scheme::Ws);
    TargetSpec {
        protocol: Protocol::GraphqlWs(GraphqlWsOptions {
            payload: payload.map(Into::into),
        }),
        ws: WsOptions {
            subprotocols: vec!["graphql-transport-ws".into()],
            require_subprotocol: true,
            ..base.ws.clone()
        },
        ..base
    }
}

#[test]
fn graphql_ws_opens_on_ack_pings_and_answers_the_servers_pings() {
    let mut h = upgrade(graphql(Some(r#"{"token":"t"}"#)), Some("graphql-transport-ws"));
    assert_eq!(
        sent_texts(&mut h),
        [r#"{"type":"connection_init","payload":{"token":"t"}}"#]
    );
    assert_eq!(h.s.phase(), Phase::Handshaking);
    h.advance(2 * MS);
    h.input(&text(r#"{"type":"connection_ack"}"#));
    assert_eq!(h.s.phase(), Phase::Open);
    assert_eq!(opened(&h.take_events()), Some(Some(2 * MS)));
    h.tick();
    let sent = client_frames(&h.take_wire());
    assert!(
        sent.iter().any(|(op, p)| *op == 0x1 && p == br#"{"type":"ping"}"#),
        "{sent:?}"
    );
    assert!(sent.iter().any(|(op, _)| *op == 0x9), "RFC 6455 ping too: {sent:?}");
    h.advance(3 * MS);
    h.input(&text(r#"{"type":"pong"}"#));
    let events = h.take_events();
    assert!(
        events.contains(&SessionEvent::Pong {
            rtt: 3 * MS,
            probe: ProbeKind::App
        }),
        "{events:?}"
    );
    h.input(&text(r#"{"type":"ping"}"#));
    assert_eq!(sent_texts(&mut h), [r#"{"type":"pong"}"#]);
    // A 44xx close once open is the application ending the session.
    h.input(&frame(true, 0x8, &[&4400u16.to_be_bytes()[..], b"bad"].concat()));
    let events = h.take_events();
    assert!(
        events.iter().any(|e| matches!(
            e,
            SessionEvent::Disconnected {
                reason: DisconnectReason::AppError,
                close_code: Some(4400),
                ..
            }
        )),
        "{events:?}"
    );
}

#[test]
fn graphql_ws_refused_or_never_acked_fails_the_attempt_as_app_handshake() {
    let mut h = upgrade(graphql(None), Some("graphql-transport-ws"));
    h.take_events();
    h.input(&frame(true, 0x8, &[&4403u16.to_be_bytes()[..], b"Forbidden"].concat()));
    let (reason, detail) = h.connect_failure();
    assert_eq!(reason, FailureReason::AppHandshake);
    assert!(detail.contains("4403 Forbidden"), "{detail}");

    let mut h = upgrade(graphql(None), Some("graphql-transport-ws"));
    let upgraded = h.now;
    h.take_events();
    h.now = upgraded + 5 * S - MS;
    h.tick();
    assert_eq!(h.s.phase(), Phase::Handshaking);
    h.now = upgraded + 5 * S;
    h.tick();
    let (reason, detail) = h.connect_failure();
    assert_eq!(reason, FailureReason::AppHandshake);
    assert!(detail.contains("connection_ack"), "{detail}");
}

#[test]
fn a_custom_probe_is_matched_by_its_number_and_other_messages_are_data() {
    let mut spec = TargetSpec::for_test(Scheme::Ws);
    spec.app_probe = Some(AppProbe {
        send: ProbeMessage::Text(r#"{"op":"ping","id":${seq}}"#.into()),
        expect: ProbeAnswer::text(r#""op":"pong".*"id":${seq}"#).expect("valid"),
    });
    let mut h = upgrade(spec, None);
    assert_eq!(h.s.phase(), Phase::Open, "no handshake of its own");
    h.take_events();
    h.tick();
    assert_eq!(sent_texts(&mut h), [r#"{"op":"ping","id":1}"#]);
    h.advance(MS);
    h.input(&text(r#"{"op":"pong","id":7}"#));
    h.input(&text(r#"{"op":"quote","px":1}"#));
    assert_eq!(
        h.take_events(),
        [SessionEvent::Message { size: 20 }, SessionEvent::Message { size: 21 }],
        "a wrong number is no answer"
    );
    h.advance(MS);
    h.input(&text(r#"{"op":"pong","id":1}"#));
    assert_eq!(
        h.take_events(),
        [
            SessionEvent::Pong {
                rtt: 2 * MS,
                probe: ProbeKind::App
            },
            SessionEvent::Message { size: 20 }
        ]
    );
}

#[test]
fn message_timeout_ends_a_silent_feed_at_its_deadline_and_data_resets_it() {
    let mut spec = TargetSpec::for_test(Scheme::Ws);
    spec.timing.message_timeout = Some(30 * S);
    spec.timing.ping_interval = None; // pongs are not data either way
    let mut h = upgrade(spec, None);
    let opened_at = h.now;
    h.take_events();
    h.now = opened_at + 20 * S;
    h.input(&text("quote"));
    let last = h.now;
    h.now = last + 30 * S - MS;
    h.tick();
    assert_eq!(h.s.phase(), Phase::Open);
    h.now = last + 30 * S;
    h.tick();
    assert_eq!(h.disconnects(), [DisconnectReason::MessageTimeout]);
}

fn binary(b: &[u8]) -> Vec<u8> {
    frame(true, 0x2, b)
}

/// The binary messages the client sent since the last call.
fn sent_binaries(h: &mut Harness) -> Vec<Vec<u8>> {
    client_frames(&h.take_wire())
        .into_iter()
        .filter(|(op, _)| *op == 0x2)
        .map(|(_, p)| p)
        .collect()
}

fn mqtt(version: MqttVersion, topic: Option<&str>) -> TargetSpec {
    let base = TargetSpec::for_test(Scheme::Ws);
    TargetSpec {
        protocol: Protocol::Mqtt(MqttOptions {
            version,
            client_id: String::new(),
            username: Some("u".into()),
            password: Some("p".into()),
            clean_session: true,
            topic: topic.map(Into::into),
        }),
        ws: WsOptions {
            subprotocols: vec!["mqtt".into()],
            require_subprotocol: true,
            ..base.ws.clone()
        },
        ..base
    }
}

#[test]
fn mqtt_opens_on_connack_subscribes_and_times_pingreq() {
    let mut h = upgrade(mqtt(MqttVersion::V311, Some("feed/#")), Some("mqtt"));
    let sent = sent_binaries(&mut h);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][0], 0x10, "CONNECT");
    let text = String::from_utf8_lossy(&sent[0]);
    assert!(text.contains("sockpulse-"), "a generated client id: {text:?}");
    // CONNACK, split over two messages, accepted.
    h.advance(2 * MS);
    h.input(&binary(&[0x20, 2]));
    assert_eq!(h.s.phase(), Phase::Handshaking);
    h.input(&binary(&[0, 0]));
    assert_eq!(h.s.phase(), Phase::Open);
    assert_eq!(opened(&h.take_events()), Some(Some(2 * MS)));
    let sent = sent_binaries(&mut h);
    assert_eq!(sent[0][0], 0x82, "SUBSCRIBE right after CONNACK");
    h.tick();
    assert!(sent_binaries(&mut h).contains(&vec![0xC0, 0]), "PINGREQ");
    h.advance(4 * MS);
    // A PUBLISH and the PINGRESP in one message.
    h.input(&binary(&[0x30, 5, 0, 1, b'f', b'h', b'i', 0xD0, 0]));
    assert_eq!(h.s.stats.last_message, Some(h.now), "PUBLISH is data");
    let events = h.take_events();
    assert!(
        events.contains(&SessionEvent::Pong {
            rtt: 4 * MS,
            probe: ProbeKind::App
        }),
        "{events:?}"
    );
    // Unanswered PINGREQ: app_timeout at the pong deadline.
    let spec_interval = Duration::from_secs(10);
    h.now += spec_interval;
    h.tick();
    h.take_wire();
    h.now += Duration::from_secs(5);
    h.tick();
    assert!(
        h.disconnects()
            .iter()
            .any(|r| matches!(r, DisconnectReason::AppTimeout | DisconnectReason::PongTimeout)),
        "an unanswered probe ends it"
    );
}

#[test]
fn mqtt_refusals_and_broker_disconnects_are_named() {
    let mut h = upgrade(mqtt(MqttVersion::V311, None), Some("mqtt"));
    h.take_events();
    h.input(&binary(&[0x20, 2, 0, 5]));
    let (reason, detail) = h.connect_failure();
    assert_eq!(reason, FailureReason::AppHandshake);
    assert!(detail.contains("not authorized"), "{detail}");

    let mut h = upgrade(mqtt(MqttVersion::V5, None), Some("mqtt"));
    let connect = sent_binaries(&mut h).remove(0);
    assert_eq!(connect[8], 5, "protocol level 5");
    h.input(&binary(&[0x20, 3, 0, 0, 0]));
    assert_eq!(h.s.phase(), Phase::Open);
    h.take_events();
    h.input(&binary(&[0xE0, 2, 0x8E, 0]));
    let events = h.take_events();
    let detail = events.iter().find_map(|e| match e {
        SessionEvent::Disconnected {
            reason: DisconnectReason::AppError,
            detail,
            ..
        } => Some(detail.clone()),
        _ => None,
    });
    assert!(detail.is_some_and(|d| d.contains("session taken over")), "{events:?}");
}

fn stomp(subscribe: Option<&str>) -> TargetSpec {
    let base = TargetSpec::for_test(Scheme::Ws);
    TargetSpec {
        protocol: Protocol::Stomp(StompOptions {
            host: "/".into(),
            login: Some("guest".into()),
            passcode: Some("guest".into()),
            subscribe: subscribe.map(Into::into),
            receipt: true,
        }),
        ws: WsOptions {
            subprotocols: vec!["v12.stomp".into()],
            require_subprotocol: true,
            ..base.ws.clone()
        },
        ..base
    }
}

#[test]
fn stomp_negotiates_heart_beats_times_receipts_and_catches_a_silent_broker() {
    let mut h = upgrade(stomp(Some("/topic/a")), Some("v12.stomp"));
    let sent = sent_texts(&mut h);
    assert!(
        sent[0].starts_with("CONNECT\naccept-version:1.2,1.1\nhost:/\nheart-beat:10000,10000\n"),
        "{sent:?}"
    );
    h.advance(MS);
    // The broker sends every 5 s and wants ours every 20 s.
    h.input(&text("CONNECTED\nversion:1.2\nheart-beat:5000,20000\n\n\0"));
    assert_eq!(h.s.phase(), Phase::Open);
    h.take_events();
    let sent = sent_texts(&mut h);
    assert!(
        sent.iter()
            .any(|f| f.starts_with("SUBSCRIBE\nid:0\ndestination:/topic/a\n")),
        "{sent:?}"
    );
    // The first probe: an empty transaction begun with a receipt, and an
    // RFC 6455 ping beside it (answered).
    h.tick();
    let frames = client_frames(&h.take_wire());
    let begin = frames
        .iter()
        .find(|(op, p)| *op == 0x1 && p.starts_with(b"BEGIN\ntransaction:sockpulse-1\nreceipt:sockpulse-1\n"));
    assert!(begin.is_some(), "{frames:?}");
    let ping = frames
        .iter()
        .find(|(op, _)| *op == 0x9)
        .map(|(_, p)| p.clone())
        .expect("a ping");
    h.advance(3 * MS);
    h.input(&frame(true, 0xA, &ping));
    h.take_events();
    h.input(&text("RECEIPT\nreceipt-id:sockpulse-1\n\n\0"));
    let events = h.take_events();
    assert!(
        events.contains(&SessionEvent::Pong {
            rtt: 3 * MS,
            probe: ProbeKind::App
        }),
        "{events:?}"
    );
}

#[test]
fn a_stomp_broker_silent_past_its_heart_beat_is_an_app_timeout() {
    let mut spec = stomp(None);
    if let Protocol::Stomp(o) = &mut spec.protocol {
        o.receipt = false;
    }
    let mut h = upgrade(spec, Some("v12.stomp"));
    h.take_wire();
    // Ours offered at 10 s both ways; the broker beats every 5 s, so it is
    // expected every max(5 s, 10 s) = 10 s, with a pong timeout of grace.
    h.input(&text("CONNECTED\nversion:1.2\nheart-beat:5000,20000\n\n\0"));
    assert_eq!(h.s.phase(), Phase::Open);
    h.take_events();
    let mut heard = h.now;
    // The WebSocket still answers pings; STOMP says nothing after one beat.
    let answer_pings = |h: &mut Harness| {
        for (op, p) in client_frames(&h.take_wire()) {
            if op == 0x9 {
                h.input(&frame(true, 0xA, &p));
            }
        }
    };
    h.now = heard + 4 * S;
    h.tick();
    answer_pings(&mut h);
    h.input(&text("\n"));
    heard = h.now;
    for step in [5, 10, 15] {
        h.now = heard + step * S - MS;
        h.tick();
        answer_pings(&mut h);
        assert_eq!(h.s.phase(), Phase::Open, "{step} s after the last beat");
    }
    h.now = heard + 15 * S;
    h.tick();
    let events = h.take_events();
    assert!(
        events.contains(&SessionEvent::PongTimeout { probe: ProbeKind::App }),
        "{events:?}"
    );
}

#[test]
fn a_stomp_error_frame_is_the_brokers_word() {
    let mut h = upgrade(stomp(None), Some("v12.stomp"));
    h.take_events();
    h.input(&text(
        "ERROR\nmessage:Bad CONNECT\ncontent-type:text/plain\n\nAccess refused for user 'guest'\n\0",
    ));
    let (reason, detail) = h.connect_failure();
    assert_eq!(reason, FailureReason::AppHandshake);
    assert!(detail.contains("Bad CONNECT: Access refused"), "{detail}");
}

#[test]
fn secret_files_are_filled_in_at_every_attempt_and_a_missing_one_fails_it() {
    let mut spec = socketio(4, "/", Some(r#"{"token":"${file:/run/t}"}"#));
    spec.ws.headers = vec![("Authorization".into(), "Bearer ${file:/run/t}".into())];
    spec.secret_files = std::sync::Arc::new(["/run/t".into()]);
    let mut h = Harness::new(spec, Mode::Persistent);
    h.s.start(h.now, &mut h.out);
    h.take_io();
    h.s.handle_secrets(
        Ok(secrets::SecretFiles::new(vec![("/run/t".into(), "first\n".into())])),
        h.now,
        &mut h.out,
    );
    let addr: SocketAddr = "127.0.0.1:80".parse().expect("literal");
    h.s.handle_resolved(Ok(vec![addr]), h.now, &mut h.out);
    h.s.handle_connected(Ok(()), h.now, &mut h.out);
    let request = String::from_utf8(h.take_wire()).expect("utf-8");
    assert!(request.contains("Authorization: Bearer first\r\n"), "{request}");
    let key = request_key(request.as_bytes());
    h.input(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            handshake::accept_key(&key)
        )
        .as_bytes(),
    );
    h.input(&text(OPEN_2S_1S));
    assert_eq!(sent_texts(&mut h), [r#"40{"token":"first"}"#]);
    // The next attempt reads the file again; one that cannot be read fails it.
    h.s.stop(h.now, &mut h.out);
    let mut h2 = Harness::new(TargetSpec::for_test(Scheme::Ws), Mode::Persistent);
    h2.s.start(h2.now, &mut h2.out);
    h2.s.handle_secrets(Err("cannot read secret file /run/t: gone".into()), h2.now, &mut h2.out);
    assert_eq!(h2.failures(), [FailureReason::AppHandshake]);
    assert_eq!(h2.s.phase(), Phase::Backoff);
}
