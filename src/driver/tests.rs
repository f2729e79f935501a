//! Driver tests against std-thread loopback servers: the loop's own timing
//! is what they check, so the servers must be ones whose slowness the test
//! controls.

use std::io::Write;
use std::time::Duration;

use super::*;
use crate::clock::Instant;
use crate::session::SessionEvent;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_driver_pins_every_session_to_its_probe_anchor() {
    struct Quiet;
    impl Observer for Quiet {
        fn on_event(&mut self, _: &EventContext<'_>, _: &SessionEvent) {}
    }
    let text = "[[target]]\nurl = \"ws://a.test/\"\nconnections = 3\n\
                [[target]]\nurl = \"ws://b.test/\"\nconnections = 2\n";
    let cfg = crate::config::parse(text, "t", &[], &|_| None).expect("valid config");
    let driver = Driver::new(&cfg.targets, Mode::Persistent, Quiet).expect("driver");
    let anchors: Vec<_> = driver.slots.iter().map(|s| s.session.probe_anchor()).collect();
    let default_interval = Duration::from_secs(10);
    let expected: Vec<_> = [(0, 0, 3), (0, 1, 3), (0, 2, 3), (1, 0, 2), (1, 1, 2)]
        .into_iter()
        .map(|(target, ordinal, n)| {
            let id = crate::targets::TargetId::from_index(target).expect("small index");
            Some(pacing::probe_anchor(driver.epoch, default_interval, id, ordinal, n))
        })
        .collect();
    assert_eq!(anchors, expected);
}

/// A loopback server that runs `serve` on each connection in its own thread.
fn loopback_server(serve: fn(std::net::TcpStream)) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

fn echo_server() -> u16 {
    loopback_server(|mut stream| {
        if let Ok(mut reader) = stream.try_clone() {
            let _ = std::io::copy(&mut reader, &mut stream);
        }
    })
}

#[test]
fn a_probe_is_timed_from_its_own_turn_not_from_the_start_of_the_wake() {
    let echo = echo_server();
    // A byte every millisecond for a few seconds: every wake has a read
    // to do before it gets to the timers.
    let chatty = loopback_server(|mut stream| {
        for _ in 0..5_000 {
            if stream.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(ms(1));
        }
    });
    // Every read makes its wake slow, so a probe sent after it would
    // carry that delay in its RTT if timed from the start of the wake.
    struct SlowReads(Vec<Duration>);
    impl Observer for SlowReads {
        fn on_event(&mut self, _: &EventContext<'_>, event: &SessionEvent) {
            if let SessionEvent::Pong { rtt, .. } = event {
                self.0.push(*rtt);
            }
        }
        fn on_read_delay(&mut self, _: Duration) {
            std::thread::sleep(ms(20));
        }
    }
    let text = format!(
        "[[target]]\nurl = \"tcp://127.0.0.1:{chatty}\"\n\
         [[target]]\nurl = \"tcp://127.0.0.1:{echo}\"\nconnections = 20\nping_interval = \"1s\"\n\
         pong_timeout = \"500ms\"\nprobe = {{ send = \"p\", expect = \"p\" }}\n"
    );
    let cfg = crate::config::parse(&text, "t", &[], &|_| None).expect("valid config");
    let mut driver = Driver::new(&cfg.targets, Mode::Persistent, SlowReads(Vec::new())).expect("driver");
    driver.run(Some(Instant::now() + ms(3_000)), ms(500)).expect("run");
    let mut rtts = std::mem::take(&mut driver.observer.0);
    assert!(rtts.len() >= 20, "only {} answers: {rtts:?}", rtts.len());
    rtts.sort();
    // A loopback echo answers in well under a millisecond; a probe timed
    // from the start of its wake would include at least one 20 ms read.
    let median = rtts[rtts.len() / 2];
    assert!(median < ms(10), "median RTT {median:?} of {rtts:?}");
}

#[test]
fn gauges_are_compact_and_on_the_clock_of_the_tick() {
    assert_eq!(std::mem::size_of::<SessionGauge>(), 24);
    let echo = echo_server();
    // The last tick's view: (open, pong age, message age) per session.
    struct LastTick(Vec<(bool, Option<u64>, Option<u64>)>);
    impl Observer for LastTick {
        fn on_event(&mut self, _: &EventContext<'_>, _: &SessionEvent) {}
        fn on_tick(&mut self, sessions: &[SessionGauge], _now: Instant, now_ms: u64) {
            let age = |t: Option<u64>| t.map(|t| now_ms - t);
            self.0 = sessions
                .iter()
                .map(|g| (g.open(), age(g.last_pong_ms()), age(g.last_message_ms())))
                .collect();
        }
    }
    let text = format!(
        "[[target]]\nurl = \"tcp://127.0.0.1:{echo}\"\nconnections = 3\nping_interval = \"300ms\"\n\
         pong_timeout = \"200ms\"\nprobe = {{ send = \"p\", expect = \"p\" }}\n"
    );
    let cfg = crate::config::parse(&text, "t", &[], &|_| None).expect("valid config");
    let mut driver = Driver::new(&cfg.targets, Mode::Persistent, LastTick(Vec::new())).expect("driver");
    // The tick at about 2 s sees sessions that have answered for a while.
    driver.run(Some(Instant::now() + ms(2_200)), ms(500)).expect("run");
    let seen = &driver.observer.0;
    assert_eq!(seen.len(), 3, "{seen:?}");
    for &(open, pong_age, message_age) in seen {
        assert!(open, "{seen:?}");
        // Answered every 300 ms: the last pong (and byte) is younger than that and some slack.
        assert!(pong_age.is_some_and(|a| a < 500), "{seen:?}");
        assert!(message_age.is_some_and(|a| a < 500), "{seen:?}");
    }
}

#[test]
fn a_target_never_has_more_than_max_connecting_sessions_establishing() {
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // Accepts and never answers the upgrade; counts what it holds at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (accepted, held, most) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (a, h, m) = (Arc::clone(&accepted), Arc::clone(&held), Arc::clone(&most));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            a.fetch_add(1, Ordering::SeqCst);
            let now = h.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                let _ = stream.read_to_end(&mut Vec::new());
                h.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    struct Quiet;
    impl Observer for Quiet {
        fn on_event(&mut self, _: &EventContext<'_>, _: &SessionEvent) {}
    }
    let text = format!(
        "[[target]]\nurl = \"ws://127.0.0.1:{port}/\"\nconnections = 20\nmax_connecting = 4\n\
         handshake_timeout = \"500ms\"\nbackoff = {{ min = \"100ms\", max = \"100ms\" }}\n"
    );
    let cfg = crate::config::parse(&text, "t", &[], &|_| None).expect("valid config");
    let mut driver = Driver::new(&cfg.targets, Mode::Persistent, Quiet).expect("driver");
    driver.run(Some(Instant::now() + ms(300)), ms(100)).expect("run");
    assert_eq!(accepted.load(Ordering::SeqCst), 4, "four at once; sixteen wait");
    drop(driver);
    let deadline = Instant::now() + ms(2_000);
    while held.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(ms(10));
    }
    accepted.store(0, Ordering::SeqCst);
    most.store(0, Ordering::SeqCst);
    let mut driver = Driver::new(&cfg.targets, Mode::Persistent, Quiet).expect("driver");
    // Attempts time out every 500 ms and free the gate for the next ones.
    driver.run(Some(Instant::now() + ms(1_800)), ms(100)).expect("run");
    assert!(
        accepted.load(Ordering::SeqCst) >= 12,
        "{} attempts",
        accepted.load(Ordering::SeqCst)
    );
    assert_eq!(most.load(Ordering::SeqCst), 4, "never more than four at once");
}
