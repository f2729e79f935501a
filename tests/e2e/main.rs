//! End-to-end tests: the real `sockpulse` binary against servers nobody
//! here wrote (Python websockets, Node ws, nginx, Redis, promtool), plus a
//! small hostile server for answers no sane server gives.

#[path = "../support/mod.rs"]
mod support;

mod autobahn;
mod benchtools;
mod cli;
mod endpoints;
mod faults;
mod hostile;
mod interop;
mod kernel;
mod matrix;
mod messages;
mod observability;
mod packaging;
mod page;
mod paths;
mod protocols;
mod proxies;
mod reload;
mod soak;
mod stream;
mod web;
mod webedges;
mod websec;
