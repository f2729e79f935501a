//! The kernel's view of TCP sockets: per-socket `TCP_INFO` snapshots, and
//! the diagnosis they give when a session fails.

pub mod diagnose;
pub mod host;
pub mod netlink;
pub mod owned;
pub mod state;
pub mod table;
pub mod tcpinfo;
pub mod watcher;

pub use diagnose::{diagnose, Diagnosis};
pub use state::TcpState;
pub use tcpinfo::TcpSnapshot;
