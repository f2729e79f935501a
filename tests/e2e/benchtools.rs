//! The C programs behind the README's benchmark figures: they build
//! warning-free and measure what they say they measure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::tempfile_dir::TempDir;

fn compile(source: &str, dir: &Path) -> PathBuf {
    let out = dir.join(Path::new(source).file_stem().expect("a file name"));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc runs");
    assert!(status.success(), "{source} does not build warning-free");
    out
}

/// Runs `program` with `input` on stdin; returns (exit code, stdout, stderr).
fn run_with_input(program: &Path, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write trace");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_wake_page_counter_cuts_a_lackey_trace_at_every_wait() {
    let dir = TempDir::new("wake-pages");
    let counter = compile("benches/wake_pages.c", dir.path());
    // lackey's format: "I  addr,size" for code, " L|S|M addr,size" for data;
    // its own messages start with "==".
    let trace = "==7== Lackey, an example Valgrind tool\n\
                 I  00401000,5\n\
                 I  00402000,4\n\
                 I  00402004,3\n\
                 I  00402040,4\n\
                 I  00409ff0,4\n\
                 \x20L 1ffeffd000,8\n\
                 \x20S 1ffeffd008,8\n\
                 \x20M 1ffeffe000,4\n\
                 \x20L 00604000,8\n\
                 I  00401000,5\n\
                 I  00402000,4\n\
                 I  00401000,5\n";
    let (code, out, err) = run_with_input(&counter, &["401000"], trace);
    assert_eq!(code, 0, "{err}");
    // Wake 1: code in pages 0x402 and 0x409 (lines 0x402000, 0x402040,
    // 0x409fc0); data in 0x1ffeffd (one line), 0x1ffeffe and 0x604. Wake 2:
    // one line of code, no data. Before the first marker nothing counts.
    assert_eq!(out, "1 2 3 3 3\n2 1 1 0 0\n");

    let (code, _, err) = run_with_input(&counter, &["dead"], trace);
    assert_eq!(code, 1);
    assert!(err.contains("never ran"), "{err}");
}

#[test]
fn the_floor_checks_its_footprint_settings_and_runs_with_them() {
    let dir = TempDir::new("floor");
    let floor = compile("benches/floor.c", dir.path());
    let rtt = dir.path().join("rtt");
    let rtt_arg = rtt.to_str().expect("utf-8 path");
    // No sessions: only the settings are read before it waits.
    let start = |lines: &str, pages: &str| {
        Command::new(&floor)
            .args([rtt_arg, "10", "5", "ws://127.0.0.1:9/:0"])
            .env("FLOOR_TOUCH_LINES", lines)
            .env("FLOOR_TOUCH_PAGES", pages)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn floor")
    };

    // 300 lines cannot fit in 4 pages of 64 lines, nor in more pages than lines.
    for (lines, pages) in [("300", "4"), ("10", "11"), ("10", "0")] {
        let out = start(lines, pages).wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(2), "{lines}@{pages} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("FLOOR_TOUCH_PAGES"),
            "{lines}@{pages}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // 300 lines in 5 pages is fine: it keeps running until told to stop.
    let mut child = start("300", "5");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the floor exited on valid settings"
    );
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the floor ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(rtt.exists(), "no RTT file written on SIGTERM");
}
