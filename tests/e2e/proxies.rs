//! Sessions through real proxies: tinyproxy (HTTP CONNECT) and microsocks
//! (SOCKS5), for ws, wss (TLS inside the tunnel, the certificate checked
//! against the target's name) and tcp targets; refusals reported as
//! `proxy` with the proxy's own words; `proxy = "env"` as curl reads it.

use std::time::Duration;

use crate::support::proxies::{microsocks, tinyproxy};
use crate::support::*;

const T: Duration = Duration::from_secs(20);

fn target(name: &str, url: &str, extra: &str) -> String {
    format!("[[target]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
}

/// Tunnels the target's sessions made, by the proxy phase's histogram.
fn tunnels(agent: &Agent, name: &str) -> Option<f64> {
    agent.metric(
        "sockpulse_connect_duration_seconds_count",
        &[("target", name), ("phase", "proxy")],
    )
}

fn wait_up(agent: &Agent, name: &str) {
    agent.wait_metric("sockpulse_target_up", &[("target", name)], T, |v| v == 1.0);
}

fn wait_failure(agent: &Agent, name: &str, reason: &str) {
    agent.wait_metric(
        "sockpulse_connect_failures_total",
        &[("target", name), ("reason", reason)],
        T,
        |v| v >= 1.0,
    );
}

/// RTTs measured through the tunnel.
fn wait_pongs(agent: &Agent, name: &str) {
    agent.wait_metric(
        "sockpulse_ping_rtt_seconds_count",
        &[("target", name), ("probe", "ping")],
        T,
        |v| v >= 2.0,
    );
}

#[test]
fn ws_wss_and_tcp_sessions_run_through_an_http_connect_proxy() {
    let Some(certs) = certs() else {
        return;
    };
    let (Some((_ws, ws_port)), Some((_wss, wss_port)), Some((_other, other_port))) = (
        python_ws(0, &[]),
        python_wss(certs.path(), "good", &[]),
        python_wss(certs.path(), "other", &[]),
    ) else {
        return;
    };
    let Some(proxy) = tinyproxy(&[ws_port, wss_port, other_port], None) else {
        return;
    };
    let ca = certs.path().join("ca.pem").display().to_string();
    let via = format!("proxy = \"http://127.0.0.1:{}\"", proxy.port);
    let tls = format!("tls = {{ ca_file = \"{ca}\" }}");
    let config = [
        fast_defaults().to_string(),
        target("ws", &format!("ws://127.0.0.1:{ws_port}/"), &via),
        // The proxy resolves `localhost`; TLS is checked against it.
        target("wss", &format!("wss://localhost:{wss_port}/"), &format!("{via}\n{tls}")),
        target("tcp", &format!("tcp://127.0.0.1:{ws_port}"), &via),
        target(
            "wrong-name",
            &format!("wss://localhost:{other_port}/"),
            &format!("{via}\n{tls}"),
        ),
    ]
    .concat();
    let agent = Agent::start(&config);
    for name in ["ws", "wss", "tcp"] {
        wait_up(&agent, name);
        assert!(
            tunnels(&agent, name).is_some_and(|n| n >= 1.0),
            "{name}: no proxy phase"
        );
    }
    wait_pongs(&agent, "ws");
    wait_pongs(&agent, "wss");
    // The certificate is for other.test: refused inside the tunnel.
    wait_failure(&agent, "wrong-name", "tls");
    assert_eq!(
        agent.metric("sockpulse_target_up", &[("target", "wrong-name")]),
        Some(0.0)
    );
    let log = proxy.proc.output_text();
    assert!(log.contains(&format!("CONNECT localhost:{wss_port}")), "{log}");
    assert!(log.contains(&format!("CONNECT 127.0.0.1:{ws_port}")), "{log}");
}

#[test]
fn http_proxy_refusals_credentials_and_absence_are_reported_as_proxy() {
    let Some((_ws, ws_port)) = python_ws(0, &[]) else {
        return;
    };
    let (Some(open), Some(locked)) = (tinyproxy(&[1], None), tinyproxy(&[ws_port], Some(("bot", "pa55w0rd")))) else {
        return;
    };
    let secrets = tempfile_dir::TempDir::new("proxy-secret");
    let pw_file = secrets.path().join("pw");
    std::fs::write(&pw_file, "pa55w0rd\n").unwrap();
    let url = format!("ws://127.0.0.1:{ws_port}/");
    let dead = free_port();
    let config = [
        fast_defaults().to_string(),
        // tinyproxy allows CONNECT to port 1 only here: 403.
        target("denied", &url, &format!("proxy = \"http://127.0.0.1:{}\"", open.port)),
        target(
            "no-creds",
            &url,
            &format!("proxy = \"http://127.0.0.1:{}\"", locked.port),
        ),
        target(
            "creds",
            &url,
            &format!(
                "proxy = \"http://bot:${{file:{}}}@127.0.0.1:{}\"",
                pw_file.display(),
                locked.port
            ),
        ),
        target("proxy-down", &url, &format!("proxy = \"http://127.0.0.1:{dead}\"")),
    ]
    .concat();
    let agent = Agent::start(&config);
    wait_up(&agent, "creds");
    wait_pongs(&agent, "creds");
    for name in ["denied", "no-creds", "proxy-down"] {
        wait_failure(&agent, name, "proxy");
        assert_eq!(agent.metric("sockpulse_target_up", &[("target", name)]), Some(0.0));
    }
    let denied = agent.wait_until_log("target=denied session=0 connect failed: reason=proxy", T);
    assert!(denied.contains("403 Access violation"), "{denied}");
    let no_creds = agent.wait_until_log("target=no-creds session=0 connect failed: reason=proxy", T);
    assert!(no_creds.contains("407 Proxy Authentication Required"), "{no_creds}");
    assert!(no_creds.contains("no proxy credentials configured"), "{no_creds}");
    let down = agent.wait_until_log("target=proxy-down session=0 connect failed: reason=proxy", T);
    assert!(down.contains("refused"), "{down}");
    // Credentials never reach the log, even where the proxy is named.
    let log = agent.proc.output_text();
    assert!(
        log.contains(&format!("target=creds via proxy http://***@127.0.0.1:{}", locked.port)),
        "{log}"
    );
    assert!(
        !log.contains("pa55w0rd") && !log.contains(&pw_file.display().to_string()),
        "{log}"
    );
}

#[test]
fn socks5_proxies_carry_sessions_resolving_names_here_or_at_the_proxy() {
    let Some(certs) = certs() else {
        return;
    };
    let (Some((_ws, ws_port)), Some((_wss, wss_port))) = (python_ws(0, &[]), python_wss(certs.path(), "good", &[]))
    else {
        return;
    };
    let (Some(open), Some(locked)) = (microsocks(None), microsocks(Some(("sam", "s0cks")))) else {
        return;
    };
    let ca = certs.path().join("ca.pem").display().to_string();
    let refused = free_port();
    let config = [
        fast_defaults().to_string(),
        target(
            "ws-remote-dns",
            &format!("ws://localhost:{ws_port}/"),
            &format!("proxy = \"socks5h://127.0.0.1:{}\"", open.port),
        ),
        target(
            "wss-local-dns",
            &format!("wss://localhost:{wss_port}/"),
            &format!(
                "proxy = \"socks5://127.0.0.1:{}\"\ntls = {{ ca_file = \"{ca}\" }}",
                open.port
            ),
        ),
        target(
            "tcp-auth",
            &format!("tcp://127.0.0.1:{ws_port}"),
            &format!("proxy = \"socks5h://sam:s0cks@127.0.0.1:{}\"", locked.port),
        ),
        target(
            "no-creds",
            &format!("ws://127.0.0.1:{ws_port}/"),
            &format!("proxy = \"socks5://127.0.0.1:{}\"", locked.port),
        ),
        target(
            "refused",
            &format!("ws://127.0.0.1:{refused}/"),
            &format!("proxy = \"socks5://127.0.0.1:{}\"", open.port),
        ),
    ]
    .concat();
    let agent = Agent::start(&config);
    for name in ["ws-remote-dns", "wss-local-dns", "tcp-auth"] {
        wait_up(&agent, name);
        assert!(
            tunnels(&agent, name).is_some_and(|n| n >= 1.0),
            "{name}: no proxy phase"
        );
    }
    wait_pongs(&agent, "ws-remote-dns");
    wait_pongs(&agent, "wss-local-dns");
    wait_failure(&agent, "no-creds", "proxy");
    let line = agent.wait_until_log("target=no-creds session=0 connect failed: reason=proxy", T);
    assert!(line.contains("requires authentication"), "{line}");
    wait_failure(&agent, "refused", "proxy");
    let line = agent.wait_until_log("target=refused session=0 connect failed: reason=proxy", T);
    assert!(line.contains("SOCKS5 proxy replied 5 (connection refused)"), "{line}");
    assert!(!agent.proc.output_text().contains("s0cks"));
}

#[test]
fn proxy_env_follows_http_proxy_and_skips_hosts_in_no_proxy() {
    let Some((_ws, ws_port)) = python_ws(0, &[]) else {
        return;
    };
    let Some(proxy) = tinyproxy(&[ws_port], None) else {
        return;
    };
    let config = format!(
        "{}proxy = \"env\"\n{}{}",
        fast_defaults(),
        target("proxied", &format!("ws://127.0.0.1:{ws_port}/"), ""),
        target("direct", &format!("ws://localhost:{ws_port}/"), ""),
    );
    let proxy_url = format!("127.0.0.1:{}", proxy.port);
    let agent = Agent::start_env(&config, &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "localhost")], &[]);
    wait_up(&agent, "proxied");
    wait_up(&agent, "direct");
    assert!(tunnels(&agent, "proxied").is_some_and(|n| n >= 1.0));
    assert_eq!(
        tunnels(&agent, "direct"),
        None,
        "NO_PROXY=localhost must connect directly"
    );
    let log = proxy.proc.output_text();
    assert!(log.contains(&format!("CONNECT 127.0.0.1:{ws_port}")), "{log}");
    assert!(!log.contains("CONNECT localhost"), "{log}");
}

#[test]
fn status_goes_through_the_proxy_it_is_given() {
    let Some((_ws, ws_port)) = python_ws(0, &[]) else {
        return;
    };
    let Some(socks) = microsocks(None) else {
        return;
    };
    let url = format!("ws://localhost:{ws_port}/");
    let via = format!("socks5h://127.0.0.1:{}", socks.port);
    let out = sockpulse(&["status", "--target", &url, "--proxy", &via, "--pings", "2", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert!(v[0]["proxy_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{v}");
    assert_eq!(v[0]["pings_answered"], 2);

    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = sockpulse(&["status", "--target", &url, "--proxy", &dead]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("proxy") && stdout.contains("PROXY ms"), "{stdout}");

    let out = sockpulse(&["status", "--target", &url, "--proxy", "gopher://x:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--proxy"));
}
