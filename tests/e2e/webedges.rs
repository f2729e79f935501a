//! The HTTP endpoint at its edges, with the real binary: an echo client
//! that stops reading, an answer nobody reads, a full file table, a route
//! prefix of its own. Each must end one connection (or pause), never the
//! endpoint.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::support::*;

const T: Duration = Duration::from_secs(30);

/// A TCP connection to `addr` whose receive buffer is tiny, so what the
/// agent sends it piles up on the agent's side.
fn reluctant_reader(addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().expect("agent address");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect to agent");
    socket.into()
}

/// Reads up to the end of an HTTP answer head.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "answer head cut short ({other:?}): {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The agent's CPU time so far, in clock ticks (user + system).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

#[test]
fn an_echo_client_that_stops_reading_is_dropped_and_the_agent_stays_small() {
    let agent = Agent::start("");
    let pid = agent.proc.pid();
    let rss_before = proc_status_kib(pid, "VmRSS");
    let mut s = reluctant_reader(&agent.addr);
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        agent.addr
    )
    .expect("send upgrade");
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    // 60,000-byte binary messages (the echo takes up to 64 KiB), masked
    // with a zero key, sent and never read back: 16 MiB if nothing stops it.
    const PAYLOAD: usize = 60_000;
    let mut frame = vec![0x82, 0xFE, (PAYLOAD >> 8) as u8, PAYLOAD as u8, 0, 0, 0, 0];
    frame.resize(frame.len() + PAYLOAD, b'x');
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sent = 0usize;
    let ended = loop {
        if sent >= 16 << 20 {
            break None;
        }
        match s.write_all(&frame) {
            Ok(()) => sent += frame.len(),
            Err(e) => break Some(e),
        }
    };
    let e = ended.unwrap_or_else(|| panic!("16 MiB echoed to a client that reads nothing, and never dropped"));
    assert!(
        matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
        "the agent should end the connection, not stall it: {e} after {sent} bytes"
    );
    // Its queue is bounded (256 KiB) well before the 16 MiB.
    assert!(sent < 8 << 20, "dropped only after {sent} bytes");
    let grown = proc_status_kib(pid, "VmRSS").saturating_sub(rss_before);
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB for one echo client");
    assert_eq!(agent.get("/healthz").0, 200);
}

#[test]
fn an_answer_nobody_reads_is_dropped_after_the_write_timeout() {
    let agent = Agent::start("");
    let dropped = || {
        agent
            .metric(
                "sockpulse_http_connections_dropped_total",
                &[("reason", "write_timeout")],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(dropped(), 0.0);
    // 300 pipelined scrapes (several MiB of answers) on a connection that
    // never reads: the answers fill both sides' buffers and the agent's
    // write stalls.
    let mut s = reluctant_reader(&agent.addr);
    let requests = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", agent.addr).repeat(300);
    s.write_all(requests.as_bytes()).expect("send requests");
    let started = Instant::now();
    agent.wait_metric(
        "sockpulse_http_connections_dropped_total",
        &[("reason", "write_timeout")],
        T,
        |v| v == 1.0,
    );
    // The write timeout is 10 s: not before it.
    assert!(started.elapsed() >= Duration::from_secs(9), "{:?}", started.elapsed());
    // The connection is gone: what remains to read ends in EOF or a reset.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = vec![0u8; 64 * 1024];
    let end = loop {
        match s.read(&mut sink) {
            Ok(0) => break Ok(()),
            Ok(_) => continue,
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = end {
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    }
    assert_eq!(agent.get("/healthz").0, 200);
}

#[test]
fn at_the_file_limit_the_endpoint_pauses_accepting_rather_than_spin_and_then_serves_again() {
    // 128 descriptors and room for 1,000 connections: accept fails with
    // EMFILE long before the connection limit.
    let agent = Agent::start_with_nofile("[web]\nmax_connections = 1000\nheader_timeout = \"60s\"\n", 128);
    let pid = agent.proc.pid();
    let held: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&agent.addr).expect("the kernel queues the connection"))
        .collect();
    agent.wait_until_log("http accept failed", T);
    // A loop that retried at once would use a whole core; the pause leaves
    // it idle.
    let ticks_before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - ticks_before;
    assert!(used < 50, "{used} ticks of CPU in 2 s at the file limit");
    drop(held);
    let mut last = 0;
    assert!(
        wait_until(T, || {
            last = agent.get("/healthz").0;
            last == 200
        }),
        "still {last} after the connections closed:\n{}",
        agent.proc.output_text()
    );
    assert!(agent.proc.output_text().lines().all(|l| !l.contains("panicked")));
}

#[test]
fn a_route_prefix_alone_moves_every_route_and_the_page_links_stay_relative() {
    let agent = Agent::start_with("", &["--web.route-prefix", "monitor/"]);
    assert_eq!(agent.get("/monitor/healthz"), (200, "ok\n".to_string()));
    let (status, metrics) = agent.get("/monitor/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("sockpulse_build_info"), "{metrics}");
    let (status, page) = agent.get("/monitor/");
    assert_eq!(status, 200);
    assert!(page.contains("href=\"metrics\""), "{page}");
    assert_eq!(agent.get("/monitor/ws").0, 426);
    // Nothing answers outside it.
    for path in ["/metrics", "/healthz", "/"] {
        assert_eq!(agent.get(path).0, 404, "{path}");
    }

    // With an external URL, the route prefix still decides where it listens.
    let agent = Agent::start_with(
        "",
        &[
            "--web.external-url",
            "https://proxy.example/sockpulse/",
            "--web.route-prefix",
            "/",
        ],
    );
    assert_eq!(agent.get("/metrics").0, 200);
    assert_eq!(agent.get("/sockpulse/metrics").0, 404);
}

/// Upgrades a connection to the agent's `/ws` echo: the answer's status line.
fn echo_upgrade(addr: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).expect("connect to agent");
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("send upgrade");
    let head = read_head(&mut s);
    let status = head.lines().next().unwrap_or_default().to_string();
    (s, status)
}

#[test]
fn echo_clients_have_a_cap_of_their_own_and_a_scrape_still_gets_through() {
    // A target of its own (refused) so that the agent does not watch its
    // own echo, which would take one of the two places.
    let agent = Agent::start(&format!(
        "[web]\nmax_connections = 3\nmax_echo_clients = 2\n{}",
        one_target("refused", "ws://127.0.0.1:1/", "")
    ));
    let (first, status) = echo_upgrade(&agent.addr);
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    let (_second, status) = echo_upgrade(&agent.addr);
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    let (_third, status) = echo_upgrade(&agent.addr);
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    // Two of three connections are echoes; a scrape still gets the third.
    assert_eq!(
        agent.metric("sockpulse_http_connections_dropped_total", &[("reason", "echo_limit")]),
        Some(1.0)
    );
    // A closed echo frees its place.
    drop(first);
    let mut status = String::new();
    assert!(
        wait_until(T, || {
            status = echo_upgrade(&agent.addr).1;
            status.starts_with("HTTP/1.1 101")
        }),
        "{status}"
    );
}
