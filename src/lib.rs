//! sockpulse: a connection-liveness monitoring agent.

pub mod agent;
pub mod agent_client;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod driver;
pub mod hostscan;
pub mod http;
pub mod kernel;
mod labels;
pub mod metrics;
pub mod observer;
#[cfg(test)]
mod proptests;
pub mod render;
pub mod session;
pub mod signals;
pub mod targets;
pub mod wallclock;
