//! RFC 6455 client conformance: Autobahn TestSuite's fuzzingserver judges the
//! session core (through `examples/autobahn_client.rs`) on cases 1-7 and 10:
//! framing, pings, reserved bits and opcodes, fragmentation, UTF-8, close
//! handling, limits. Compression (12, 13) is not offered and performance (9)
//! is not a liveness concern. The case summary lands in
//! `target/autobahn/summary.md` (the README quotes it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::{self, tempfile_dir::TempDir, Proc};

/// Behaviours accepted of the client. NON-STRICT ("correct, but could fail
/// sooner", e.g. invalid UTF-8 noticed only at the end of a fragmented
/// message) is not: text is validated as it arrives.
const ACCEPTED: [&str; 2] = ["OK", "INFORMATIONAL"];

/// Whether this machine has a Python 2.7 at all (pyenv's or on PATH): the
/// suite needs one and no package registry here provides it.
fn python27_on_machine() -> bool {
    if support::which("python2.7").is_some() {
        return true;
    }
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    let Some(Ok(versions)) = root.map(|r| std::fs::read_dir(r.join("versions"))) else {
        return false;
    };
    versions
        .flatten()
        .any(|v| v.file_name().to_string_lossy().starts_with("2.7") && v.path().join("bin/python2.7").is_file())
}

fn wstest() -> Option<PathBuf> {
    // The issue asks for this run where Python 2.7 exists and a printed
    // reason elsewhere; where it exists, a missing install is a failure in CI.
    if !python27_on_machine() {
        eprintln!("SKIP: no Python 2.7 on this machine (pyenv or PATH): Autobahn TestSuite cannot run here");
        return None;
    }
    let path = support::peers_dir().join("autobahn/bin/wstest");
    support::require("Autobahn TestSuite (see scripts/install-peers.sh)", path.is_file()).then_some(path)
}

fn client_binary() -> PathBuf {
    // target/<profile>/deps/e2e-HASH -> target/<profile>/examples/autobahn_client
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = profile_dir.join("examples/autobahn_client");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --release --examples` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Opens a WebSocket with Python `websockets` and returns the first message
/// (the fuzzingserver's control endpoints answer this way).
fn python_ws_get(url: &str) -> String {
    let py = support::python().expect("python websockets");
    let script = "import sys\nfrom websockets.sync.client import connect\n\
                  with connect(sys.argv[1], open_timeout=10) as ws:\n    \
                  try:\n        print(ws.recv(timeout=30))\n    except Exception:\n        print('')\n";
    let out = Command::new(py).args(["-c", script, url]).output().expect("python");
    assert!(out.status.success(), "{url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn autobahn_fuzzingserver_client_cases() {
    let Some(wstest) = wstest() else { return };
    if support::python().is_none() {
        return;
    }
    let dir = TempDir::new("autobahn");
    let port = support::free_port();
    let reports = dir.path().join("reports");
    let spec = serde_json::json!({
        "url": format!("ws://127.0.0.1:{port}"),
        "outdir": reports,
        "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"],
        "exclude-cases": [],
        "exclude-agent-cases": {},
    });
    let spec_path = dir.path().join("fuzzingserver.json");
    std::fs::write(&spec_path, spec.to_string()).expect("write spec");
    let mut cmd = Command::new(&wstest);
    cmd.env("PYTHONUSERBASE", support::peers_dir().join("autobahn"))
        .args(["-m", "fuzzingserver", "-s"])
        .arg(&spec_path)
        .current_dir(dir.path());
    let server = Proc::spawn("autobahn fuzzingserver", &mut cmd);
    server
        .wait_line("will run", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("fuzzingserver did not start:\n{}", server.output_text()));

    let base = format!("ws://127.0.0.1:{port}");
    let count: u32 = python_ws_get(&format!("{base}/getCaseCount"))
        .parse()
        .expect("case count");
    assert!(count >= 240, "fuzzingserver offers only {count} cases");

    let out = Command::new(client_binary())
        .args([base.as_str(), "sockpulse", "1", &count.to_string()])
        .env("RUST_LOG", "off")
        .output()
        .expect("run autobahn_client");
    let client_log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "client failed: {client_log}");
    assert!(
        !client_log.contains("stuck"),
        "a case never reached a verdict:\n{client_log}"
    );
    python_ws_get(&format!("{base}/updateReports?agent=sockpulse"));

    let index_path = reports.join("index.json");
    assert!(
        support::wait_until(Duration::from_secs(30), || index_path.is_file()),
        "no {}",
        index_path.display()
    );
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).expect("read index")).expect("index json");
    let cases = index["sockpulse"].as_object().expect("agent sockpulse in index.json");
    assert_eq!(cases.len(), count as usize, "every case has a verdict");

    let mut tally: BTreeMap<String, u32> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut non_strict = Vec::new();
    for (case, verdict) in cases {
        let behavior = verdict["behavior"].as_str().unwrap_or("?");
        let close = verdict["behaviorClose"].as_str().unwrap_or("?");
        *tally.entry(behavior.to_string()).or_default() += 1;
        if !ACCEPTED.contains(&behavior) || !ACCEPTED.contains(&close) {
            failed.push(format!("{case}: {behavior} (close {close})"));
        }
        if behavior == "NON-STRICT" {
            non_strict.push(case.clone());
        }
    }
    let summary = format!(
        "Autobahn TestSuite 0.8.2 fuzzingserver, cases 1-7 and 10 ({count} cases): {}{}\n",
        tally
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        if non_strict.is_empty() {
            String::new()
        } else {
            format!(" (NON-STRICT: {})", non_strict.join(", "))
        }
    );
    eprint!("{summary}");
    let out_dir = support::repo().join("target/autobahn");
    let _ = std::fs::create_dir_all(&out_dir);
    let _ = std::fs::write(out_dir.join("summary.md"), &summary);
    assert!(failed.is_empty(), "cases Autobahn failed:\n{}", failed.join("\n"));
    // Almost all must be strictly right, not just tolerated.
    assert!(
        tally.get("OK").copied().unwrap_or(0) >= count - 5,
        "too few strict passes: {summary}"
    );
}
