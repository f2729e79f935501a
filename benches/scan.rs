//! Cost of reading the host TCP table, per socket, at about 2k, 20k and 100k
//! sockets: sockpulse's filtered, full netlink and /proc paths against
//! `ss -tan` and node_exporter's tcpstat collector, measured side by side in
//! one run.
//!
//! A process may hold at most 20,000 files here, so the table is filled by
//! helper processes (this binary re-executed) that each hold up to 9,000
//! loopback connections, both ends: 18,000 sockets. One connection in 20
//! is half-closed (one end CLOSE_WAIT, the other FIN_WAIT2): 95 % of the
//! table is ESTABLISHED, as on a busy server. Run via
//! `bash scripts/bench-scan.sh`, which raises the fd limit and finds
//! node_exporter.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sockpulse::kernel::scan::{self, Focus};
use sockpulse::kernel::{netlink, snmp, table};

const PAIRS_PER_HELPER: usize = 9_000;

fn helper(pairs: usize) -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut keep = Vec::with_capacity(2 * pairs);
    for i in 0..pairs {
        let client = TcpStream::connect(addr)?;
        if i % 20 == 0 {
            client.shutdown(std::net::Shutdown::Write)?;
        }
        keep.push(client);
        keep.push(listener.accept()?.0);
    }
    println!("READY");
    std::io::stdout().flush()?;
    // Hold everything until the parent closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(keep);
    Ok(())
}

fn spawn_helper(pairs: usize) -> Child {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .env("SCAN_BENCH_HELPER", pairs.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("helper output");
    assert_eq!(line.trim(), "READY", "helper failed (raise ulimit -n?)");
    child
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<F: FnMut()>(reps: usize, mut f: F) -> Duration {
    f(); // warm caches once
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn scrape(addr: &str) -> usize {
    let mut s = TcpStream::connect(addr).expect("node_exporter");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read");
    assert!(body.contains("node_tcp_connection_states"), "tcpstat collector missing");
    body.len()
}

fn main() {
    if let Ok(pairs) = std::env::var("SCAN_BENCH_HELPER") {
        if let Err(e) = helper(pairs.parse().expect("pairs")) {
            eprintln!("helper: {e}");
            std::process::exit(1);
        }
        return;
    }
    let targets: Vec<usize> = std::env::args()
        .skip(1)
        .find_map(|a| {
            a.strip_prefix("--sizes=")
                .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        })
        .unwrap_or_else(|| vec![2_000, 20_000, 100_000]);
    let node_exporter = std::env::var("NODE_EXPORTER").ok();
    let mut exporter: Option<(Child, String)> = node_exporter.map(|bin| {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                &format!("--web.listen-address={addr}"),
                "--collector.disable-defaults",
                "--collector.tcpstat",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node_exporter");
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < end, "node_exporter did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        (child, addr)
    });

    let counts = snmp::calibrate().expect("CurrEstab calibrated");
    // What the agent lists between listings of its own sockets: every
    // socket not ESTABLISHED; with a watched port (none of the table on
    // it), a second, filtered walk for the ESTABLISHED ones on it.
    let focus = Focus::default();
    let watching = Focus {
        watch_ports: vec![9],
        own_ports: Vec::new(),
    };
    let mut helpers: Vec<Child> = Vec::new();
    println!(
        "| sockets in table | filtered (sockpulse) | filtered, 1 watched port | full netlink (sockpulse) | \
         /proc via procfs (sockpulse) | ss -tan | node_exporter tcpstat | filtered vs ss | filtered vs node_exporter |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for target in targets {
        loop {
            let now = netlink::read(netlink::ALL_STATES).expect("netlink").len();
            if now + 100 >= target {
                break;
            }
            let pairs = ((target - now) / 2).clamp(1, PAIRS_PER_HELPER);
            helpers.push(spawn_helper(pairs));
        }
        let n = netlink::read(netlink::ALL_STATES).expect("netlink").len();
        let reps = if n > 50_000 { 7 } else { 15 };
        let filtered_table = scan::read_filtered(&focus, counts).expect("filtered");
        let listed = filtered_table.entries.len() as u64;
        let counted = listed + filtered_table.unlisted_established;
        if counted != n as u64 {
            // Other sockets of the host came or went between the reads.
            eprintln!("note: the filtered read counted {counted} sockets, the full one {n}");
        }
        let fl = time(reps, || {
            let t = scan::read_filtered(&focus, counts).expect("filtered");
            std::hint::black_box(t);
        });
        let fw = time(reps, || {
            let t = scan::read_filtered(&watching, counts).expect("filtered");
            std::hint::black_box(t);
        });
        let nl = time(reps, || {
            let t = netlink::read(netlink::ALL_STATES).expect("netlink");
            std::hint::black_box(t);
        });
        let pf = time(reps, || {
            let t = table::read(table::Namespace::Own).expect("procfs");
            std::hint::black_box(t);
        });
        let ss = time(reps, || {
            let out = Command::new("ss")
                .arg("-tan")
                .stdout(Stdio::null())
                .status()
                .expect("ss");
            assert!(out.success());
        });
        let ne = exporter.as_ref().map(|(_, addr)| {
            time(reps, || {
                std::hint::black_box(scrape(addr));
            })
        });
        let cell = |d: Duration| {
            format!(
                "{:.2} ms ({:.2} µs/socket)",
                d.as_secs_f64() * 1e3,
                d.as_secs_f64() * 1e6 / n as f64
            )
        };
        let ratio = |d: Option<Duration>| {
            d.map(|d| format!("{:.1}×", d.as_secs_f64() / fl.as_secs_f64()))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "| {n} | {} ({listed} listed) | {} | {} | {} | {} | {} | {} | {} |",
            cell(fl),
            cell(fw),
            cell(nl),
            cell(pf),
            cell(ss),
            ne.map(cell).unwrap_or_else(|| "not installed".into()),
            ratio(Some(ss)),
            ratio(ne),
        );
    }
    for mut h in helpers {
        drop(h.stdin.take());
        let _ = h.wait();
    }
    if let Some((mut c, _)) = exporter.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}
