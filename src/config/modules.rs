//! `/probe` settings: `[module.NAME]` option templates (everything a target
//! may set but its URL, name, labels and what only persistent sessions do)
//! and the `[probe]` section. A probe's target is built from its URL and
//! its module when it is asked for, with the `[defaults]` of the
//! configuration it came with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use toml::Table;

use super::defaults::{self, Defaults};
use super::walker::{join, Walker};
use super::{protocol, resolve, target};
use crate::session::spec::TargetSpec;

/// Target keys a module may not set: the URL and name come with each probe;
/// the rest only mean something for persistent sessions.
const NOT_IN_MODULES: &[&str] = &[
    "url",
    "name",
    "labels",
    "endpoints",
    "resolve_interval",
    "max_endpoints",
    "srv",
    "idle_discovery",
    "connections",
    "max_connecting",
];

/// The `[probe]` section and the modules.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    modules: BTreeMap<String, Table>,
    defaults: Defaults,
    /// Probes running at once; more fail at once.
    pub max_concurrent: usize,
    /// Taken off Prometheus's scrape timeout, so the answer arrives in time.
    pub timeout_offset: Duration,
    /// The probe's deadline when the scraper sends no timeout.
    pub default_timeout: Duration,
    /// Probes (pings) per check, `interval` apart.
    pub pings: u32,
    pub interval: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            modules: BTreeMap::new(),
            defaults: Defaults::default(),
            max_concurrent: 32,
            timeout_offset: Duration::from_millis(500),
            default_timeout: Duration::from_secs(10),
            pings: 3,
            interval: Duration::from_millis(200),
        }
    }
}

/// Reads `[module.*]` and `[probe]` of `doc`.
pub(super) fn read(w: &mut Walker<'_>, doc: &Table, defaults: &Defaults) -> ProbeConfig {
    let mut cfg = ProbeConfig {
        defaults: defaults.clone(),
        ..ProbeConfig::default()
    };
    if let Some(modules) = w.table(doc, "", "module") {
        let allowed: Vec<&str> = defaults::KEYS
            .iter()
            .chain(target::TARGET_ONLY_KEYS)
            .chain(target::WS_ONLY_KEYS)
            .chain(protocol::KEYS)
            .copied()
            .filter(|k| !NOT_IN_MODULES.contains(k))
            .collect();
        for (name, value) in modules {
            let path = join("module", name);
            match value.as_table() {
                Some(t) => {
                    w.check_keys(t, &path, &[&allowed]);
                    cfg.modules.insert(name.clone(), t.clone());
                }
                None => w.problem(path, format!("expected a table, found {}", value.type_str())),
            }
        }
    }
    if let Some(p) = w.table(doc, "", "probe") {
        w.check_keys(
            p,
            "probe",
            &[&[
                "max_concurrent",
                "timeout_offset",
                "default_timeout",
                "pings",
                "interval",
            ]],
        );
        if let Some(n) = w.int(p, "probe", "max_concurrent", 1, 4096) {
            cfg.max_concurrent = n as usize;
        }
        if let Some(d) = w.optional_duration(p, "probe", "timeout_offset") {
            cfg.timeout_offset = d.unwrap_or_default();
        }
        if let Some(d) = w.duration(p, "probe", "default_timeout") {
            cfg.default_timeout = d;
        }
        if let Some(n) = w.int(p, "probe", "pings", 0, 100) {
            cfg.pings = n as u32;
        }
        if let Some(d) = w.duration(p, "probe", "interval") {
            cfg.interval = d;
        }
    }
    cfg
}

impl ProbeConfig {
    /// The options of module `name`, as written.
    pub(super) fn module(&self, name: &str) -> Option<&Table> {
        self.modules.get(name)
    }

    /// The target a probe of `url` with `module` checks, or why it cannot:
    /// every problem, one per line.
    pub fn target(&self, url: &str, module: Option<&str>) -> Result<Arc<TargetSpec>, String> {
        let mut table = match module {
            Some(name) => self
                .modules
                .get(name)
                .cloned()
                .ok_or_else(|| format!("unknown module {name:?}"))?,
            None => Table::new(),
        };
        table.insert("url".into(), toml::Value::String(url.to_string()));
        let env = |k: &str| std::env::var(k).ok();
        let mut w = Walker::new(&env);
        let plain = target::read(&mut w, &table, "probe", &self.defaults);
        let mut built = resolve::targets(&mut w, plain.into_iter().collect());
        if !w.problems.is_empty() {
            let lines: Vec<String> = w
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            return Err(lines.join("\n"));
        }
        let mut spec = built.pop().ok_or_else(|| "no target".to_string())?;
        // One session, probing back to back as `status` does.
        let s = Arc::make_mut(&mut spec);
        s.connections = 1;
        if s.timing.ping_interval.is_some() {
            s.timing.ping_interval = Some(self.interval);
        }
        Ok(spec)
    }
}
