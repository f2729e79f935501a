//! The live page in a real browser (Debian's Chromium, driven by
//! playwright-core from tests/peers/page_check.js): rows pushed without a
//! reload when a server is stopped and resumed, the timeline, the agent
//! restarted under the page, the page without JavaScript, screenshots.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(60);

/// Where the screenshots go (the README shows copies from
/// examples/screenshots, refreshed by hand when the page changes).
fn shots_dir() -> std::path::PathBuf {
    repo().join("target/screenshots")
}

/// tests/peers/page_check.js with `args`, when Chromium, Node and
/// playwright-core are there.
fn page_check(what: &str, args: &[&str]) -> Option<Proc> {
    let modules = peers_dir().join("node/node_modules");
    let ready = which("chromium").is_some()
        && which("node").is_some()
        && modules.join("playwright-core/package.json").is_file();
    if !require("chromium and playwright-core", ready) {
        return None;
    }
    let mut cmd = Command::new("node");
    cmd.env("NODE_PATH", &modules)
        .arg(repo().join("tests/peers/page_check.js"))
        .args(args);
    Some(Proc::spawn(what, &mut cmd))
}

/// The first line of `browser` with `needle`; panics with its output if none comes.
fn line(browser: &Proc, needle: &str) -> String {
    browser
        .wait_line(needle, T)
        .unwrap_or_else(|| panic!("no {needle} line:\n{}", browser.output_text()))
}

#[test]
fn the_live_page_follows_servers_and_the_agent_in_a_real_browser() {
    let Some((py, port)) = python_ws(0, &[]) else {
        return;
    };
    let listen = format!("127.0.0.1:{}", free_port());
    let config = one_target(
        "py",
        &format!("ws://127.0.0.1:{port}/"),
        "connections = 2\nping_interval = \"250ms\"\npong_timeout = \"200ms\"",
    );
    let mut agent = Agent::start_listening(&config, &listen);
    agent.wait_metric("sockpulse_target_up", &[("target", "py")], T, |v| v == 1.0);

    let work = tempfile_dir::TempDir::new("page");
    let flag = work.path().join("restarted");
    std::fs::create_dir_all(shots_dir()).unwrap();
    let args = [
        format!("http://{listen}/"),
        py.pid().to_string(),
        shots_dir().display().to_string(),
        flag.display().to_string(),
    ];
    let Some(browser) = page_check("page check", &args.each_ref().map(String::as_str)) else {
        return;
    };
    let line = |needle: &str| line(&browser, needle);

    line("UP");
    let spark: usize = line("SPARK ").trim_start_matches("SPARK ").trim().parse().unwrap();
    assert!(spark >= 3, "{spark} sparkline points");
    let down_ms: u64 = line("DOWN ").trim_start_matches("DOWN ").trim().parse().unwrap();
    eprintln!("the row turned down {down_ms} ms after SIGSTOP; {spark} sparkline points");
    assert!(down_ms <= 2000, "the row turned down {down_ms} ms after SIGSTOP");
    let timeline = line("TIMELINE ");
    assert!(
        timeline.contains("disconnected") && timeline.contains("pong_timeout"),
        "{timeline}"
    );
    assert_eq!(line("SAME-DOCUMENT "), "SAME-DOCUMENT true", "pushed, not reloaded");
    let failure = line("FAILURE ");
    assert!(failure.contains("pong_timeout"), "{failure}");
    line("UP-AGAIN");
    let themes = line("THEMES ");
    assert_eq!(themes, "THEMES rgb(251, 251, 252) rgb(17, 20, 24)", "light, then dark");

    line("RESTART");
    agent.proc.signal("TERM");
    assert_eq!(agent.proc.wait_exit(Duration::from_secs(10)), Some(0));
    let lost = line("LOST ");
    assert!(lost.contains("reconnecting"), "{lost}");
    agent = Agent::start_listening(&config, &listen);
    std::fs::write(&flag, "").unwrap();
    assert_eq!(
        line("RECONNECTED "),
        "RECONNECTED true",
        "reconnected by itself, same page"
    );

    let nojs = line("NOJS ");
    assert!(nojs.starts_with("NOJS py |"), "{nojs}");
    assert!(nojs.contains("static view"), "{nojs}");
    let bytes: usize = line("BYTES ").trim_start_matches("BYTES ").trim().parse().unwrap();
    assert!(bytes < 100 * 1024, "page, script and style: {bytes} bytes");
    let errors = line("ERRORS ");
    assert_eq!(errors, "ERRORS 0", "{}", browser.output_text());
    for shot in ["desktop.png", "phone.png", "dark.png"] {
        let size = std::fs::metadata(shots_dir().join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
    drop(agent);
}

/// The base64 SHA-256 of `cert`'s public key, as Chromium's
/// --ignore-certificate-errors-spki-list takes it.
fn spki_hash(cert: &std::path::Path) -> String {
    let script = "import base64,hashlib,sys\n\
                  from cryptography import x509\n\
                  from cryptography.hazmat.primitives import serialization as s\n\
                  c=x509.load_pem_x509_certificate(open(sys.argv[1],'rb').read())\n\
                  d=c.public_key().public_bytes(s.Encoding.DER,s.PublicFormat.SubjectPublicKeyInfo)\n\
                  print(base64.b64encode(hashlib.sha256(d).digest()).decode())";
    let out = Command::new(python().expect("python"))
        .args(["-c", script])
        .arg(cert)
        .output()
        .expect("run python");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_page_goes_live_over_tls_with_basic_auth_in_a_real_browser() {
    let (Some(certs), Some(hash), Some((_py, port))) =
        (certs(), crate::websec::htpasswd("viewer", "l00k"), python_ws(0, &[]))
    else {
        return;
    };
    let web = certs.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: good.pem\n  key_file: good.key\nbasic_auth_users:\n  viewer: '{hash}'\n"
        ),
    )
    .unwrap();
    let agent = Agent::start_with(
        &one_target("py", &format!("ws://127.0.0.1:{port}/"), ""),
        &["--web.config.file", web.to_str().unwrap()],
    );
    let page_url = format!("https://localhost:{}/", agent.addr.rsplit(':').next().unwrap());
    let spki = spki_hash(&certs.path().join("good.pem"));
    let Some(browser) = page_check("page check (tls)", &["--tls", &page_url, &spki, "viewer", "l00k"]) else {
        return;
    };
    let line = |needle: &str| line(&browser, needle);
    assert_eq!(line("TLS-LIVE "), "TLS-LIVE https:", "the stream went live over wss");
    let refused = line("NO-CREDENTIALS ");
    assert!(
        refused.ends_with(" 401") || refused.contains("ERR_INVALID_AUTH_CREDENTIALS"),
        "{refused}"
    );
    assert_eq!(line("ERRORS "), "ERRORS 0", "{}", browser.output_text());
}
