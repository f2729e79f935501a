//! The floor for any RTT measurement here: a 1-byte TCP round trip over
//! loopback between two threads with blocking sockets. Run it under
//! `taskset -c 0` for both ends on one CPU.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

fn main() -> std::io::Result<()> {
    const WARMUP: usize = 2_000;
    const ROUNDS: usize = 20_000;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).is_ok() {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut b = [7u8; 1];
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        if i >= WARMUP {
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    drop(c);
    let _ = server.join();
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize] as f64 / 1e3;
    println!(
        "{{\"p50_us\": {:.1}, \"p99_us\": {:.1}, \"rounds\": {ROUNDS}}}",
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}
