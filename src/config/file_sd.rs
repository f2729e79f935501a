//! Targets from files in Prometheus's `file_sd` format: JSON (`.json`) or
//! YAML (`.yml`, `.yaml`), a list of groups, each `targets` (here: target
//! URLs) with `labels` for all of them. `target_files` patterns may have
//! `*` and `?` in their last path component, as Prometheus allows; relative
//! ones are relative to the configuration file. Reading files is here;
//! turning groups into targets is the configuration's.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Files read: each path with its content.
pub type Files = Vec<(PathBuf, String)>;

/// What reads the files patterns match (the file system, or a test's).
pub type Reader = dyn Fn(&[PathBuf]) -> Result<Files, String>;

/// The group label that picks a `[module.NAME]` for its targets (dropped
/// with the other `__` labels, as Prometheus does after relabelling).
pub const MODULE_LABEL: &str = "__module__";

/// One group of targets from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// `FILE[group N]`, for problems.
    pub source: String,
    pub targets: Vec<String>,
    /// Its `__module__` label: the options template of its targets.
    pub module: Option<String>,
    /// Labels for every target of the group, without the `__`-prefixed ones
    /// (Prometheus drops those after relabelling too).
    pub labels: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct RawGroup {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// The groups of one file's `text`.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Group>, String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let raw: Vec<RawGroup> = match ext {
        "json" => serde_json::from_str(text).map_err(|e| e.to_string())?,
        "yml" | "yaml" => serde_norway::from_str(text).map_err(|e| e.to_string())?,
        _ => return Err("not a .json, .yml or .yaml file".into()),
    };
    Ok(raw
        .into_iter()
        .enumerate()
        .map(|(i, g)| Group {
            source: format!("{}[group {i}]", path.display()),
            targets: g.targets,
            module: g.labels.get(MODULE_LABEL).cloned(),
            labels: g.labels.into_iter().filter(|(k, _)| !k.starts_with("__")).collect(),
        })
        .collect())
}

/// Files matching `pattern` (wildcards in the file name only), sorted.
pub fn matching(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let name = pattern
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: no file name", pattern.display()))?;
    if !name.contains(['*', '?']) {
        return Ok(if pattern.is_file() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let dir = pattern
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if dir.to_str().is_some_and(|d| d.contains(['*', '?'])) {
        return Err(format!("{}: wildcards only in the file name", pattern.display()));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // A directory that does not exist (yet) has no files.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| wildcard(name, n))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Every file the patterns match, with its content.
pub fn read(patterns: &[PathBuf]) -> Result<Files, String> {
    let mut out = Vec::new();
    for p in patterns {
        for file in matching(p)? {
            match std::fs::read_to_string(&file) {
                Ok(text) => out.push((file, text)),
                // Deleted between listing and reading: it is gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", file.display())),
            }
        }
    }
    Ok(out)
}

/// Changes when any matching file appears, changes or goes.
pub fn signature(patterns: &[PathBuf]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match read(patterns) {
        Ok(files) => files.hash(&mut h),
        Err(e) => e.hash(&mut h),
    }
    h.finish()
}

/// `*` (any run) and `?` (one character) against `name`.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_groups_keep_targets_and_labels_but_not_double_underscore_ones() {
        let json = r#"[{"targets": ["ws://a:1/", "tcp://b:2"], "labels": {"team": "x", "__meta_y": "z"}},
                       {"targets": ["wss://c/"]}]"#;
        let groups = parse(Path::new("/t/a.json"), json).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].targets, ["ws://a:1/", "tcp://b:2"]);
        assert_eq!(groups[0].labels, [("team".to_string(), "x".to_string())]);
        assert_eq!(groups[1].source, "/t/a.json[group 1]");
        let yaml = "- targets: ['ws://a:1/']\n  labels:\n    team: y\n";
        assert_eq!(
            parse(Path::new("b.yml"), yaml).unwrap()[0].labels,
            [("team".to_string(), "y".to_string())]
        );
        assert!(parse(Path::new("c.json"), "{broken").is_err());
        assert!(parse(Path::new("c.json"), r#"[{"labels": {}}]"#)
            .unwrap_err()
            .contains("targets"));
        assert!(parse(Path::new("c.txt"), "[]").is_err());
    }

    #[test]
    fn wildcards_match_file_names_as_prometheus_does() {
        assert!(wildcard("*.json", "a.json"));
        assert!(wildcard("tg_*.json", "tg_web.json"));
        assert!(!wildcard("tg_*.json", "tg_web.yml"));
        assert!(wildcard("t?.yml", "t1.yml"));
        assert!(!wildcard("t?.yml", "t12.yml"));
        assert!(wildcard("*", ""));
        let dir = std::env::temp_dir().join(format!("sockpulse-filesd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["a.json", "b.json", "c.yml"] {
            std::fs::write(dir.join(f), "[]").unwrap();
        }
        let found = matching(&dir.join("*.json")).unwrap();
        assert_eq!(found, [dir.join("a.json"), dir.join("b.json")]);
        assert_eq!(matching(&dir.join("c.yml")).unwrap(), [dir.join("c.yml")]);
        assert!(matching(&dir.join("none-*.json")).unwrap().is_empty());
        assert!(matching(&dir.join("gone").join("*.json")).unwrap().is_empty());
        let before = signature(&[dir.join("*.json")]);
        std::fs::write(dir.join("b.json"), "[ ]").unwrap();
        assert_ne!(before, signature(&[dir.join("*.json")]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
