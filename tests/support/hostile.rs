//! A small scriptable hostile WebSocket server: each behaviour answers the
//! upgrade (or doesn't) in one broken way.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// 101 with a wrong Sec-WebSocket-Accept.
    BadAccept,
    /// Bytes that are not HTTP at all.
    Garbage,
    /// 101 without the Upgrade header.
    NoUpgradeHeader,
    /// Reads the request and never answers.
    Silent,
    /// A valid handshake, then a frame announcing a 2^63-byte payload.
    HugeFrame,
    /// A valid handshake, then a masked frame (servers must not mask).
    MaskedFrame,
    /// A valid handshake, then an endless flood of pings.
    PingFlood,
    /// This answer instead of a 101 (non-101 status, ...).
    Answer(&'static str),
    /// A valid 101 with one more header line (an unrequested subprotocol
    /// or extension, ...).
    Extra101Header(&'static str),
    /// A 101 whose header section never ends: 64 KiB of headers.
    EndlessHeaders,
    /// A valid 101 sent one byte every 200 ms.
    Drip,
    /// A valid handshake, then these bytes.
    Frames(&'static [u8]),
    /// A valid handshake, then pongs nobody asked for, every 50 ms for 3 s;
    /// the client's own pings are answered.
    UnsolicitedPongs,
    /// A valid handshake, answers pings for a while, then sends a close frame (1001).
    CloseFrameAfter(u64),
    /// The same, but then closes the TCP connection without a close frame.
    FinAfter(u64),
    /// The same, but then resets the connection.
    RstAfter(u64),
}

/// When each server acted (sent the close, FIN or RST, or accepted a
/// connection it will never answer), by port: fault-injection times.
static ACTIONS: std::sync::Mutex<Vec<(u16, std::time::SystemTime)>> = std::sync::Mutex::new(Vec::new());

fn acted(port: u16) {
    if let Ok(mut a) = ACTIONS.lock() {
        a.push((port, std::time::SystemTime::now()));
    }
}

/// The first time the server on `port` acted.
pub fn first_action(port: u16) -> Option<std::time::SystemTime> {
    ACTIONS.lock().ok()?.iter().find(|(p, _)| *p == port).map(|(_, t)| *t)
}

/// Serves `behaviour` on an ephemeral loopback port until the process ends.
pub fn serve(behaviour: Behaviour) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || handle(stream, behaviour, port));
        }
    });
    port
}

fn read_request(s: &mut TcpStream) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 16 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .map(|k| k.trim().to_string())
}

fn good_101(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        sockpulse::session::handshake::accept_key(key)
    )
}

/// Answers the client's (masked) pings with pongs until `d` has passed.
fn answer_pings_for(s: &mut TcpStream, d: Duration) {
    let end = std::time::Instant::now() + d;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while std::time::Instant::now() < end {
        let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
        if let Ok(n) = s.read(&mut chunk) {
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        // Frames of up to 125 bytes, masked: 2 + 4 + len.
        while buf.len() >= 6 && buf.len() >= 6 + usize::from(buf[1] & 0x7f) {
            let len = usize::from(buf[1] & 0x7f);
            let mask = [buf[2], buf[3], buf[4], buf[5]];
            let payload: Vec<u8> = buf[6..6 + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            if buf[0] & 0x0f == 0x9 {
                let mut pong = vec![0x8A, len as u8];
                pong.extend_from_slice(&payload);
                let _ = s.write_all(&pong);
            }
            buf.drain(..6 + len);
        }
    }
}

fn handle(mut s: TcpStream, behaviour: Behaviour, port: u16) {
    let Some(key) = read_request(&mut s) else { return };
    let _ = match behaviour {
        Behaviour::BadAccept => s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: dGhpcyBpcyB3cm9uZw==\r\n\r\n",
        ),
        Behaviour::Garbage => s.write_all(b"\x00\x01\x02 SSH-2.0-nonsense\r\n\r\n"),
        Behaviour::NoUpgradeHeader => s.write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                sockpulse::session::handshake::accept_key(&key)
            )
            .as_bytes(),
        ),
        Behaviour::Silent => {
            acted(port);
            thread::sleep(Duration::from_secs(30));
            Ok(())
        }
        Behaviour::HugeFrame => {
            let mut out = good_101(&key).into_bytes();
            out.extend_from_slice(&[0x82, 127]);
            out.extend_from_slice(&(1u64 << 63).to_be_bytes());
            s.write_all(&out)
        }
        Behaviour::MaskedFrame => {
            let mut out = good_101(&key).into_bytes();
            out.extend_from_slice(&[0x81, 0x81, 1, 2, 3, 4, b'a' ^ 1]);
            s.write_all(&out)
        }
        Behaviour::CloseFrameAfter(ms) | Behaviour::FinAfter(ms) | Behaviour::RstAfter(ms) => {
            let _ = s.write_all(good_101(&key).as_bytes());
            answer_pings_for(&mut s, Duration::from_millis(ms));
            if !matches!(behaviour, Behaviour::RstAfter(_)) {
                acted(port);
            }
            match behaviour {
                Behaviour::CloseFrameAfter(_) => {
                    let _ = s.write_all(&[0x88, 2, 0x03, 0xE9]); // close, 1001 going away
                    thread::sleep(Duration::from_secs(3));
                }
                Behaviour::RstAfter(_) => {
                    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    acted(port);
                }
                _ => {}
            }
            return; // dropping the socket sends the FIN (or, with linger 0, the RST)
        }
        Behaviour::Answer(text) => s.write_all(text.as_bytes()),
        Behaviour::Extra101Header(line) => {
            let ok = good_101(&key);
            let with = format!("{}\r\n{line}\r\n\r\n", ok.trim_end_matches("\r\n"));
            s.write_all(with.as_bytes())
        }
        Behaviour::EndlessHeaders => {
            let mut out = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
            for i in 0..2048 {
                out.extend_from_slice(format!("X-Filler-{i:05}: {}\r\n", "f".repeat(16)).as_bytes());
            }
            s.write_all(&out)
        }
        Behaviour::Drip => {
            for b in good_101(&key).bytes() {
                if s.write_all(&[b]).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        }
        Behaviour::Frames(bytes) => {
            let mut out = good_101(&key).into_bytes();
            out.extend_from_slice(bytes);
            s.write_all(&out)
        }
        Behaviour::UnsolicitedPongs => {
            let _ = s.write_all(good_101(&key).as_bytes());
            for i in 0..60u8 {
                if s.write_all(&[0x8A, 3, b's', b'p', i]).is_err() {
                    break;
                }
                answer_pings_for(&mut s, Duration::from_millis(50));
            }
            Ok(())
        }
        Behaviour::PingFlood => {
            let _ = s.write_all(good_101(&key).as_bytes());
            s.set_write_timeout(Some(Duration::from_secs(2))).ok();
            // Bounded: about 8 MB of pings, or until the client goes away.
            let ping = [0x89u8, 4, b'f', b'l', b'o', b'o'];
            let burst: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 1000).collect();
            for _ in 0..1400 {
                if s.write_all(&burst).is_err() {
                    break;
                }
            }
            Ok(())
        }
    };
    // Keep the connection open a while so the client sees the content, not an EOF.
    thread::sleep(Duration::from_secs(3));
}
