//! Reading TOML values while collecting every problem, each with the
//! field path it belongs to, instead of stopping at the first.

use std::path::PathBuf;
use std::time::Duration;

use toml::{Table, Value};

use super::Problem;

/// Collects problems while walking the document.
pub(super) struct Walker<'e> {
    pub problems: Vec<Problem>,
    env: &'e dyn Fn(&str) -> Option<String>,
    /// Files `${file:PATH}` referred to since the last `take_secret_files`.
    secret_files: Vec<PathBuf>,
}

impl<'e> Walker<'e> {
    pub fn new(env: &'e dyn Fn(&str) -> Option<String>) -> Self {
        Walker {
            problems: Vec::new(),
            env,
            secret_files: Vec::new(),
        }
    }

    /// The environment `${VAR}` reads from.
    pub fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    pub fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn check_keys(&mut self, table: &Table, path: &str, allowed: &[&[&str]]) {
        for key in table.keys() {
            if !allowed.iter().any(|set| set.contains(&key.as_str())) {
                let mut known: Vec<&str> = allowed.iter().flat_map(|s| s.iter().copied()).collect();
                known.sort_unstable();
                self.problem(join(path, key), format!("unknown key (known: {})", known.join(", ")));
            }
        }
    }

    pub fn str<'v>(&mut self, table: &'v Table, path: &str, key: &str) -> Option<&'v str> {
        match table.get(key)? {
            Value::String(s) => Some(s),
            other => {
                self.problem(
                    join(path, key),
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub fn bool(&mut self, table: &Table, path: &str, key: &str) -> Option<bool> {
        match table.get(key)? {
            Value::Boolean(b) => Some(*b),
            other => {
                self.problem(
                    join(path, key),
                    format!("expected true or false, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub fn int(&mut self, table: &Table, path: &str, key: &str, min: i64, max: i64) -> Option<i64> {
        match table.get(key)? {
            Value::Integer(i) if (min..=max).contains(i) => Some(*i),
            Value::Integer(i) => {
                self.problem(join(path, key), format!("{i} is out of range {min}..={max}"));
                None
            }
            other => {
                self.problem(
                    join(path, key),
                    format!("expected an integer, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub fn table<'v>(&mut self, table: &'v Table, path: &str, key: &str) -> Option<&'v Table> {
        match table.get(key)? {
            Value::Table(t) => Some(t),
            other => {
                self.problem(join(path, key), format!("expected a table, found {}", other.type_str()));
                None
            }
        }
    }

    pub fn strings(&mut self, table: &Table, path: &str, key: &str) -> Option<Vec<String>> {
        let field = join(path, key);
        match table.get(key)? {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => self.problem(
                            format!("{field}[{i}]"),
                            format!("expected a string, found {}", other.type_str()),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.problem(
                    field,
                    format!("expected an array of strings, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// A positive duration such as "10s" or "1m30s".
    pub fn duration(&mut self, table: &Table, path: &str, key: &str) -> Option<Duration> {
        match self.optional_duration(table, path, key)? {
            Some(d) => Some(d),
            None => {
                self.problem(join(path, key), "cannot be turned off");
                None
            }
        }
    }

    /// A duration, or "off" (also "0s") to disable. Outer `None`: not set.
    pub fn optional_duration(&mut self, table: &Table, path: &str, key: &str) -> Option<Option<Duration>> {
        let text = self.str(table, path, key)?;
        if text.eq_ignore_ascii_case("off") {
            return Some(None);
        }
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => Some(None),
            Ok(d) => Some(Some(d)),
            Err(e) => {
                self.problem(
                    join(path, key),
                    format!("{text:?} is not a duration like \"10s\" or \"1m30s\" ({e})"),
                );
                None
            }
        }
    }

    /// `${VAR}` replaced from the environment; `${file:PATH}` kept for the
    /// session to fill in at every connect (the file must be readable now).
    pub fn expand_env(&mut self, field: &str, value: &str) -> String {
        let mut out = String::new();
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let name = &after[..end];
                    if let Some(path) = name.strip_prefix("file:") {
                        self.secret_file(field, path);
                        out.push_str(&rest[start..start + 2 + end + 1]);
                    } else {
                        match (self.env)(name) {
                            Some(v) => out.push_str(&v),
                            None => self.problem(field, format!("environment variable {name} is not set")),
                        }
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    self.problem(field, "unterminated ${ in value");
                    return out;
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn secret_file(&mut self, field: &str, path: &str) {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            self.problem(
                field,
                format!("secret file {} must be an absolute path", path.display()),
            );
            return;
        }
        // Checked now so that a typo is a config error, not a failing session.
        if let Err(e) = std::fs::File::open(&path) {
            self.problem(field, format!("cannot read secret file {}: {e}", path.display()));
        }
        if !self.secret_files.contains(&path) {
            self.secret_files.push(path);
        }
    }

    /// The files `${file:PATH}` referred to since the last call.
    pub fn take_secret_files(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.secret_files)
    }
}

/// `path.key`, or `key` at the top.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}
