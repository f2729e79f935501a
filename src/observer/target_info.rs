//! `sockpulse_target_info{target, …labels} 1`: a target's own labels
//! (`labels = { team = "payments" }`), exported once on an info series for
//! joins (`… * on (target) group_left (team) sockpulse_target_info`), so
//! that no other series carries them. Each series has only its target's
//! label names: a collector of its own builds the family at every scrape,
//! because the registry fixes a vector's label names for good.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts, Registry};

use crate::metrics::TARGET_INFO;

const HELP: &str = "Labels of each target from its configuration; always 1. Join on target to use them";

/// Each target's label pairs, `target` first.
type Series = Vec<Vec<(String, String)>>;

pub struct TargetInfo {
    series: Arc<Mutex<Series>>,
}

struct InfoCollector {
    desc: Vec<Desc>,
    series: Arc<Mutex<Series>>,
}

impl Collector for InfoCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(series) = self.series.lock() else {
            return Vec::new();
        };
        // One vector per set of label names; the registry merges their
        // families into one.
        let mut families = Vec::new();
        let mut done: Vec<Vec<&str>> = Vec::new();
        for s in series.iter() {
            let names: Vec<&str> = s.iter().map(|(k, _)| k.as_str()).collect();
            if done.contains(&names) {
                continue;
            }
            let Ok(vec) = GaugeVec::new(Opts::new(TARGET_INFO, HELP), &names) else {
                continue;
            };
            for other in series
                .iter()
                .filter(|o| o.iter().map(|(k, _)| k.as_str()).eq(names.iter().copied()))
            {
                let values: Vec<&str> = other.iter().map(|(_, v)| v.as_str()).collect();
                vec.with_label_values(&values).set(1.0);
            }
            families.extend(vec.collect());
            done.push(names);
        }
        families
    }
}

impl TargetInfo {
    pub fn new(registry: &Registry) -> TargetInfo {
        let series = Arc::new(Mutex::new(Vec::new()));
        match Desc::new(TARGET_INFO.into(), HELP.into(), Vec::new(), Default::default()) {
            Ok(desc) => {
                let collector = InfoCollector {
                    desc: vec![desc],
                    series: Arc::clone(&series),
                };
                if let Err(e) = registry.register(Box::new(collector)) {
                    log::error!("cannot register {TARGET_INFO}: {e}");
                }
            }
            Err(e) => log::error!("cannot describe {TARGET_INFO}: {e}"),
        }
        TargetInfo { series }
    }

    /// Publishes the info series of `targets` (name, labels), and only those.
    pub fn publish(&mut self, targets: &[(&str, &[(String, String)])]) {
        let series = targets
            .iter()
            .map(|&(target, labels)| {
                let mut pairs = vec![("target".to_string(), target.to_string())];
                pairs.extend(labels.iter().cloned());
                pairs
            })
            .collect();
        if let Ok(mut current) = self.series.lock() {
            *current = series;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    fn exposition(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_target_gets_one_series_with_its_own_labels() {
        let registry = Registry::new();
        let mut info = TargetInfo::new(&registry);
        let a = [("team".to_string(), "pay".to_string())];
        let b = [
            ("env".to_string(), "prod".to_string()),
            ("team".to_string(), "ops".to_string()),
        ];
        let none: Vec<(String, String)> = Vec::new();
        info.publish(&[("a", &a[..]), ("b", &b[..]), ("c", &none[..])]);
        let text = exposition(&registry);
        assert!(
            text.contains(r#"sockpulse_target_info{target="a",team="pay"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sockpulse_target_info{env="prod",target="b",team="ops"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"sockpulse_target_info{target="c"} 1"#), "{text}");
        assert_eq!(text.matches("# TYPE sockpulse_target_info gauge").count(), 1, "{text}");
        // A reload that drops a label name and a target.
        info.publish(&[("a", &a[..])]);
        let text = exposition(&registry);
        assert!(
            text.contains(r#"sockpulse_target_info{target="a",team="pay"} 1"#),
            "{text}"
        );
        assert_eq!(text.matches("sockpulse_target_info{").count(), 1, "{text}");
    }
}
