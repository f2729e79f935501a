//! sockpulse: a connection-liveness monitoring agent.

pub mod agent;
pub mod cli;
pub mod config;
pub mod driver;
pub mod hostscan;
pub mod http;
pub mod kernel;
mod labels;
pub mod metrics;
#[cfg(test)]
mod proptests;
pub mod session;
pub mod sockets;
pub mod status;
pub mod tls;
