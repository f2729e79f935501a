//! The kernel's view of TCP sockets, read and interpreted without policy:
//! per-socket `TCP_INFO` snapshots and the diagnosis they give when a
//! session fails (`tcpinfo`, `diagnose`), the host-wide table from netlink
//! or /proc (`netlink`, `table`, `scan`), its summary (`host`), and the join
//! of the agent's own sockets with it (`owned`). Nothing here knows the
//! config file or the metrics: `hostscan` exports what this module reads.

pub mod diagnose;
pub mod host;
pub mod netlink;
pub mod owned;
pub mod scan;
pub mod snmp;
pub mod state;
pub mod table;
pub mod tcpinfo;

pub use diagnose::{diagnose, Diagnosis};
pub use state::TcpState;
pub use tcpinfo::TcpSnapshot;
