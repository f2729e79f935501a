//! The `sockets` report as text, in the spirit of `ss -s`: totals by state,
//! watched ports, and the sockets worth a look.

use std::fmt::Write as _;

use super::columns;
use crate::kernel::host::HostSummary;

const COLUMNS: [(&str, &str); 5] = [
    ("ESTAB", "established"),
    ("LISTEN", "listen"),
    ("CLOSE-WAIT", "close_wait"),
    ("TIME-WAIT", "time_wait"),
    ("SYN-SENT", "syn_sent"),
];

/// The host report: totals, TIME_WAIT pressure, a row per watched port,
/// then the sockets worth a look.
pub fn report(s: &HostSummary) -> String {
    let mut out = String::new();
    let states: Vec<String> = s.by_state.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(out, "TCP sockets: {} ({})", s.total, states.join(", "));
    let _ = writeln!(
        out,
        "TIME_WAIT: {} of {} ephemeral ports ({:.2}%)",
        s.time_wait,
        s.ephemeral_ports,
        100.0 * s.time_wait_port_ratio
    );
    let mut rows = vec![{
        let mut h = vec!["PORT".to_string()];
        h.extend(COLUMNS.iter().map(|(c, _)| c.to_string()));
        h.extend(["OTHER", "SEND-Q", "RECV-Q", "ACCEPT-Q", "OLDEST CLOSE-WAIT"].map(String::from));
        h
    }];
    for (port, p) in &s.ports {
        let mut row = vec![port.clone()];
        let mut listed = 0;
        for (_, state) in COLUMNS {
            let n = p.by_state.get(state).copied().unwrap_or(0);
            listed += n;
            row.push(n.to_string());
        }
        let total: u64 = p.by_state.values().sum();
        row.push((total - listed).to_string());
        row.push(p.tx_queue_bytes.to_string());
        row.push(p.rx_queue_bytes.to_string());
        row.push(p.listen_queue.to_string());
        row.push(format!("{:.0}s", p.close_wait_oldest_seconds));
        rows.push(row);
    }
    out.push('\n');
    out.push_str(&columns(&rows));
    if !s.suspicious.is_empty() {
        let _ = writeln!(out, "\nSuspicious sockets:");
        for x in &s.suspicious {
            let _ = writeln!(out, "  {} -> {} {}: {}", x.local, x.remote, x.state, x.why);
        }
    }
    out
}
