//! Packaging: the .deb installs with dpkg and works; man page and
//! completions come from the CLI; the Containerfile and Kubernetes
//! manifests agree with the agent's defaults.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

const DEFAULT_PORT: u16 = 9747;

fn built_deb() -> Option<PathBuf> {
    std::fs::read_dir(repo().join("target/debian"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sockpulse_") && n.ends_with(".deb"))
        })
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// Every YAML document of `files` (paths in the repository), as PyYAML
/// reads them; `None` (after `require`) without Python.
fn yaml_docs(files: &[&str]) -> Option<Vec<serde_json::Value>> {
    let py = python()?;
    let script =
        "import sys, yaml, json\nprint(json.dumps([d for p in sys.argv[1:] for d in yaml.safe_load_all(open(p))]))";
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(files.iter().map(|f| repo().join(f)))
        .output()
        .unwrap();
    assert!(out.status.success(), "YAML: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn the_deb_installs_with_dpkg_and_its_files_work() {
    let root = run("id", &["-u"]).stdout.starts_with(b"0");
    let deb = built_deb();
    if !require(
        "a .deb from scripts/build-deb.sh, dpkg and root",
        deb.is_some() && which("dpkg").is_some() && root,
    ) {
        return;
    }
    let deb = deb.unwrap();
    let install = run("dpkg", &["-i", deb.to_str().unwrap()]);
    assert!(
        install.status.success(),
        "dpkg -i: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let result = std::panic::catch_unwind(|| {
        let version = run("/usr/bin/sockpulse", &["--version"]);
        assert!(version.status.success());
        assert_eq!(
            String::from_utf8_lossy(&version.stdout).trim(),
            format!("sockpulse {}", env!("CARGO_PKG_VERSION"))
        );
        let check = run("/usr/bin/sockpulse", &["check-config", "/etc/sockpulse/sockpulse.toml"]);
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
        for f in [
            "/usr/share/man/man1/sockpulse.1.gz",
            "/usr/share/bash-completion/completions/sockpulse",
            "/usr/share/zsh/vendor-completions/_sockpulse",
            "/usr/share/fish/vendor_completions.d/sockpulse.fish",
            "/usr/share/sockpulse/dashboards/sockpulse.json",
            "/usr/share/sockpulse/prometheus/sockpulse-rules.yml",
        ] {
            assert!(Path::new(f).is_file(), "{f} not installed");
        }
        let unit = std::fs::read_to_string("/lib/systemd/system/sockpulse.service").unwrap();
        for line in [
            "ExecStart=/usr/bin/sockpulse run --config /etc/sockpulse/sockpulse.toml",
            "DynamicUser=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "CapabilityBoundingSet=",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK AF_UNIX",
        ] {
            assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
        }
        let conf = run("dpkg-query", &["-W", "-f=${Conffiles}", "sockpulse"]);
        assert!(
            String::from_utf8_lossy(&conf.stdout).contains("/etc/sockpulse/sockpulse.toml"),
            "config is a conffile"
        );
    });
    let purge = run("dpkg", &["-P", "sockpulse"]);
    assert!(
        purge.status.success(),
        "dpkg -P: {}",
        String::from_utf8_lossy(&purge.stderr)
    );
    assert!(!Path::new("/usr/bin/sockpulse").exists());
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn man_page_and_completions_cover_every_command() {
    let man = sockpulse(&["man"]);
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(man.status.success() && text.contains(".TH sockpulse 1"), "{text}");
    for cmd in ["run", "status", "sockets", "check\\-config", "completions"] {
        assert!(text.contains(cmd), "man page lacks {cmd}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = sockpulse(&["completions", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        for word in ["check-config", "web.listen-address", "close-wait-age"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    assert_eq!(sockpulse(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn containerfile_and_kubernetes_manifests_match_the_agent() {
    let cf = std::fs::read_to_string(repo().join("packaging/Containerfile")).unwrap();
    assert_eq!(cf.lines().filter(|l| l.starts_with("FROM ")).count(), 2, "multi-stage");
    assert!(cf.lines().any(|l| l == "USER nonroot"));
    assert!(cf.lines().any(|l| l == format!("EXPOSE {DEFAULT_PORT}")));
    for copied in cf.lines().filter_map(|l| l.strip_prefix("COPY packaging/")) {
        let path = copied.split_whitespace().next().unwrap();
        assert!(
            repo().join("packaging").join(path).is_file(),
            "Containerfile copies missing {path}"
        );
    }
    assert!(sockpulse(&[
        "check-config",
        repo().join("packaging/sockpulse.toml").to_str().unwrap()
    ])
    .status
    .success());
    assert!(
        sockpulse::config::DEFAULT_LISTEN_ADDRESS.ends_with(&format!(":{DEFAULT_PORT}")),
        "README, Containerfile and manifests say {DEFAULT_PORT}"
    );

    // Parse the YAML with PyYAML and check what matters for scraping.
    let Some(docs) = yaml_docs(&[
        "packaging/kubernetes/sidecar.yaml",
        "packaging/kubernetes/daemonset.yaml",
    ]) else {
        return;
    };
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "Deployment", "DaemonSet", "Service", "ServiceMonitor"]
    );
    let mut sockpulse_containers = 0;
    for d in &docs {
        let spec = &d["spec"]["template"]["spec"];
        for c in spec["containers"].as_array().into_iter().flatten() {
            if c["name"] != "sockpulse" {
                continue;
            }
            sockpulse_containers += 1;
            assert_eq!(c["ports"][0]["containerPort"], DEFAULT_PORT, "{}", d["kind"]);
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
            assert_eq!(c["securityContext"]["runAsNonRoot"], true);
            assert_eq!(c["args"][0], "run");
        }
        if d["kind"] == "DaemonSet" {
            assert_eq!(spec["hostNetwork"], true);
        }
        if d["kind"] == "Deployment" {
            assert_eq!(
                d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
                DEFAULT_PORT.to_string()
            );
        }
    }
    assert_eq!(sockpulse_containers, 2);
    // The sidecar's embedded config is valid.
    let cm = docs[0]["data"]["sockpulse.toml"].as_str().unwrap();
    let dir = tempfile_dir::TempDir::new("cm");
    std::fs::write(dir.path().join("c.toml"), cm).unwrap();
    let check = sockpulse(&["check-config", dir.path().join("c.toml").to_str().unwrap()]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

#[test]
fn the_mesh_manifest_targets_its_own_headless_service_on_every_endpoint() {
    let Some(docs) = yaml_docs(&["packaging/kubernetes/mesh.yaml"]) else {
        return;
    };
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ConfigMap", "DaemonSet", "Service", "ServiceMonitor"]);
    let (cm, ds, svc) = (&docs[0], &docs[1], &docs[2]);
    assert_eq!(svc["spec"]["clusterIP"], "None", "headless: the name is every pod");
    assert_eq!(svc["spec"]["selector"], ds["spec"]["template"]["metadata"]["labels"]);
    let container = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["ports"][0]["containerPort"], DEFAULT_PORT);
    assert_eq!(
        ds["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"],
        cm["metadata"]["name"]
    );
    // The config is valid, and targets that Service's echo endpoint on every pod.
    let toml = cm["data"]["sockpulse.toml"].as_str().unwrap();
    let dir = tempfile_dir::TempDir::new("mesh");
    let path = dir.path().join("mesh.toml");
    std::fs::write(&path, toml).unwrap();
    let check = sockpulse(&["check-config", path.to_str().unwrap()]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let name = svc["metadata"]["name"].as_str().unwrap();
    let namespace = svc["metadata"]["namespace"].as_str().unwrap();
    assert!(
        toml.contains(&format!("ws://{name}.{namespace}.svc.cluster.local:{DEFAULT_PORT}/ws")),
        "{toml}"
    );
    assert!(toml.contains("endpoints = \"all\""));
}

#[test]
fn the_sharded_manifest_splits_one_target_list_by_pod_index() {
    let Some(docs) = yaml_docs(&["packaging/kubernetes/sharded.yaml"]) else {
        return;
    };
    let (cm, sts) = (&docs[0], &docs[1]);
    assert_eq!(sts["kind"], "StatefulSet");
    let replicas = sts["spec"]["replicas"].as_u64().unwrap();
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let shard = args[args.iter().position(|a| *a == "--shard").unwrap() + 1];
    assert_eq!(shard, format!("$(POD_INDEX)/{replicas}"), "COUNT must equal replicas");
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    // Its config and target file are valid, as one pod would read them.
    let dir = tempfile_dir::TempDir::new("sharded");
    let targets = dir.path().join("targets");
    std::fs::create_dir_all(&targets).unwrap();
    std::fs::write(
        targets.join("targets.json"),
        cm["data"]["targets.json"].as_str().unwrap(),
    )
    .unwrap();
    let toml = cm["data"]["sockpulse.toml"]
        .as_str()
        .unwrap()
        .replace("/etc/sockpulse/targets", targets.to_str().unwrap());
    std::fs::write(dir.path().join("c.toml"), toml).unwrap();
    let check = sockpulse(&["check-config", dir.path().join("c.toml").to_str().unwrap()]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("2 target(s)"));
}

#[test]
fn the_kubernetes_probe_config_is_valid_prometheus_configuration() {
    let (Some(py), Some(promtool)) = (python(), which("promtool")) else {
        require("python and promtool", false);
        return;
    };
    // Debian's Prometheus build has no Kubernetes discovery: swap in file_sd
    // (same relabelling) so promtool checks everything else.
    let dir = tempfile_dir::TempDir::new("probe-k8s");
    let swapped = dir.path().join("prometheus.yml");
    let script = r#"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
probe = jobs["sockpulse-probe"]
assert probe["metrics_path"] == "/probe"
actions = [r.get("action", "replace") for r in probe["relabel_configs"]]
targets = [r.get("target_label") for r in probe["relabel_configs"]]
assert "__param_target" in targets and "__param_module" in targets and "instance" in targets, targets
assert "hashmod" in actions and targets[-1] == "__address__", (actions, targets)
for j in doc["scrape_configs"]:
    j.pop("kubernetes_sd_configs")
    j["file_sd_configs"] = [{"files": ["targets.json"]}]
yaml.safe_dump(doc, open(sys.argv[2], "w"))
"#;
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(repo().join("packaging/prometheus/probe-kubernetes.yml"))
        .arg(&swapped)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let check = Command::new(promtool)
        .args(["check", "config"])
        .arg(&swapped)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
