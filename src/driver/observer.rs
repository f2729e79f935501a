//! What the driver tells the rest of the agent: the `Observer` trait and
//! the context each session event comes with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::gauges::SessionGauge;
use super::idle_search::Finding;
use crate::clock::Instant;
use crate::kernel::{Diagnosis, TcpSnapshot};
use crate::session::spec::TargetSpec;
use crate::session::{Session, SessionEvent};
use crate::targets::TargetId;

/// What the kernel said about a session's socket when it failed.
#[derive(Debug, Clone, Copy)]
pub struct KernelEvidence {
    pub snapshot: TcpSnapshot,
    pub diagnosis: Option<Diagnosis>,
}

/// Where an event comes from.
pub struct EventContext<'a> {
    pub target: TargetId,
    /// Numbers the sessions of one target from 0, for log lines.
    pub ordinal: u32,
    pub session: &'a Session,
    /// Set on failure events whose cause the TCP state can tell.
    pub kernel: Option<&'a KernelEvidence>,
    /// For events raised by received bytes: how long they waited in the
    /// kernel before the loop woke to read them (their `now` is their
    /// arrival).
    pub read_delay: Option<Duration>,
    pub now: Instant,
}

/// Receives what sessions report. Runs on the loop thread: must not block.
pub trait Observer {
    fn on_event(&mut self, ctx: &EventContext<'_>, event: &SessionEvent);
    /// Called about once a second with every session's gauge inputs, the
    /// time, and the same time on their clock (see `SessionGauge`).
    fn on_tick(&mut self, _sessions: &[SessionGauge], _now: Instant, _now_ms: u64) {}
    /// Bytes were read that had waited this long in the kernel.
    fn on_read_delay(&mut self, _delay: Duration) {}
    /// A reload added a target under a new id.
    fn on_target_added(&mut self, _id: TargetId, _spec: &Arc<TargetSpec>) {}
    /// A reload kept a target's sessions; `spec` is its new configuration,
    /// the same but for what changes no session (its labels).
    fn on_target_kept(&mut self, _id: TargetId, _spec: &Arc<TargetSpec>) {}
    /// A reload removed a target; its sessions are closing.
    fn on_target_removed(&mut self, _id: TargetId, _spec: &Arc<TargetSpec>) {}
    /// A reload was attempted: the change it made, or why it was refused.
    fn on_reload(&mut self, _result: Result<&ReloadSummary, &str>) {}
    /// A target with `endpoints = "all"` was resolved: its endpoints now,
    /// or why the lookup failed (the endpoints it had are kept).
    fn on_endpoints(&mut self, _id: TargetId, _change: Result<&EndpointChange<'_>, &str>) {}
    /// Idle discovery learned something: the path's idle timeout (or that
    /// there is none up to its `max`), and whether pings alone keep a
    /// connection alive through it, once known.
    fn on_idle_discovery(&mut self, _id: TargetId, _finding: Option<Finding>, _pings_keep_alive: Option<bool>) {}
}

/// What a lookup of a fanned-out target's name changed.
#[derive(Debug)]
pub struct EndpointChange<'a> {
    /// Every endpoint with sessions now.
    pub endpoints: &'a [SocketAddr],
    pub added: &'a [SocketAddr],
    /// Their sessions are closing; their series go.
    pub removed: &'a [SocketAddr],
    /// Addresses left without sessions beyond `max_endpoints`.
    pub dropped: usize,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub kept: usize,
    pub added: usize,
    pub removed: usize,
}
