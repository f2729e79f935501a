//! A user-space delay proxy (tc netem is not available here): every chunk
//! is forwarded `delay` after it arrived, in both directions.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Listens on an ephemeral loopback port and forwards to `upstream` with
/// `delay` added each way. Returns the proxy's port.
pub fn proxy(upstream: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            pipe(
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
                delay,
            );
            pipe(server, client, delay);
        }
    });
    port
}

/// Chunks waiting for their release time, and a signal when one arrives.
type DelayQueue = Arc<(Mutex<VecDeque<(Instant, Vec<u8>)>>, Condvar)>;

/// Copies `from` to `to`, holding each chunk for `delay`.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let queue: DelayQueue = Arc::default();
    let q = Arc::clone(&queue);
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            let (lock, cv) = &*q;
            lock.lock()
                .unwrap()
                .push_back((Instant::now() + delay, buf[..n].to_vec()));
            cv.notify_one();
            if n == 0 {
                return;
            }
        }
    });
    thread::spawn(move || loop {
        let (lock, cv) = &*queue;
        let mut q = lock.lock().unwrap();
        while q.is_empty() {
            q = cv.wait(q).unwrap();
        }
        let (due, data) = q.pop_front().unwrap();
        drop(q);
        let wait = due.saturating_duration_since(Instant::now());
        thread::sleep(wait);
        if data.is_empty() {
            let _ = to.shutdown(std::net::Shutdown::Write);
            return;
        }
        if to.write_all(&data).is_err() {
            return;
        }
    });
}
