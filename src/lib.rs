//! sockpulse: a connection-liveness monitoring agent. It holds WebSocket
//! and TCP sessions to its targets, proves every few seconds that each one
//! is alive, says why one failed (with the kernel's view of the socket), and
//! exports it all as Prometheus metrics.
//!
//! # Architecture
//! ```text
//!  config ──► TargetSpec (validated; TLS configurations built)
//!                │
//!                ▼
//!  driver: one mio loop (sockets, timers, DNS threads) ◄── LoopHandle (signals, /-/reload)
//!    │ bytes read, connect results, `now`     ▲ I/O requests, bytes to send, deadlines
//!    ▼                                        │
//!  session: sans-IO core (phases, backoff, TLS, WebSocket, liveness protocols)
//!    │ events
//!    ▼
//!  observer: metrics, logs, live status (run) or per-target reports (status)
//!
//!  hostscan thread: kernel TCP table (netlink or /proc), summarised ──► metrics
//!  http thread (its own mio loop, plain or TLS): /metrics, the live page,
//!    /api/v1/stream, /healthz, /probe, /api/v1/*, /ws echo, /-/reload;
//!    /probe checks run on the driver's loop; events (ring) ◄── observer, hostscan
//! ```
//! The I/O boundary is the driver: `session` and `kernel`'s parsers never
//! touch a socket or read the clock (time is passed in), so they are tested
//! with a virtual clock and fuzzed. `agent` assembles the running agent;
//! `cmd` holds one module per subcommand and `cli` maps their outcome to an
//! exit code. Every metric is declared in `metrics`.

pub mod agent;
pub mod agent_client;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod driver;
pub mod events;
pub mod filewatch;
pub mod hostscan;
pub mod http;
pub mod kernel;
mod labels;
pub mod metrics;
pub mod observer;
pub mod probe;
#[cfg(test)]
mod proptests;
pub mod render;
pub mod session;
pub mod shard;
pub mod signals;
pub mod targets;
pub mod wallclock;
