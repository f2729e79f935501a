//! A WebSocket target's application protocol (`protocol` and its option
//! table), its custom probe, and what they change in the target: the
//! Socket.IO path and query, the GraphQL subprotocol.

use toml::Table;

use super::walker::{join, Walker};
#[cfg(test)]
use crate::session::app::seq_group;
use crate::session::spec::{
    AppProbe, GraphqlWsOptions, MqttOptions, MqttVersion, ProbeAnswer, ProbeMessage, Protocol, SocketIoOptions,
    StompOptions, WsOptions,
};

/// The protocols `protocol = "…"` names.
pub(super) const NAMES: &[&str] = &["ws", "socketio", "graphql-ws", "mqtt", "stomp"];
/// Each protocol's option table, by the key it sits under.
const TABLES: &[(&str, &str)] = &[
    ("socketio", "socketio"),
    ("graphql", "graphql-ws"),
    ("mqtt", "mqtt"),
    ("stomp", "stomp"),
];
/// The subprotocol of GraphQL over WebSocket (the graphql-ws library's).
pub const GRAPHQL_SUBPROTOCOL: &str = "graphql-transport-ws";

/// Keys this module reads from a WebSocket target.
pub(super) const KEYS: &[&str] = &["protocol", "socketio", "graphql", "mqtt", "stomp"];
/// The subprotocols MQTT and STOMP over WebSocket are offered with.
const MQTT_SUBPROTOCOLS: &[&str] = &["mqtt"];
const STOMP_SUBPROTOCOLS: &[&str] = &["v12.stomp", "v11.stomp"];

/// Reads `protocol` and its options; adjusts `ws` (path, subprotocols) to
/// what the protocol needs.
pub(super) fn read(w: &mut Walker<'_>, table: &Table, path: &str, ws: &mut WsOptions, connections: u32) -> Protocol {
    let name = w.str(table, path, "protocol").unwrap_or("ws");
    if !NAMES.contains(&name) {
        w.problem(
            join(path, "protocol"),
            format!("{name:?} is not one of {}", NAMES.join(", ")),
        );
        return Protocol::Ws;
    }
    for &(key, owner) in TABLES {
        if table.contains_key(key) && owner != name {
            w.problem(join(path, key), format!("needs protocol = {owner:?}"));
        }
    }
    match name {
        "socketio" => read_socketio(w, table, path, ws),
        "graphql-ws" => read_graphql(w, table, path, ws),
        "mqtt" => read_mqtt(w, table, path, ws, connections),
        "stomp" => read_stomp(w, table, path, ws),
        _ => Protocol::Ws,
    }
}

fn read_mqtt(w: &mut Walker<'_>, table: &Table, path: &str, ws: &mut WsOptions, connections: u32) -> Protocol {
    let mut o = MqttOptions {
        version: MqttVersion::V311,
        client_id: String::new(),
        username: None,
        password: None,
        clean_session: true,
        topic: None,
    };
    if let Some(t) = w.table(table, path, "mqtt") {
        let tpath = join(path, "mqtt");
        w.check_keys(
            t,
            &tpath,
            &[&["version", "client_id", "username", "password", "clean_session", "topic"]],
        );
        match w.str(t, &tpath, "version") {
            None | Some("3.1.1") => {}
            Some("5") => o.version = MqttVersion::V5,
            Some(other) => w.problem(join(&tpath, "version"), format!("{other:?} is not \"3.1.1\" or \"5\"")),
        }
        if let Some(id) = w.str(t, &tpath, "client_id") {
            o.client_id = id.to_string();
            if connections > 1 {
                w.problem(
                    join(&tpath, "client_id"),
                    "one client id for several connections: the broker keeps one session per id and drops the others",
                );
            }
        }
        o.username = secret(w, t, &tpath, "username");
        o.password = secret(w, t, &tpath, "password");
        o.clean_session = w.bool(t, &tpath, "clean_session").unwrap_or(true);
        o.topic = w.str(t, &tpath, "topic").map(str::to_string);
        if o.password.is_some() && o.username.is_none() && o.version == MqttVersion::V311 {
            w.problem(
                join(&tpath, "password"),
                "MQTT 3.1.1 sends a password only with a username",
            );
        }
    }
    default_subprotocols(w, path, ws, MQTT_SUBPROTOCOLS);
    Protocol::Mqtt(o)
}

fn read_stomp(w: &mut Walker<'_>, table: &Table, path: &str, ws: &mut WsOptions) -> Protocol {
    let mut o = StompOptions {
        host: "/".into(),
        login: None,
        passcode: None,
        subscribe: None,
        receipt: true,
    };
    if let Some(t) = w.table(table, path, "stomp") {
        let tpath = join(path, "stomp");
        w.check_keys(t, &tpath, &[&["host", "login", "passcode", "subscribe", "receipt"]]);
        if let Some(host) = w.str(t, &tpath, "host") {
            o.host = host.to_string();
        }
        o.login = secret(w, t, &tpath, "login");
        o.passcode = secret(w, t, &tpath, "passcode");
        o.subscribe = w.str(t, &tpath, "subscribe").map(str::to_string);
        o.receipt = w.bool(t, &tpath, "receipt").unwrap_or(true);
        for (key, value) in [
            ("host", Some(&o.host)),
            ("login", o.login.as_ref()),
            ("passcode", o.passcode.as_ref()),
        ] {
            if value.is_some_and(|v| v.contains(['\n', '\r', '\0'])) {
                w.problem(join(&tpath, key), "must not contain line breaks or NUL");
            }
        }
    }
    default_subprotocols(w, path, ws, STOMP_SUBPROTOCOLS);
    Protocol::Stomp(o)
}

/// A string that may hold secrets: `${VAR}` expanded, never logged.
fn secret(w: &mut Walker<'_>, t: &Table, path: &str, key: &str) -> Option<String> {
    let raw = w.str(t, path, key)?;
    Some(w.expand_env(&join(path, key), raw))
}

/// Offers the protocol's subprotocols unless `subprotocols` names one of
/// them already.
fn default_subprotocols(w: &mut Walker<'_>, path: &str, ws: &mut WsOptions, wanted: &[&str]) {
    if ws.subprotocols.is_empty() {
        ws.subprotocols = wanted.iter().map(|s| s.to_string()).collect();
        ws.require_subprotocol = true;
    } else if !ws.subprotocols.iter().any(|s| wanted.contains(&s.as_str())) {
        w.problem(
            join(path, "subprotocols"),
            format!(
                "this protocol speaks {}: list one or leave subprotocols out",
                wanted.join(" or ")
            ),
        );
    }
}

fn read_socketio(w: &mut Walker<'_>, table: &Table, path: &str, ws: &mut WsOptions) -> Protocol {
    let mut o = SocketIoOptions {
        eio: 4,
        namespace: "/".into(),
        auth: None,
    };
    if let Some(t) = w.table(table, path, "socketio") {
        let tpath = join(path, "socketio");
        w.check_keys(t, &tpath, &[&["namespace", "auth"]]);
        if let Some(ns) = w.str(t, &tpath, "namespace") {
            if ns.starts_with('/') && !ns.contains(',') {
                o.namespace = ns.to_string();
            } else {
                w.problem(join(&tpath, "namespace"), "a namespace starts with / and has no comma");
            }
        }
        o.auth = read_json(w, t, &tpath, "auth");
    }
    match socketio_path(&ws.path) {
        Ok((p, eio)) => {
            ws.path = p;
            o.eio = eio;
        }
        Err(msg) => w.problem(join(path, "url"), msg),
    }
    if o.eio < 4 && o.auth.is_some() {
        w.problem(
            join(path, "socketio.auth"),
            "Engine.IO 3 (Socket.IO 2) has no connect payload: pass credentials in headers",
        );
    }
    Protocol::SocketIo(o)
}

/// The Socket.IO endpoint: `/socket.io/` unless the URL names a path, and
/// `EIO=4&transport=websocket` unless the query says otherwise. Returns the
/// path and query, and the Engine.IO revision.
pub fn socketio_path(path_and_query: &str) -> Result<(String, u8), String> {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let path = if path == "/" { "/socket.io/" } else { path };
    let mut params: Vec<String> = query.split('&').filter(|p| !p.is_empty()).map(str::to_string).collect();
    let mut eio = None;
    for p in &params {
        if let Some(v) = p.strip_prefix("EIO=") {
            eio = Some(match v {
                "3" => 3,
                "4" => 4,
                other => {
                    return Err(format!(
                        "EIO={other} is not an Engine.IO revision sockpulse speaks (3 or 4)"
                    ))
                }
            });
        }
        if let Some(t) = p.strip_prefix("transport=") {
            if t != "websocket" {
                return Err(format!("transport={t}: sockpulse holds the websocket transport only"));
            }
        }
    }
    if eio.is_none() {
        params.push("EIO=4".into());
    }
    if !params.iter().any(|p| p.starts_with("transport=")) {
        params.push("transport=websocket".into());
    }
    Ok((format!("{path}?{}", params.join("&")), eio.unwrap_or(4)))
}

fn read_graphql(w: &mut Walker<'_>, table: &Table, path: &str, ws: &mut WsOptions) -> Protocol {
    let mut o = GraphqlWsOptions::default();
    if let Some(t) = w.table(table, path, "graphql") {
        let tpath = join(path, "graphql");
        w.check_keys(t, &tpath, &[&["payload"]]);
        o.payload = read_json(w, t, &tpath, "payload");
    }
    default_subprotocols(w, path, ws, &[GRAPHQL_SUBPROTOCOL]);
    Protocol::GraphqlWs(o)
}

/// A JSON value after `${VAR}` expansion (it may hold secrets).
fn read_json(w: &mut Walker<'_>, t: &Table, path: &str, key: &str) -> Option<String> {
    let raw = w.str(t, path, key)?;
    let field = join(path, key);
    let text = w.expand_env(&field, raw);
    if text.contains("${file:") {
        // Filled in at every connect from the file: not JSON yet.
        return Some(text);
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(_)) => Some(text),
        Ok(_) => {
            w.problem(field, "must be a JSON object");
            None
        }
        // The text may hold a secret: the message names only the position.
        Err(e) => {
            w.problem(field, format!("is not JSON (line {}, column {})", e.line(), e.column()));
            None
        }
    }
}

/// A custom probe on a plain WebSocket target: `{ send, expect }` (text,
/// `${seq}` the probe's number, `expect` a regular expression) or
/// `{ send_hex, expect_hex }` (binary).
pub(super) fn read_probe(w: &mut Walker<'_>, p: &Table, ppath: &str) -> Option<AppProbe> {
    w.check_keys(p, ppath, &[&["send", "expect", "send_hex", "expect_hex"]]);
    let text = (w.str(p, ppath, "send"), w.str(p, ppath, "expect"));
    let hex = (w.str(p, ppath, "send_hex"), w.str(p, ppath, "expect_hex"));
    match (text, hex) {
        ((Some(send), Some(expect)), (None, None)) if !send.is_empty() && !expect.is_empty() => {
            let expect = match ProbeAnswer::text(expect) {
                Ok(answer) => answer,
                Err(msg) => {
                    w.problem(join(ppath, "expect"), msg);
                    return None;
                }
            };
            Some(AppProbe {
                send: ProbeMessage::Text(send.to_string()),
                expect,
            })
        }
        ((None, None), (Some(send), Some(expect))) => match (decode_hex(send), decode_hex(expect)) {
            (Some(send), Some(expect)) if !send.is_empty() && !expect.is_empty() => Some(AppProbe {
                send: ProbeMessage::Binary(send),
                expect: ProbeAnswer::Binary(expect),
            }),
            _ => {
                w.problem(
                    ppath,
                    "send_hex and expect_hex must be non-empty, even-length hex strings",
                );
                None
            }
        },
        _ => {
            w.problem(
                ppath,
                "needs non-empty send and expect (text), or send_hex and expect_hex (binary)",
            );
            None
        }
    }
}

pub(super) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socketio_paths_get_the_engine_io_query() {
        assert_eq!(
            socketio_path("/"),
            Ok(("/socket.io/?EIO=4&transport=websocket".into(), 4))
        );
        assert_eq!(
            socketio_path("/rt/?EIO=3&token=x"),
            Ok(("/rt/?EIO=3&token=x&transport=websocket".into(), 3))
        );
        assert!(socketio_path("/?EIO=2").is_err());
        assert!(socketio_path("/?transport=polling").is_err());
    }

    #[test]
    fn expect_patterns_capture_every_seq() {
        let ProbeAnswer::Text { pattern, seq_groups } =
            ProbeAnswer::text(r#""op":"pong".*"id":${seq}"#).expect("valid")
        else {
            panic!("a text answer");
        };
        assert_eq!(seq_groups, 1);
        let caps = pattern.captures(r#"{"op":"pong","id":17}"#).expect("matches");
        assert_eq!(caps.name(&seq_group(0)).map(|m| m.as_str()), Some("17"));
        assert!(ProbeAnswer::text("(unclosed").is_err());
    }
}
