//! Configuration: a TOML file and/or `--target` URLs, read into validated
//! targets and sections, then resolved into what the agent runs (TLS
//! configurations built). The TOML is walked by hand rather than through
//! serde so that every problem (unknown keys included) is reported at once,
//! each with the field it belongs to.

mod defaults;
pub mod file_sd;
pub mod modules;
pub mod protocol;
mod proxy;
mod resolve;
mod sections;
mod target;
mod tickets;
pub mod tls;
pub mod url;
mod walker;
pub mod web_file;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::{Table, Value};

use crate::session::spec::TargetSpec;
pub use defaults::MAX_CONNECTIONS_PER_TARGET;
pub use sections::{KernelConfig, WebConfig, DEFAULT_LISTEN_ADDRESS};
use walker::Walker;

const TOP_KEYS: &[&str] = &["defaults", "target", "web", "kernel", "target_files", "module", "probe"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} has {} problem(s):", self.source_name, self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone)]
pub struct Config {
    pub targets: Vec<Arc<TargetSpec>>,
    /// `target_files` patterns, resolved against the configuration's folder:
    /// the agent watches them and reloads when they change.
    pub target_files: Vec<PathBuf>,
    pub web: WebConfig,
    pub kernel: KernelConfig,
    /// `/probe`: its modules and limits.
    pub probe: modules::ProbeConfig,
}

/// Where a configuration comes from: a file, `--target` URLs, or both.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// Added to the file's targets.
    pub urls: Vec<String>,
    /// `--proxy`: the proxy setting of the `urls` targets, over `[defaults]`.
    pub proxy: Option<String>,
}

impl Sources {
    pub fn file(path: &Path) -> Sources {
        Sources {
            file: Some(path.to_path_buf()),
            urls: Vec::new(),
            proxy: None,
        }
    }
}

/// Reads and validates a configuration, expanding `${VAR}` from the
/// environment: the one loader every command and every reload uses.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    let env = |k: &str| std::env::var(k).ok();
    let mut urls = UrlTargets {
        urls: &sources.urls,
        proxy: sources.proxy.as_deref(),
        base: None,
        read_files: &file_sd::read,
    };
    let Some(path) = &sources.file else {
        return parse_with("", "command line", &urls, &env);
    };
    urls.base = path.parent();
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source_name: name.clone(),
        problems: vec![Problem {
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        }],
    })?;
    parse_with(&text, &name, &urls, &env)
}

/// `--target` URLs and what the command line sets for them, and where
/// `target_files` are found and how they are read.
struct UrlTargets<'a> {
    urls: &'a [String],
    proxy: Option<&'a str>,
    /// The configuration file's folder: relative `target_files` start there.
    base: Option<&'a Path>,
    read_files: &'a file_sd::Reader,
}

/// No target files (parsing text alone).
fn no_files(patterns: &[PathBuf]) -> Result<file_sd::Files, String> {
    match patterns.first() {
        Some(p) => Err(format!(
            "{}: target files are read only from a configuration file",
            p.display()
        )),
        None => Ok(Vec::new()),
    }
}

/// Validates config text plus extra `--target` URLs, with `env` for
/// `${VAR}`, and resolves it.
pub fn parse(
    text: &str,
    source_name: &str,
    extra_urls: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let urls = UrlTargets {
        urls: extra_urls,
        proxy: None,
        base: None,
        read_files: &no_files,
    };
    parse_with(text, source_name, &urls, env)
}

fn parse_with(
    text: &str,
    source_name: &str,
    url_targets: &UrlTargets<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let fail = |problems: Vec<Problem>| ConfigError {
        source_name: source_name.to_string(),
        problems,
    };
    let doc = text
        .parse::<Table>()
        .map_err(|e| fail(vec![syntax_problem(text, &e)]))?;
    let mut w = Walker::new(env);
    w.check_keys(&doc, "", &[TOP_KEYS]);
    let mut defaults = defaults::Defaults::default();
    if let Some(t) = w.table(&doc, "", "defaults") {
        w.check_keys(t, "defaults", &[defaults::KEYS]);
        defaults = defaults::read(&mut w, t, "defaults", &defaults);
        defaults::check(&mut w, "defaults", &defaults);
    }
    let web = w
        .table(&doc, "", "web")
        .map(|t| sections::read_web(&mut w, t))
        .unwrap_or_default();
    let kernel = w
        .table(&doc, "", "kernel")
        .map(|t| sections::read_kernel(&mut w, t))
        .unwrap_or_default();
    let mut plain = Vec::new();
    match doc.get("target") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("target[{i}]");
                match item {
                    Value::Table(t) => plain.extend(target::read(&mut w, t, &path, &defaults)),
                    other => w.problem(path, format!("expected a table, found {}", other.type_str())),
                }
            }
        }
        Some(other) => w.problem(
            "target",
            format!("expected [[target]] tables, found {}", other.type_str()),
        ),
    }
    let probe = modules::read(&mut w, &doc, &defaults);
    let target_files: Vec<PathBuf> = w
        .strings(&doc, "", "target_files")
        .unwrap_or_default()
        .into_iter()
        .map(|p| match url_targets.base {
            Some(base) if Path::new(&p).is_relative() => base.join(p),
            _ => PathBuf::from(p),
        })
        .collect();
    plain.extend(file_targets(
        &mut w,
        &target_files,
        url_targets.read_files,
        &probe,
        &defaults,
    ));
    let mut url_defaults = defaults;
    if let Some(value) = url_targets.proxy {
        if let Some(setting) = proxy::read_setting(&mut w, "--proxy", value) {
            url_defaults.proxy = setting;
        }
    }
    for (i, url) in url_targets.urls.iter().enumerate() {
        plain.extend(target::from_url(&mut w, &format!("--target[{i}]"), url, &url_defaults));
    }
    check_unique_names(&mut w, &plain);
    let targets = resolve::targets(&mut w, plain);
    if w.problems.is_empty() {
        Ok(Config {
            targets,
            target_files,
            web,
            kernel,
            probe,
        })
    } else {
        Err(fail(w.problems))
    }
}

/// The targets of the files `patterns` match: each group's URLs with its
/// labels and its `__module__`'s options over `[defaults]`.
fn file_targets(
    w: &mut Walker<'_>,
    patterns: &[PathBuf],
    read_files: &file_sd::Reader,
    probe: &modules::ProbeConfig,
    defaults: &defaults::Defaults,
) -> Vec<target::PlainTarget> {
    let files = match read_files(patterns) {
        Ok(files) => files,
        Err(e) => {
            w.problem("target_files", e);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (path, text) in files {
        let groups = match file_sd::parse(&path, &text) {
            Ok(groups) => groups,
            Err(e) => {
                w.problem(format!("target_files: {}", path.display()), e);
                continue;
            }
        };
        for g in groups {
            for (i, url) in g.targets.iter().enumerate() {
                let field = format!("{}.targets[{i}]", g.source);
                let module = match g.module.as_deref() {
                    None => toml::Table::new(),
                    Some(name) => match probe.module(name) {
                        Some(m) => m.clone(),
                        None => {
                            w.problem(&field, format!("{} names no [module.{name}]", file_sd::MODULE_LABEL));
                            continue;
                        }
                    },
                };
                out.extend(target::from_file(w, &field, url, &g.labels, module, defaults));
            }
        }
    }
    out
}

fn syntax_problem(text: &str, e: &toml::de::Error) -> Problem {
    let field = e
        .span()
        .map(|s| {
            let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}")
        })
        .unwrap_or_else(|| "(syntax)".into());
    Problem {
        field,
        message: e.message().to_string(),
    }
}

/// Names are the `target` label: two targets may not share one.
fn check_unique_names(w: &mut Walker<'_>, plain: &[target::PlainTarget]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, t) in plain.iter().enumerate() {
        if let Some(first) = seen.insert(t.spec.name.as_str(), i) {
            let problem = format!("{:?} is already used by {}", t.spec.name, plain[first].field);
            let field = if t.field.starts_with("target[") {
                format!("{}.name", t.field)
            } else {
                t.field.clone()
            };
            w.problem(field, problem);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_ok(text: &str) -> Config {
        parse(text, "test.toml", &[], &no_env).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(text: &str) -> Vec<Problem> {
        parse(text, "test.toml", &[], &no_env)
            .expect_err("should fail")
            .problems
    }

    #[test]
    fn echo_and_stream_clients_have_caps_of_their_own() {
        let defaults = parse_ok("");
        assert_eq!(
            (defaults.web.max_echo_clients, defaults.web.max_stream_clients),
            (256, 512)
        );
        let set = parse_ok("[web]\nmax_echo_clients = 3\nmax_stream_clients = 0\n");
        assert_eq!((set.web.max_echo_clients, set.web.max_stream_clients), (3, 0));
        let bad = problems("[web]\nmax_echo_clients = -1\n");
        assert!(bad.iter().any(|p| p.field.contains("max_echo_clients")), "{bad:?}");
    }

    fn fields(text: &str) -> Vec<String> {
        problems(text).into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn full_example_parses_with_defaults_and_overrides() {
        let cfg = parse(
            r#"
            [defaults]
            ping_interval = "2s"
            pong_timeout = "1s"
            backoff = { min = "100ms", max = "5s" }

            [[target]]
            name = "quotes"
            url = "ws://[::1]:8080/stream?x=1"
            connections = 4
            headers = { Authorization = "Bearer ${TOKEN}" }
            origin = "https://example.net"
            subprotocols = ["v2"]
            on_open = ['{"op":"subscribe"}']
            idle_timeout = "off"

            [[target]]
            url = "tcp://127.0.0.1:6379"
            probe = { send = "PING\r\n", expect = "+PONG" }
            "#,
            "t",
            &["ws://localhost:9/".into()],
            &|k| (k == "TOKEN").then(|| "s3cret".to_string()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.targets.len(), 3);
        let q = &cfg.targets[0];
        assert_eq!(q.name, "quotes");
        assert_eq!(
            (q.host.as_str(), q.port, q.host_header.as_str()),
            ("::1", 8080, "[::1]:8080")
        );
        assert_eq!(q.ws.path, "/stream?x=1");
        assert_eq!(q.connections, 4);
        assert_eq!(
            q.ws.headers,
            vec![("Authorization".to_string(), "Bearer s3cret".to_string())]
        );
        assert!(q.ws.require_subprotocol);
        assert_eq!(q.timing.ping_interval, Some(Duration::from_secs(2)));
        assert_eq!(q.timing.idle_timeout, None);
        assert_eq!(q.timing.backoff.max, Duration::from_secs(5));
        let r = &cfg.targets[1];
        assert_eq!(r.name, "tcp://127.0.0.1:6379");
        assert_eq!(r.probe.as_ref().map(|p| p.send.clone()), Some(b"PING\r\n".to_vec()));
        assert_eq!(r.timing.idle_timeout, Some(Duration::from_secs(60)));
        let extra = &cfg.targets[2];
        assert_eq!((extra.port, extra.timing.pong_timeout), (9, Duration::from_secs(1)));
    }

    #[test]
    fn tcp_without_probe_has_no_pings_and_no_idle_timeout_by_default() {
        let cfg = parse_ok("[[target]]\nurl = \"tcp://db:5432\"\n");
        assert_eq!(cfg.targets[0].timing.ping_interval, None);
        assert_eq!(cfg.targets[0].timing.idle_timeout, None);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let f = fields(
            r#"
            bogus = 1
            [defaults]
            ping_interval = "5s"
            pong_timeout = "5s"
            [[target]]
            url = "http://x/"
            [[target]]
            url = "ws://ok/"
            idle_timeout = "soon"
            colour = "red"
            connections = 0
            headers = { Host = "x", "Bad Name" = "y" }
            [[target]]
            name = "no url"
            [[target]]
            url = "tcp://h"
            "#,
        );
        for expected in [
            "bogus",
            "defaults.pong_timeout",
            "target[0].url",
            "target[1].idle_timeout",
            "target[1].colour",
            "target[1].connections",
            "target[1].headers.Host",
            "target[1].headers.Bad Name",
            "target[2].url",
            "target[3].url",
        ] {
            assert!(f.contains(&expected.to_string()), "missing {expected} in {f:?}");
        }
    }

    #[test]
    fn scheme_specific_keys_are_rejected_elsewhere() {
        let f = fields(
            "[[target]]\nurl = \"tcp://h:1\"\nsubprotocols = [\"x\"]\ntls = {}\nprotocol = \"mqtt\"\n\
             message_timeout = \"1m\"\n\
             [[target]]\nurl = \"ws://h/\"\nprotocol = \"socketio\"\nprobe = { send = \"a\", expect = \"b\" }\n\
             graphql = { payload = \"{}\" }\n",
        );
        assert_eq!(
            f,
            vec![
                "target[0].subprotocols",
                "target[0].message_timeout",
                "target[0].protocol",
                "target[0].tls",
                "target[1].graphql",
                "target[1].probe",
            ]
        );
    }

    #[test]
    fn secret_files_are_kept_as_references_and_must_be_readable() {
        let file = std::env::temp_dir().join(format!("sockpulse-config-secret-{}", std::process::id()));
        std::fs::write(&file, "tok\n").expect("write");
        let text = format!(
            "[[target]]\nurl = \"ws://h/\"\nheaders = {{ Authorization = \"Bearer ${{file:{}}}\" }}\n\
             protocol = \"socketio\"\nsocketio = {{ auth = '${{file:{}}}' }}\n",
            file.display(),
            file.display()
        );
        let cfg = parse_ok(&text);
        let t = &cfg.targets[0];
        assert_eq!(&t.secret_files[..], std::slice::from_ref(&file), "each file once");
        assert_eq!(
            t.ws.headers[0].1,
            format!("Bearer ${{file:{}}}", file.display()),
            "read at connect, not now"
        );
        let _ = std::fs::remove_file(&file);
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|p| p.field == "target[0].headers.Authorization" && p.message.contains("cannot read secret file")),
            "{p:?}"
        );
        let p = problems("[[target]]\nurl = \"ws://h/\"\nheaders = { A = \"${file:relative}\" }\n");
        assert!(p[0].message.contains("absolute"), "{p:?}");
    }

    #[test]
    fn protocols_take_their_options_and_adjust_the_target() {
        let cfg = parse(
            r#"
            [[target]]
            url = "ws://h:3000/"
            protocol = "socketio"
            socketio = { namespace = "/admin", auth = '{"token":"${TOKEN}"}' }
            [[target]]
            url = "wss://h/graphql"
            protocol = "graphql-ws"
            graphql = { payload = '{"a":1}' }
            message_timeout = "30s"
            [[target]]
            url = "ws://h/feed"
            probe = { send = '{"op":"ping","id":${seq}}', expect = '"op":"pong".*"id":${seq}' }
            "#,
            "t",
            &[],
            &|k| (k == "TOKEN").then(|| "s3cret".to_string()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let sio = &cfg.targets[0];
        assert_eq!(sio.ws.path, "/socket.io/?EIO=4&transport=websocket");
        match &sio.protocol {
            crate::session::spec::Protocol::SocketIo(o) => {
                assert_eq!((o.eio, o.namespace.as_str()), (4, "/admin"));
                assert_eq!(o.auth.as_deref(), Some(r#"{"token":"s3cret"}"#));
            }
            other => panic!("{other:?}"),
        }
        let gql = &cfg.targets[1];
        assert_eq!(gql.ws.subprotocols, ["graphql-transport-ws"]);
        assert_eq!(gql.timing.message_timeout, Some(Duration::from_secs(30)));
        assert!(cfg.targets[2].app_probe.is_some());
        let f = fields(
            "[[target]]\nurl = \"ws://h/\"\nprotocol = \"carrier-pigeon\"\n\
             [[target]]\nurl = \"ws://h/?EIO=2\"\nprotocol = \"socketio\"\n\
             [[target]]\nurl = \"ws://h2/\"\nprotocol = \"socketio\"\nsocketio = { auth = \"not json\", namespace = \"x\" }\n\
             [[target]]\nurl = \"ws://h3/\"\nprotocol = \"graphql-ws\"\nsubprotocols = [\"other\"]\n\
             [[target]]\nurl = \"ws://h4/\"\nprobe = { send = \"x\", expect = \"(\" }\n\
             [[target]]\nurl = \"ws://h5/\"\nprotocol = \"mqtt\"\nconnections = 2\n\
             mqtt = { version = \"4\", client_id = \"fixed\", password = \"p\" }\n\
             [[target]]\nurl = \"ws://h6/\"\nprotocol = \"stomp\"\nstomp = { host = \"a\\nb\", colour = 1 }\n",
        );
        assert_eq!(
            f,
            vec![
                "target[0].protocol",
                "target[1].url",
                "target[2].socketio.namespace",
                "target[2].socketio.auth",
                "target[3].subprotocols",
                "target[4].probe.expect",
                "target[5].mqtt.version",
                "target[5].mqtt.client_id",
                "target[5].mqtt.password",
                "target[6].stomp.colour",
                "target[6].stomp.host",
            ]
        );
        let cfg = parse_ok(
            "[[target]]\nurl = \"ws://h/ws\"\nprotocol = \"mqtt\"\nmqtt = { version = \"5\", topic = \"a/#\" }\n\
             [[target]]\nurl = \"ws://h2/ws\"\nprotocol = \"stomp\"\n",
        );
        assert_eq!(cfg.targets[0].ws.subprotocols, ["mqtt"]);
        assert_eq!(cfg.targets[1].ws.subprotocols, ["v12.stomp", "v11.stomp"]);
        assert!(
            matches!(&cfg.targets[1].protocol, crate::session::spec::Protocol::Stomp(o) if o.receipt && o.host == "/")
        );
    }

    #[test]
    fn missing_env_var_and_duplicate_names_are_problems() {
        let p = problems(
            "[[target]]\nurl = \"ws://h/\"\nheaders = { X-Token = \"${NOPE}\" }\n[[target]]\nurl = \"ws://h/\"\n",
        );
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("target[0].headers.X-Token") && t.contains("NOPE")),
            "{text:?}"
        );
        assert!(text.iter().any(|t| t.starts_with("target[1].name")), "{text:?}");
    }

    #[test]
    fn kernel_section_is_validated() {
        let cfg =
            parse_ok("[kernel]\nscan_interval = \"2s\"\nwatch_ports = [8080, 6379]\nclose_wait_age_alert = \"1m\"\n");
        assert_eq!(cfg.kernel.scan_interval, Some(Duration::from_secs(2)));
        assert_eq!(cfg.kernel.watch_ports, vec![8080, 6379]);
        assert_eq!(cfg.kernel.close_wait_age_alert, Duration::from_secs(60));
        assert_eq!(
            parse_ok("[kernel]\nscan_interval = \"off\"\n").kernel.scan_interval,
            None
        );
        let f = fields("[kernel]\nwatch_ports = [0, 70000, \"x\"]\nnetns_pid = -1\nbogus = 1\n");
        assert_eq!(
            f,
            vec![
                "kernel.bogus",
                "kernel.netns_pid",
                "kernel.watch_ports[0]",
                "kernel.watch_ports[1]",
                "kernel.watch_ports[2]"
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let p = problems("[defaults]\nping_interval = \n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "line 2");
    }

    #[test]
    fn wss_with_missing_ca_file_is_a_problem() {
        let p = problems("[[target]]\nurl = \"wss://h/\"\ntls = { ca_file = \"/nonexistent/ca.pem\" }\n");
        assert_eq!(p[0].field, "target[0].tls");
        assert!(p[0].message.contains("/nonexistent/ca.pem"), "{}", p[0].message);
    }

    #[test]
    fn tls_resumption_is_on_by_default_and_a_non_boolean_is_a_problem() {
        let resumes = |tls: &str| {
            let c = parse_ok(&format!("[[target]]\nurl = \"wss://h/\"\n{tls}\n"));
            let config = &c.targets[0].tls.as_ref().expect("tls built").config;
            // Tickets (TLS 1.3) go to the target's pool; nothing is kept
            // when resumption is off.
            let resumption = format!("{:?}", config.resumption);
            assert_eq!(
                resumption.contains("TicketPool"),
                !resumption.contains("NoClientSessionStorage")
            );
            resumption.contains("TicketPool")
        };
        assert!(resumes(""));
        assert!(resumes("tls = { resumption = true }"));
        assert!(!resumes("tls = { resumption = false }"));
        assert_eq!(
            fields("[[target]]\nurl = \"wss://h/\"\ntls = { resumption = \"yes\" }\n"),
            ["target[0].tls.resumption"]
        );
    }

    #[test]
    fn close_rst_is_inherited_from_defaults_and_unknown_values_are_problems() {
        let c = parse_ok("[defaults]\nclose = \"rst\"\n[[target]]\nurl = \"ws://h/\"\n[[target]]\nurl = \"tcp://h:1\"\nclose = \"clean\"\n");
        assert!(c.targets[0].socket.reset_on_close);
        assert!(!c.targets[1].socket.reset_on_close);
        assert!(
            !parse_ok("[[target]]\nurl = \"ws://h/\"\n").targets[0]
                .socket
                .reset_on_close
        );
        let p = problems("[[target]]\nurl = \"ws://h/\"\nclose = \"fin\"\n");
        assert_eq!(p[0].field, "target[0].close");
        assert!(p[0].message.contains("\"rst\""), "{}", p[0].message);
    }

    #[test]
    fn proxies_come_from_defaults_targets_or_the_environment() {
        let text = "[defaults]\nproxy = \"http://u:${PW}@p:3128\"\n\
            [[target]]\nurl = \"ws://a/\"\n\
            [[target]]\nurl = \"ws://b/\"\nproxy = \"off\"\n\
            [[target]]\nurl = \"wss://c/\"\nproxy = \"env\"\n\
            [[target]]\nurl = \"wss://d.internal/\"\nproxy = \"env\"\n";
        let env = |k: &str| match k {
            "PW" => Some("s3cret".to_string()),
            "HTTPS_PROXY" => Some("socks5h://s:1080".to_string()),
            "NO_PROXY" => Some(".internal".to_string()),
            _ => None,
        };
        let c = parse(text, "t", &[], &env).unwrap_or_else(|e| panic!("{e}"));
        let shown: Vec<Option<String>> = c
            .targets
            .iter()
            .map(|t| t.proxy.as_ref().map(|p| p.to_string()))
            .collect();
        assert_eq!(
            shown,
            [
                Some("http://***@p:3128".into()),
                None,
                Some("socks5h://s:1080".into()),
                None
            ]
        );
        let auth = c.targets[0].proxy.as_ref().and_then(|p| p.auth.as_ref()).unwrap();
        assert_eq!((auth.user.as_str(), auth.password.as_str()), ("u", "s3cret"));

        let urls = UrlTargets {
            urls: &["ws://e/".to_string()],
            proxy: Some("socks5://q:9"),
            base: None,
            read_files: &no_files,
        };
        let c = parse_with("", "t", &urls, &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.targets[0].proxy.as_ref().map(|p| p.to_string()),
            Some("socks5://q:9".into())
        );

        assert_eq!(
            fields("[[target]]\nurl = \"ws://a/\"\nproxy = \"ftp://x:1\"\n"),
            ["target[0].proxy"]
        );
    }

    #[test]
    fn endpoints_all_takes_its_interval_and_limit_and_nothing_contradicting_it() {
        use crate::session::spec::Endpoints;
        let c = parse_ok(
            "[[target]]\nurl = \"ws://svc/\"\nendpoints = \"all\"\n\
             [[target]]\nurl = \"ws://svc2/\"\nendpoints = \"all\"\nresolve_interval = \"5s\"\nmax_endpoints = 8\n\
             [[target]]\nurl = \"ws://svc3/\"\n\
             [[target]]\nurl = \"wss://svc4/\"\nsrv = \"_wss._tcp.svc4.internal\"\n",
        );
        let all = |secs, max, srv: Option<&str>| Endpoints::All {
            resolve_interval: Duration::from_secs(secs),
            max_endpoints: max,
            srv: srv.map(std::sync::Arc::from),
        };
        let got: Vec<Endpoints> = c.targets.iter().map(|t| t.endpoints.clone()).collect();
        assert_eq!(
            got,
            [
                all(30, 64, None),
                all(5, 8, None),
                Endpoints::First,
                all(30, 64, Some("_wss._tcp.svc4.internal"))
            ]
        );
        assert_eq!(
            fields(
                "[[target]]\nurl = \"ws://a/\"\nresolve_interval = \"5s\"\n\
                 [[target]]\nurl = \"ws://b/\"\nendpoints = \"every\"\n\
                 [[target]]\nurl = \"ws://c/\"\nendpoints = \"all\"\nproxy = \"http://p:1\"\n\
                 [[target]]\nurl = \"ws://d/\"\nendpoints = \"all\"\nmax_endpoints = 0\n\
                 [[target]]\nurl = \"ws://e/\"\nsrv = \"not a name\"\n\
                 [[target]]\nurl = \"ws://f/\"\nsrv = \"_ws._tcp.f\"\nendpoints = \"first\"\n"
            ),
            [
                "target[0].resolve_interval",
                "target[1].endpoints",
                "target[2].endpoints",
                "target[3].max_endpoints",
                "target[4].srv",
                "target[5].srv"
            ]
        );
    }

    #[test]
    fn idle_discovery_is_for_sessions_that_can_be_silent_and_then_probed() {
        let c = parse_ok(
            "[[target]]\nurl = \"ws://a/\"\nidle_discovery = {}\n\
             [[target]]\nurl = \"tcp://b:1\"\nprobe = { send = \"x\", expect = \"y\" }\nidle_discovery = { max = \"2m\" }\n",
        );
        assert_eq!(c.targets[0].idle_discovery, Some(Duration::from_secs(900)));
        assert_eq!(c.targets[1].idle_discovery, Some(Duration::from_secs(120)));
        assert_eq!(
            fields(
                "[[target]]\nurl = \"ws://a/\"\nprotocol = \"socketio\"\nidle_discovery = {}\n\
                 [[target]]\nurl = \"tcp://b:1\"\nidle_discovery = {}\n\
                 [[target]]\nurl = \"ws://c/\"\nidle_discovery = { max = \"soon\" }\n"
            ),
            [
                "target[0].idle_discovery",
                "target[1].idle_discovery",
                "target[2].idle_discovery.max"
            ]
        );
    }

    #[test]
    fn labels_are_prometheus_label_names_and_change_no_fingerprint() {
        let with = |labels: &str| parse_ok(&format!("[[target]]\nurl = \"ws://a/\"\n{labels}\n")).targets[0].clone();
        let a = with("labels = { team = \"pay\", env = \"prod\" }");
        assert_eq!(
            a.labels,
            [
                ("env".to_string(), "prod".to_string()),
                ("team".to_string(), "pay".to_string())
            ]
        );
        assert_eq!(
            a.fingerprint,
            with("labels = { team = \"ops\" }").fingerprint,
            "relabelling keeps sessions"
        );
        assert_eq!(a.fingerprint, with("").fingerprint);
        assert_eq!(
            fields(
                "[[target]]\nurl = \"ws://a/\"\nlabels = { \"1x\" = \"v\", __x = \"v\", target = \"v\", instance = \"v\", n = 1 }\n"
            ),
            [
                "target[0].labels.1x",
                "target[0].labels.__x",
                "target[0].labels.instance",
                "target[0].labels.n",
                "target[0].labels.target"
            ]
        );
    }

    #[test]
    fn target_files_add_targets_with_their_groups_labels_relative_to_the_config() {
        let read = |patterns: &[PathBuf]| -> Result<file_sd::Files, String> {
            assert_eq!(
                patterns,
                [
                    PathBuf::from("/etc/sockpulse/targets/*.json"),
                    PathBuf::from("/abs/x.yml")
                ]
            );
            Ok(vec![
                (
                    "/etc/sockpulse/targets/a.json".into(),
                    r#"[{"targets": ["ws://a:1/", "tcp://b:2"], "labels": {"team": "x"}}]"#.into(),
                ),
                ("/abs/x.yml".into(), "- targets: ['wss://c/']\n".into()),
            ])
        };
        let urls = UrlTargets {
            urls: &[],
            proxy: None,
            base: Some(Path::new("/etc/sockpulse")),
            read_files: &read,
        };
        let text = "target_files = [\"targets/*.json\", \"/abs/x.yml\"]\n[defaults]\nconnections = 3\n";
        let c = parse_with(text, "t", &urls, &no_env).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(&str, u32, usize)> = c
            .targets
            .iter()
            .map(|t| (t.name.as_str(), t.connections, t.labels.len()))
            .collect();
        assert_eq!(got, [("ws://a:1/", 3, 1), ("tcp://b:2", 3, 1), ("wss://c/", 3, 0)]);
        assert_eq!(c.target_files.len(), 2);

        // A broken file, a bad URL and a duplicate are problems naming where.
        let bad = |_: &[PathBuf]| -> Result<file_sd::Files, String> {
            Ok(vec![
                ("/t/a.json".into(), r#"[{"targets": ["ftp://x/", "ws://d/"]}]"#.into()),
                ("/t/b.json".into(), "{".into()),
            ])
        };
        let urls = UrlTargets {
            urls: &[],
            proxy: None,
            base: None,
            read_files: &bad,
        };
        let text = "target_files = [\"/t/*.json\"]\n[[target]]\nurl = \"ws://d/\"\n";
        let fields: Vec<String> = parse_with(text, "t", &urls, &no_env)
            .expect_err("problems")
            .problems
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "/t/a.json[group 0].targets[0]",
                "target_files: /t/b.json",
                "/t/a.json[group 0].targets[1]"
            ]
        );
    }

    #[test]
    fn a_file_groups_module_label_gives_its_targets_that_modules_options() {
        let read = |_: &[PathBuf]| -> Result<file_sd::Files, String> {
            Ok(vec![(
                "/t/a.json".into(),
                r#"[{"targets": ["ws://a/"], "labels": {"__module__": "slow", "team": "x"}},
                    {"targets": ["ws://b/"]},
                    {"targets": ["ws://c/"], "labels": {"__module__": "nope"}}]"#
                    .into(),
            )])
        };
        let urls = UrlTargets {
            urls: &[],
            proxy: None,
            base: None,
            read_files: &read,
        };
        let text = "target_files = [\"/t/*.json\"]\n[module.slow]\nping_interval = \"3s\"\npong_timeout = \"1s\"\n";
        let problems = parse_with(text, "t", &urls, &no_env)
            .expect_err("unknown module")
            .problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "/t/a.json[group 2].targets[0]");
        assert!(
            problems[0].message.contains("__module__ names no [module.nope]"),
            "{}",
            problems[0].message
        );

        let read = |_: &[PathBuf]| -> Result<file_sd::Files, String> {
            Ok(vec![(
                "/t/a.json".into(),
                r#"[{"targets": ["ws://a/"], "labels": {"__module__": "slow", "team": "x"}}, {"targets": ["ws://b/"]}]"#.into(),
            )])
        };
        let urls = UrlTargets {
            urls: &[],
            proxy: None,
            base: None,
            read_files: &read,
        };
        let c = parse_with(text, "t", &urls, &no_env).unwrap_or_else(|e| panic!("{e}"));
        let intervals: Vec<Option<Duration>> = c.targets.iter().map(|t| t.timing.ping_interval).collect();
        assert_eq!(intervals, [Some(Duration::from_secs(3)), Some(Duration::from_secs(10))]);
        assert_eq!(c.targets[0].labels, [("team".to_string(), "x".to_string())]);
    }
}
