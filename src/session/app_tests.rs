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
    let failed = h.take_events().into_iter().find_map(|e| match e {
        SessionEvent::ConnectFailed { reason, detail } => Some((reason, detail)),
        _ => None,
    });
    let (reason, detail) = failed.expect("a connect failure");
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
    let failed = h.take_events().into_iter().find_map(|e| match e {
        SessionEvent::ConnectFailed { reason, detail } => Some((reason, detail)),
        _ => None,
    });
    let (reason, detail) = failed.expect("a connect failure");
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
    let failed = h.take_events().into_iter().find_map(|e| match e {
        SessionEvent::ConnectFailed { reason, detail } => Some((reason, detail)),
        _ => None,
    });
    let (reason, detail) = failed.expect("a connect failure");
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
    assert!(h.take_events().is_empty(), "a wrong number is no answer");
    h.advance(MS);
    h.input(&text(r#"{"op":"pong","id":1}"#));
    assert_eq!(
        h.take_events(),
        [SessionEvent::Pong {
            rtt: 2 * MS,
            probe: ProbeKind::App
        }]
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
