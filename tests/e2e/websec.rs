//! The HTTP endpoint made safe to expose: `--web.config.file` in the
//! exporter-toolkit's format (TLS, client certificates, bcrypt users from
//! `htpasswd`) checked with curl and scraped by a real Prometheus;
//! certificates read again when they change; cross-origin requests
//! refused; the page and the stream on a sub-path behind nginx.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::observability::{prom_query, run_prometheus};
use crate::stream::{messages, stream_client_at};
use crate::support::*;

const T: Duration = Duration::from_secs(30);

/// A bcrypt hash of `password`, made by Apache's htpasswd.
pub(crate) fn htpasswd(user: &str, password: &str) -> Option<String> {
    htpasswd_cost(user, password, 10)
}

/// `htpasswd` with this bcrypt cost (4 is the cheapest bcrypt allows).
fn htpasswd_cost(user: &str, password: &str, cost: u32) -> Option<String> {
    let bin = which("htpasswd");
    if !require("htpasswd (apache2-utils)", bin.is_some()) {
        return None;
    }
    let cost = cost.to_string();
    let out = Command::new(bin?)
        .args(["-nbBC", &cost, user, password])
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    line.split_once(':').map(|(_, hash)| hash.to_string())
}

/// curl's HTTP status for `url` (`000` when it got none) and its exit code.
fn curl(url: &str, args: &[&str]) -> (String, i32) {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        out.status.code().unwrap_or(-1),
    )
}

/// The body curl gets for `path` over https, trusting `certs`' CA.
fn https_body(addr: &str, path: &str, certs: &Path) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(certs.join("ca.pem"))
        .arg(format!("https://{addr}{path}"))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A web configuration turning TLS on with `certs`' server certificate,
/// nothing else.
fn tls_only_web_config(certs: &Path) -> std::path::PathBuf {
    let web = certs.join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: good.pem\n  key_file: good.key\n",
    )
    .unwrap();
    web
}

/// The certificate the server at `addr` presents, as PEM.
fn served_cert(addr: &str) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new(python().expect("python"))
        .args([
            "-c",
            "import ssl,sys; print(ssl.get_server_certificate((sys.argv[1], int(sys.argv[2]))))",
            host,
            port,
        ])
        .output()
        .expect("run python");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn pem_body(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

#[test]
fn tls_client_certificates_and_basic_auth_work_with_curl_and_a_real_prometheus() {
    let Some(prometheus) = which("prometheus") else {
        require("prometheus", false);
        return;
    };
    let (Some(certs), Some(hash), Some((_py, port))) = (certs(), htpasswd("prometheus", "s3cret"), python_ws(0, &[]))
    else {
        return;
    };
    let c = certs.path().display().to_string();
    let web = certs.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: good.pem\n  key_file: good.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .unwrap();
    let agent = Agent::start_with(
        &one_target("py", &format!("ws://127.0.0.1:{port}/"), ""),
        &["--web.config.file", web.to_str().unwrap()],
    );
    assert!(agent.proc.output_text().contains("listening on https://"));
    let url = |path: &str| format!("https://{}{path}", agent.addr);
    let ca = format!("{c}/ca.pem");
    let (cert, key) = (format!("{c}/client.pem"), format!("{c}/client.key"));
    let with_cert = ["--cacert", &ca, "--cert", &cert, "--key", &key];

    // No client certificate: no TLS session, no answer.
    let (code, exit) = curl(&url("/metrics"), &["--cacert", &ca, "-u", "prometheus:s3cret"]);
    assert!(code == "000" && exit != 0, "{code} {exit}");
    // A certificate, then the password decides.
    assert_eq!(curl(&url("/metrics"), &with_cert).0, "401");
    let wrong: Vec<&str> = with_cert.iter().copied().chain(["-u", "prometheus:nope"]).collect();
    assert_eq!(curl(&url("/metrics"), &wrong).0, "401");
    let right: Vec<&str> = with_cert.iter().copied().chain(["-u", "prometheus:s3cret"]).collect();
    assert_eq!(curl(&url("/metrics"), &right).0, "200");
    assert_eq!(curl(&url("/"), &right).0, "200");
    assert_eq!(curl(&url("/healthz"), &with_cert).0, "200", "liveness stays open");
    let challenge = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null"])
        .args(with_cert)
        .arg(url("/metrics"))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&challenge.stdout).to_lowercase();
    assert!(
        headers.contains("www-authenticate: basic realm=\"sockpulse\""),
        "{headers}"
    );

    // Prometheus, configured as for any exporter behind the toolkit.
    let job = |name: &str, tls: &str, auth: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n{tls}{auth}\
             \x20   static_configs:\n      - targets: ['{}']\n",
            agent.addr
        )
    };
    let client_tls = format!("      cert_file: {cert}\n      key_file: {key}\n");
    let good_auth = "    basic_auth:\n      username: prometheus\n      password: s3cret\n";
    let bad_auth = "    basic_auth:\n      username: prometheus\n      password: guess\n";
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}{}",
        job("good", &client_tls, good_auth),
        job("nocert", "", good_auth),
        job("badpass", &client_tls, bad_auth)
    );
    let work = tempfile_dir::TempDir::new("prometheus-tls");
    let (prom, prom_addr, _work) = run_prometheus(&prometheus, work, &config);
    let value = |expr: &str| -> Option<f64> {
        prom_query(&prom_addr, expr)["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
    };
    assert!(
        wait_until(T, || value("sockpulse_target_up{job=\"good\",target=\"py\"}")
            == Some(1.0)),
        "{}",
        prom.output_text()
    );
    assert!(wait_until(T, || value("up{job=\"nocert\"}") == Some(0.0)
        && value("up{job=\"badpass\"}") == Some(0.0)));
    assert_eq!(value("up{job=\"good\"}"), Some(1.0));
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let (Some(certs), Some((_py, port))) = (certs(), python_ws(0, &[])) else {
        return;
    };
    let dir = certs.path();
    std::fs::copy(dir.join("good.pem"), dir.join("server.pem")).unwrap();
    std::fs::copy(dir.join("good.key"), dir.join("server.key")).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n",
    )
    .unwrap();
    let agent = Agent::start_with(
        &one_target("py", &format!("ws://127.0.0.1:{port}/"), ""),
        &["--web.config.file", web.to_str().unwrap()],
    );
    assert_eq!(served_cert(&agent.addr), pem_body(&dir.join("good.pem")));
    // Renewed: key first, then certificate, as a renewal tool writes them.
    std::fs::copy(dir.join("rsa.key"), dir.join("server.key")).unwrap();
    std::fs::copy(dir.join("rsa.pem"), dir.join("server.pem")).unwrap();
    let rsa = pem_body(&dir.join("rsa.pem"));
    assert!(
        wait_until(T, || served_cert(&agent.addr) == rsa),
        "the renewed certificate is not served"
    );
    agent.wait_until_log("certificate", T);
    // A broken renewal: the working certificate stays.
    std::fs::write(dir.join("server.pem"), "not a certificate").unwrap();
    // The files are looked at when a client says hello.
    assert!(wait_until(T, || served_cert(&agent.addr) == rsa
        && agent.proc.output_text().contains("keeping the current certificate")));
    // A bad web configuration is a start error with the field named.
    std::fs::write(&web, "tls_server_config:\n  cert_file: server.pem\n").unwrap();
    let out = sockpulse(&[
        "run",
        "--web.config.file",
        web.to_str().unwrap(),
        "--target",
        "ws://127.0.0.1:1/",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls_server_config.key_file: is required"));
}

/// A POST from `origin` (none: not a browser) to /-/reload.
fn post_reload(addr: &str, origin: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    write!(
        s,
        "POST /-/reload HTTP/1.1\r\nHost: {addr}\r\n{origin}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn cross_origin_requests_are_refused_and_the_external_url_is_trusted() {
    let agent = Agent::start_with(
        fast_defaults(),
        &[
            "--web.enable-lifecycle",
            "--web.external-url",
            "https://monitor.example/",
        ],
    );
    assert_eq!(post_reload(&agent.addr, Some("https://evil.example")), 403);
    assert_eq!(post_reload(&agent.addr, Some(&format!("http://{}", agent.addr))), 202);
    assert_eq!(post_reload(&agent.addr, Some("https://monitor.example")), 202);
    assert_eq!(post_reload(&agent.addr, None), 202);
}

#[test]
fn the_page_and_the_stream_work_on_a_sub_path_behind_nginx() {
    let Some((_py, port)) = python_ws(0, &[]) else {
        return;
    };
    let proxy_port = free_port();
    let agent = Agent::start_with(
        &one_target("py", &format!("ws://127.0.0.1:{port}/"), ""),
        &[
            "--web.external-url",
            &format!("http://127.0.0.1:{proxy_port}/sockpulse/"),
        ],
    );
    let locations = format!(
        r#"location /sockpulse/ {{
      proxy_pass http://{};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
    }}
    location / {{ return 404; }}"#,
        agent.addr
    );
    let Some((_nginx, _dir)) = nginx_with(proxy_port, &locations) else {
        return;
    };
    let proxy = format!("127.0.0.1:{proxy_port}");
    assert!(wait_until(T, || http_get(&proxy, "/sockpulse/metrics")
        .1
        .contains("sockpulse_target_up{target=\"py\"} 1")));
    let (status, page) = http_get(&proxy, "/sockpulse/");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("href=\"assets/style.css\"") && page.contains("href=\"metrics\""),
        "{page}"
    );
    assert!(wait_until(T, || http_get(&proxy, "/sockpulse/")
        .1
        .contains("data-target=\"py\"")));
    assert_eq!(http_get(&proxy, "/sockpulse/assets/app.js").0, 200);
    let (status, metrics) = http_get(&proxy, "/sockpulse/metrics");
    assert!(
        status == 200 && metrics.contains("sockpulse_target_up{target=\"py\"} 1"),
        "{status}"
    );
    // The agent itself serves nothing outside its prefix.
    assert_eq!(agent.get("/metrics").0, 404);
    assert_eq!(agent.get("/sockpulse").0, 302);

    // The page's origin is the proxy's, which --web.external-url names.
    let stream = format!("ws://{proxy}/sockpulse/api/v1/stream");
    let origin = format!("http://{proxy}");
    let Some(client) = stream_client_at(&stream, &["--origin", &origin, "--subprotocol", "sockpulse.v1"]) else {
        return;
    };
    assert!(
        client.wait_line("OPEN sockpulse.v1", T).is_some(),
        "{}",
        client.output_text()
    );
    assert!(wait_until(T, || messages(&client)
        .first()
        .is_some_and(|m| m["type"] == "snapshot")));
    let Some(evil) = stream_client_at(&stream, &["--origin", "http://evil.example"]) else {
        return;
    };
    assert!(evil.wait_line("REFUSED 403", T).is_some(), "{}", evil.output_text());
}

#[test]
fn a_flood_of_unknown_passwords_gets_429s_while_a_known_user_is_still_served() {
    // The cheapest bcrypt: every check is quick, so what limits the flood
    // is the agent's ration of checks (5 a second), not the hashing.
    let Some(hash) = htpasswd_cost("prometheus", "s3cret", 4) else {
        return;
    };
    let dir = tempfile_dir::TempDir::new("web-flood");
    let web = dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: '{hash}'\n")).unwrap();
    let agent = Agent::start_with("", &["--web.config.file", web.to_str().unwrap()]);
    // Known before the flood: remembered, no check needed later.
    assert_eq!(get_as(&agent.addr, "/metrics", "prometheus", "s3cret").0, 200);

    let answers: Vec<String> = (0..40)
        .map(|i| raw_get_as(&agent.addr, "/metrics", "prometheus", &format!("guess{i}")))
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|a| status_of(a)).collect();
    let denied = statuses.iter().filter(|&&s| s == 401).count();
    let busy = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(denied + busy, statuses.len(), "{statuses:?}");
    // The burst of 5 checks (one went to the known user's first login),
    // plus what refills while the flood lasts.
    assert!(denied >= 4 && busy >= 20, "{statuses:?}");
    for a in answers.iter().filter(|a| status_of(a) == 429) {
        assert!(a.contains("Retry-After: 1\r\n"), "{a}");
    }
    // The known user is served in the middle of it.
    let (status, body) = get_as(&agent.addr, "/metrics", "prometheus", "s3cret");
    assert_eq!(status, 200);
    assert!(body.contains("sockpulse_http_connections"), "{body}");
    // Once the ration refills, unknown credentials are checked again.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(get_as(&agent.addr, "/metrics", "prometheus", "late-guess").0, 401);
}

/// GET `path` with basic auth: status and body.
fn get_as(addr: &str, path: &str, user: &str, password: &str) -> (u16, String) {
    let answer = raw_get_as(addr, path, user, password);
    let status = status_of(&answer);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The whole answer to a GET of `path` with basic auth.
fn raw_get_as(addr: &str, path: &str, user: &str, password: &str) -> String {
    use base64::Engine as _;
    use std::io::{Read, Write};
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Basic {token}\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn web_and_kernel_settings_and_the_web_configuration_follow_a_reload() {
    let (Some(hash), Some((_py, port))) = (htpasswd("prometheus", "s3cret"), python_ws(0, &[])) else {
        return;
    };
    let dir = tempfile_dir::TempDir::new("web-reload");
    let web = dir.path().join("web.yml");
    std::fs::write(&web, "").unwrap();
    let config = |streams: u32, watch: &str| {
        format!(
            "[web]\nmax_stream_clients = {streams}\n[kernel]\nscan_interval = \"500ms\"\nwatch_ports = [{watch}]\n{}",
            one_target("py", &format!("ws://127.0.0.1:{port}/"), "")
        )
    };
    let agent = Agent::start_with(&config(1, ""), &["--web.config.file", web.to_str().unwrap()]);
    let stream = format!("ws://{}/api/v1/stream", agent.addr);
    let first = stream_client_at(&stream, &[]).unwrap();
    assert!(first.wait_line("OPEN", T).is_some());
    let second = stream_client_at(&stream, &[]).unwrap();
    assert!(second.wait_line("REFUSED 503", T).is_some(), "{}", second.output_text());
    assert!(!agent.scrape().contains(&format!("port=\"{port}\"")));

    // More stream clients, users, a watched port: all by a reload.
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: '{hash}'\n")).unwrap();
    agent.reload_with(&config(2, &port.to_string()));
    assert!(
        wait_until(T, || agent.get("/metrics").0 == 401),
        "basic auth after the reload"
    );
    assert_eq!(get_as(&agent.addr, "/metrics", "prometheus", "s3cret").0, 200);
    let listening = format!("sockpulse_tcp_sockets{{port=\"{port}\",state=\"listen\"}} 1");
    assert!(
        wait_until(T, || get_as(&agent.addr, "/metrics", "prometheus", "s3cret")
            .1
            .contains(&listening)),
        "the newly watched port is broken out"
    );
    // A second stream client now, with the credentials now needed.
    let third = stream_client_at(&format!("ws://prometheus:s3cret@{}/api/v1/stream", agent.addr), &[]).unwrap();
    assert!(third.wait_line("OPEN", T).is_some(), "{}", third.output_text());
    // A broken web configuration fails the reload and keeps what runs.
    std::fs::write(&web, "basic_auth_users:\n  prometheus: plaintext\n").unwrap();
    agent.proc.signal("HUP");
    agent.wait_until_log("configuration reload failed", T);
    assert_eq!(agent.get("/metrics").0, 401);
    assert_eq!(get_as(&agent.addr, "/metrics", "prometheus", "s3cret").0, 200);
}

#[test]
fn a_client_certificate_is_optional_with_verify_if_given() {
    let (Some(certs), Some((_py, port))) = (certs(), python_ws(0, &[])) else {
        return;
    };
    let c = certs.path().display().to_string();
    let web = certs.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: good.pem\n  key_file: good.key\n  \
         client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n  min_version: TLS13\n",
    )
    .unwrap();
    let agent = Agent::start_with(
        &one_target("py", &format!("ws://127.0.0.1:{port}/"), ""),
        &["--web.config.file", web.to_str().unwrap()],
    );
    let url = format!("https://{}/healthz", agent.addr);
    let ca = format!("{c}/ca.pem");
    assert_eq!(curl(&url, &["--cacert", &ca]).0, "200", "no certificate: welcome");
    let (cert, key) = (format!("{c}/client.pem"), format!("{c}/client.key"));
    assert_eq!(curl(&url, &["--cacert", &ca, "--cert", &cert, "--key", &key]).0, "200");
    // min_version TLS13: a TLS 1.2 client gets no session.
    let (code, exit) = curl(&url, &["--cacert", &ca, "--tlsv1.2", "--tls-max", "1.2"]);
    assert!(code == "000" && exit != 0, "{code} {exit}");
}

#[test]
fn with_tls_an_agent_waits_for_its_target_files_rather_than_refusing_to_start() {
    let (Some(certs), Some((_py, port))) = (certs(), python_ws(0, &[])) else {
        return;
    };
    let web = tls_only_web_config(certs.path());
    let sd = tempfile_dir::TempDir::new("tls-file-sd");
    let agent = Agent::start_with(
        &format!(
            "target_files = [\"{}/*.json\"]\n{}",
            sd.path().display(),
            fast_defaults()
        ),
        &["--web.config.file", web.to_str().unwrap()],
    );
    agent.wait_until_log("no targets in target_files yet", T);
    let metrics = || https_body(&agent.addr, "/metrics", certs.path());
    assert!(metrics().contains("sockpulse_build_info"));
    // The discovery writes its file: the target is watched.
    let url = format!("ws://127.0.0.1:{port}/");
    std::fs::write(sd.path().join("t.json"), format!(r#"[{{"targets": ["{url}"]}}]"#)).unwrap();
    let up = format!("sockpulse_target_up{{target=\"{url}\"}} 1");
    assert!(
        wait_until(T, || metrics().contains(&up)),
        "{}",
        agent.proc.output_text()
    );
}

#[test]
fn with_tls_a_shard_left_without_targets_starts_and_waits() {
    let (Some(certs), Some((_py, port))) = (certs(), python_ws(0, &[])) else {
        return;
    };
    let web = tls_only_web_config(certs.path());
    // One target, two shards: one of them has none.
    let config = format!(
        "{}[[target]]\nname = \"only\"\nurl = \"ws://127.0.0.1:{port}/\"\n",
        fast_defaults()
    );
    let shards: Vec<Agent> = ["0/2", "1/2"]
        .iter()
        .map(|s| Agent::start_with(&config, &["--shard", s, "--web.config.file", web.to_str().unwrap()]))
        .collect();
    let metrics = |agent: &Agent| https_body(&agent.addr, "/metrics", certs.path());
    let holder = shards
        .iter()
        .position(|a| a.proc.output_text().contains(": 1 of 1 target(s) are this agent's"))
        .expect("one shard holds the target");
    let idle = &shards[1 - holder];
    idle.wait_until_log("no targets in this shard", T);
    assert!(
        wait_until(T, || metrics(&shards[holder])
            .contains("sockpulse_target_up{target=\"only\"} 1")),
        "{}",
        shards[holder].proc.output_text()
    );
    let idle_metrics = metrics(idle);
    assert!(idle_metrics.contains("sockpulse_build_info"), "{idle_metrics}");
    assert!(!idle_metrics.contains("sockpulse_target_up{"), "{idle_metrics}");
}
