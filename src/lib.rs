//! sockpulse: a connection-liveness monitoring agent.

pub mod session;
