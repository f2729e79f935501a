//! The session through a proxy: what it resolves, what it says to the
//! proxy, and how each way of failing is reported.

use super::proxy::{ProxyKind, ProxySpec};
use super::spec::*;
use super::tests::{request_key, upgrade_response, Harness, MS};
use super::*;

fn via(kind: ProxyKind, scheme: Scheme) -> Harness {
    let spec = TargetSpec {
        proxy: Some(ProxySpec {
            kind,
            host: "proxy.test".into(),
            port: 3128,
            auth: None,
        }),
        ..TargetSpec::for_test(scheme)
    };
    Harness::new(spec, Mode::Persistent)
}

const PROXY: &str = "127.0.0.9:3128";

/// Start → the proxy's name resolved → connected to it; returns what was
/// said to the proxy.
fn reach_proxy(h: &mut Harness) -> Vec<u8> {
    h.s.start(h.now, &mut h.out);
    let proxy: SocketAddr = PROXY.parse().unwrap();
    if h.s.spec().proxy.as_ref().is_some_and(|p| p.resolves_locally()) {
        assert_eq!(
            h.take_io(),
            vec![IoRequest::Resolve {
                host: "example.test".into(),
                port: 80
            }]
        );
        h.s.handle_resolved(Ok(vec!["10.0.0.7:80".parse().unwrap()]), h.now, &mut h.out);
    }
    assert_eq!(
        h.take_io(),
        vec![IoRequest::Resolve {
            host: "proxy.test".into(),
            port: 3128
        }]
    );
    h.s.handle_resolved(Ok(vec![proxy]), h.now, &mut h.out);
    assert_eq!(h.take_io(), vec![IoRequest::Connect(proxy)]);
    h.advance(MS);
    h.s.handle_connected(Ok(()), h.now, &mut h.out);
    h.take_wire()
}

#[test]
fn ws_through_an_http_proxy_upgrades_inside_the_tunnel_and_times_it() {
    let mut h = via(ProxyKind::Http, Scheme::Ws);
    let said = reach_proxy(&mut h);
    assert!(said.starts_with(b"CONNECT example.test:80 HTTP/1.1\r\n"));
    assert_eq!(h.s.phase(), Phase::Connecting, "no upgrade before the tunnel is up");
    h.advance(3 * MS);
    h.input(b"HTTP/1.1 200 Connection established\r\n\r\n");
    assert_eq!(h.s.phase(), Phase::Handshaking);
    let request = h.take_wire();
    assert!(
        request.starts_with(b"GET / HTTP/1.1\r\n"),
        "{}",
        String::from_utf8_lossy(&request)
    );
    h.advance(2 * MS);
    h.input(upgrade_response(&request_key(&request)).as_bytes());
    assert_eq!(h.s.phase(), Phase::Open);
    let opened = h.take_events().into_iter().find_map(|e| match e {
        SessionEvent::Opened {
            tcp, proxy, handshake, ..
        } => Some((tcp, proxy, handshake)),
        _ => None,
    });
    assert_eq!(opened, Some((MS, Some(3 * MS), Some(2 * MS))));
}

#[test]
fn tcp_through_socks5_resolves_the_target_here_and_keeps_bytes_that_follow_the_reply() {
    let spec = TargetSpec {
        probe: Some(Probe {
            send: b"PING\n".to_vec(),
            expect: b"PONG".to_vec(),
        }),
        ..TargetSpec::for_test(Scheme::Tcp)
    };
    let mut h = Harness::new(
        TargetSpec {
            proxy: Some(ProxySpec {
                kind: ProxyKind::Socks5,
                host: "proxy.test".into(),
                port: 3128,
                auth: None,
            }),
            ..spec
        },
        // One-shot: the first probe goes out as soon as the tunnel is up.
        Mode::OneShot { pings: 1 },
    );
    assert_eq!(reach_proxy(&mut h), [5, 1, 0]);
    h.input(&[5, 0]);
    assert_eq!(h.take_wire(), [5, 1, 0, 1, 10, 0, 0, 7, 0, 80]);
    h.advance(MS);
    h.input(&[5, 0, 0, 1, 127, 0, 0, 9, 0x0c, 0x38]);
    assert_eq!(h.s.phase(), Phase::Open);
    h.tick();
    assert_eq!(h.take_wire(), b"PING\n");
    h.advance(MS);
    h.input(b"PONG\n");
    assert!(h.take_events().iter().any(|e| matches!(e, SessionEvent::Pong { .. })));
}

#[test]
fn the_targets_bytes_that_come_with_the_proxys_answer_are_read_as_the_targets() {
    let mut h = via(ProxyKind::Http, Scheme::Ws);
    reach_proxy(&mut h);
    h.input(b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 503 Service Unavailable\r\n\r\n");
    let (reason, detail) = h.connect_failure();
    assert_eq!(reason, FailureReason::HandshakeStatus, "{detail}");
    assert!(detail.contains("503"), "{detail}");
}

#[test]
fn proxy_refusals_and_silence_are_proxy_failures_with_the_proxys_words() {
    let mut h = via(ProxyKind::Http, Scheme::Ws);
    reach_proxy(&mut h);
    h.input(b"HTTP/1.1 403 Forbidden\r\n\r\n");
    let (reason, detail) = h.connect_failure();
    assert_eq!(reason, FailureReason::Proxy);
    assert_eq!(
        detail,
        "proxy http://proxy.test:3128: answered CONNECT with \"HTTP/1.1 403 Forbidden\""
    );
    assert_eq!(h.s.phase(), Phase::Backoff);
    assert!(h.take_io().iter().any(|r| matches!(r, IoRequest::CloseSocket { .. })));

    let mut h = via(ProxyKind::Socks5h, Scheme::Ws);
    reach_proxy(&mut h);
    h.s.handle_eof(h.now, &mut h.out);
    let (reason, detail) = h.connect_failure();
    assert_eq!(reason, FailureReason::Proxy);
    assert!(
        detail.contains("closed the connection before the tunnel was up"),
        "{detail}"
    );

    let mut h = via(ProxyKind::Http, Scheme::Wss);
    reach_proxy(&mut h);
    h.advance(Timing::default().connect_timeout);
    h.tick();
    let (reason, detail) = h.connect_failure();
    assert_eq!(reason, FailureReason::Proxy);
    assert!(detail.contains("no tunnel within 5s"), "{detail}");
}

#[test]
fn failing_to_reach_the_proxy_is_proxy_but_the_targets_own_name_is_dns() {
    let mut h = via(ProxyKind::Http, Scheme::Ws);
    h.s.start(h.now, &mut h.out);
    h.take_io();
    h.s.handle_resolved(Err(io::Error::other("no such host")), h.now, &mut h.out);
    let (reason, detail) = h.connect_failure();
    assert_eq!(reason, FailureReason::Proxy);
    assert!(
        detail.contains("cannot resolve proxy http://proxy.test:3128"),
        "{detail}"
    );

    let mut h = via(ProxyKind::Http, Scheme::Ws);
    h.s.start(h.now, &mut h.out);
    h.take_io();
    h.s.handle_resolved(Ok(vec![PROXY.parse().unwrap()]), h.now, &mut h.out);
    h.take_io();
    h.s.handle_connected(
        Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
        h.now,
        &mut h.out,
    );
    let (reason, detail) = h.connect_failure();
    assert_eq!(reason, FailureReason::Proxy);
    assert!(detail.starts_with("proxy http://proxy.test:3128: refused:"), "{detail}");

    // Out of descriptors is ours, proxy or not.
    let mut h = via(ProxyKind::Http, Scheme::Ws);
    h.s.start(h.now, &mut h.out);
    h.take_io();
    h.s.handle_resolved(Ok(vec![PROXY.parse().unwrap()]), h.now, &mut h.out);
    h.take_io();
    h.s.handle_connected(Err(io::Error::from_raw_os_error(libc::EMFILE)), h.now, &mut h.out);
    assert_eq!(h.connect_failure().0, FailureReason::FdLimit);

    let mut h = via(ProxyKind::Socks5, Scheme::Ws);
    h.s.start(h.now, &mut h.out);
    h.take_io();
    h.s.handle_resolved(Err(io::Error::other("NXDOMAIN")), h.now, &mut h.out);
    assert_eq!(h.connect_failure().0, FailureReason::Dns);
}
