//! Runs Autobahn TestSuite's client cases against sockpulse's session core.
//!
//! The fuzzingserver plays a WebSocket server and judges the client: for each
//! case it opens `/runCase?case=N&agent=AGENT`, sends frames (fragmented,
//! interleaved with pings, invalid UTF-8, bad close codes, ...) and expects
//! every data message echoed back and the protocol obeyed. Echoing is the only
//! thing added here (`WsOptions::echo`); framing, ping answers, UTF-8 checks
//! and the close handshake are the agent's own code. A plain blocking loop
//! drives the core: the driver is not under test, RFC 6455 handling is.
//!
//! usage: autobahn_client ws://HOST:PORT AGENT FIRST_CASE LAST_CASE
//! Prints one line per case: `case N <reason> <detail>`.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sockpulse::clock::Instant;
use sockpulse::config;
use sockpulse::session::spec::TargetSpec;
use sockpulse::session::{IoRequest, Mode, Outbox, Session, SessionEvent};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, agent, first, last] = args.as_slice() else {
        eprintln!("usage: autobahn_client ws://HOST:PORT AGENT FIRST_CASE LAST_CASE");
        return ExitCode::from(2);
    };
    let (Ok(first), Ok(last)) = (first.parse::<u32>(), last.parse::<u32>()) else {
        eprintln!("case numbers must be integers");
        return ExitCode::from(2);
    };
    for case in first..=last {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let spec = match case_spec(&url) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        println!("case {case} {}", run_case(spec, u64::from(case)));
    }
    ExitCode::SUCCESS
}

fn case_spec(url: &str) -> Result<Arc<TargetSpec>, String> {
    // Autobahn's largest messages in cases 1-7 and 10 are 64 KiB.
    let text = format!(
        "[[target]]\nurl = {url:?}\nping_interval = \"off\"\nidle_timeout = \"off\"\n\
         handshake_timeout = \"10s\"\nclose_timeout = \"5s\"\nmax_message_size = 16777216\n"
    );
    let cfg = config::parse(&text, "autobahn", &[], &|_| None).map_err(|e| e.to_string())?;
    let spec = cfg.targets.first().ok_or("no target")?;
    let mut spec = TargetSpec::clone(spec);
    spec.ws.echo = true;
    Ok(Arc::new(spec))
}

/// Drives one session until its first disconnect or failure; returns its reason.
fn run_case(spec: Arc<TargetSpec>, seed: u64) -> String {
    let mut session = Session::new(spec, Mode::Persistent, seed);
    let mut out = Outbox::default();
    let mut stream: Option<TcpStream> = None;
    let mut verdict: Option<String> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let give_up = Instant::now() + Duration::from_secs(60);
    session.start(Instant::now(), &mut out);
    loop {
        // Requests may lead to more requests (resolve -> connect): loop until quiet.
        while !out.io.is_empty() {
            for req in std::mem::take(&mut out.io) {
                let now = Instant::now();
                match req {
                    IoRequest::Resolve { host, port } => {
                        let addrs = (host.as_str(), port).to_socket_addrs().map(|a| a.collect());
                        session.handle_resolved(addrs, now, &mut out);
                    }
                    IoRequest::Connect(addr) => {
                        let result = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map(|s| {
                            let _ = s.set_nodelay(true);
                            stream = Some(s);
                        });
                        session.handle_connected(result, Instant::now(), &mut out);
                    }
                    IoRequest::CloseSocket { farewell } => {
                        if let Some(mut s) = stream.take() {
                            let _ = s.write_all(&farewell);
                            let _ = s.shutdown(std::net::Shutdown::Write);
                            // Let the server close first, as RFC 6455 asks of a client.
                            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                        }
                    }
                }
            }
        }
        for ev in out.events.drain(..) {
            match ev {
                SessionEvent::Disconnected {
                    reason,
                    detail,
                    close_code,
                    ..
                } => {
                    let code = close_code.map(|c| format!(" code={c}")).unwrap_or_default();
                    verdict.get_or_insert(format!("{}{code} {detail}", reason.as_str()));
                }
                SessionEvent::ConnectFailed { reason, detail } => {
                    verdict.get_or_insert(format!("{} {detail}", reason.as_str()));
                }
                _ => {}
            }
        }
        if let Some(v) = verdict {
            return v;
        }
        if Instant::now() > give_up {
            return "stuck: no verdict within 60 s".into();
        }
        let Some(s) = stream.as_mut() else {
            // Between requests (resolving): just tick.
            session.handle_timeout(Instant::now(), &mut out);
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let pending = session.pending_output().len();
        if pending > 0 {
            match s.write_all(session.pending_output()) {
                Ok(()) => session.consume_output(pending),
                Err(e) => session.handle_io_error(e, Instant::now(), &mut out),
            }
            continue;
        }
        let wait = session
            .poll_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        let _ = s.set_read_timeout(Some(wait));
        match s.read(&mut buf) {
            Ok(0) => session.handle_eof(Instant::now(), &mut out),
            Ok(n) => session.handle_input(&buf[..n], Instant::now(), &mut out),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                session.handle_timeout(Instant::now(), &mut out)
            }
            Err(e) => session.handle_io_error(e, Instant::now(), &mut out),
        }
    }
}
