//! The thin I/O driver: one mio `Poll` for every session. It moves bytes
//! between sockets and session cores, runs their timers, and hands their
//! events to an `Observer` (metrics and logs, or a status report).
//!
//! One turn of the loop (`run`): apply a requested shutdown, publish the
//! once-a-second gauges, apply a requested reload, wait for readiness or the
//! next deadline, dispatch readiness events to sessions, hand DNS answers
//! over, fire expired timers. After every call into a session,
//! `after_session_call` carries out what it asked for (`calls.rs`).

mod calls;
mod endpoints;
pub mod fdlimit;
pub mod gauges;
mod handle;
mod idle_discovery;
pub mod idle_search;
mod observer;
mod pacing;
mod probes;
mod reload;
pub mod resolver;
pub mod rxstamp;
mod slots;
pub mod socket;
mod sockets;
pub(crate) mod srv;
pub mod timers;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Poll, Waker};

use crate::clock::Instant;
use crate::kernel::owned::OwnedRegistry;
use crate::session::spec::TargetSpec;
use crate::session::{Mode, Outbox, Phase};
use crate::targets::TargetMap;
pub use endpoints::ENDPOINT_LOOKUPS;
pub use gauges::SessionGauge;
pub use handle::LoopHandle;
pub use idle_search::Finding as IdleFinding;
pub use probes::ProbeRequest;

/// The SRV records a DNS message holds, if it parses: for the fuzzer.
#[doc(hidden)]
pub fn srv_services_of(message: &[u8]) -> usize {
    hickory_proto::op::Message::from_vec(message).map_or(0, |m| srv::services(&m).len())
}
pub use observer::{EndpointChange, EventContext, KernelEvidence, Observer, ReloadSummary};
pub use pacing::{timer_granularity, MAX_TIMER_GRANULARITY, MIN_TIMER_GRANULARITY, TIMER_GRID_DIVISOR};
use resolver::Resolver;
use slots::{Slot, WAKER};
use timers::TimerQueue;

/// Reads per socket per wake before yielding to other sessions.
const READ_BUDGET: usize = 16;
const SCRATCH: usize = 64 * 1024;
const DNS_THREADS: usize = 4;
/// How often the observer's `on_tick` runs.
const TICK: Duration = Duration::from_secs(1);

/// Produces the new target list on reload, or says why it cannot.
pub type Reloader = Box<dyn FnMut() -> Result<Vec<Arc<TargetSpec>>, Box<dyn std::error::Error + Send + Sync>> + Send>;

pub struct Driver<O: Observer> {
    poll: Poll,
    handle: LoopHandle,
    slots: Vec<Slot>,
    /// One per slot, same index; see `SessionGauge`.
    gauges: Vec<SessionGauge>,
    timers: TimerQueue,
    resolver: Resolver,
    out: Outbox,
    /// Swapped with `out` on every session call, so neither side allocates.
    out_spare: Outbox,
    observer: O,
    scratch: Vec<u8>,
    /// Sockets that still had data when their read budget ran out.
    unfinished_reads: Vec<usize>,
    /// Every live target; removed ones leave a hole (ids are never reused).
    targets: TargetMap<Arc<TargetSpec>>,
    mode: Mode,
    seed: u64,
    /// Timer ticks, probe phases (see `pacing::probe_anchor`) and gauge
    /// instants count from here.
    epoch: Instant,
    reloader: Option<Reloader>,
    /// Sockets sessions may hold, and how many they hold now.
    fd_budget: usize,
    open_sockets: usize,
    /// Sessions in `Phase::Stopped`: counted, because scanning every slot
    /// on every wake costs more than all the real work at thousands of
    /// sessions.
    stopped: usize,
    owned: Option<Arc<OwnedRegistry>>,
    /// Read delay of the bytes being handled, for `EventContext`.
    read_delay: Option<Duration>,
    /// Both clocks as read at the last wake, for the reads' kernel stamps.
    wake_clock: rxstamp::WakeClock,
    /// Sessions resolving, connecting or handshaking.
    establishing: usize,
    /// The same, per target (by `TargetId::index`): a session of a target
    /// at its `max_connecting` waits before it begins an attempt.
    establishing_by_target: Vec<u32>,
    /// Whether shutdown began (nothing waits at the gate then).
    stopping: bool,
    /// Targets with `endpoints = "all"`.
    fanouts: Vec<endpoints::FanOut>,
    /// Endpoint lookups answered without the resolver threads (literals).
    pending_endpoint_answers: Vec<resolver::Resolved>,
    /// Targets with `idle_discovery`: their searches and trial sessions.
    discoveries: Vec<idle_discovery::Discovery>,
    /// `/probe` checks running.
    probes: Vec<probes::ProbeRun>,
}

/// What one `run` remembers between turns of the loop.
struct Turn {
    next_tick: Instant,
    stopping_since: Option<Instant>,
    last_wake: Option<Instant>,
}

impl<O: Observer> Driver<O> {
    pub fn new(targets: &[Arc<TargetSpec>], mode: Mode, observer: O) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let resolver = Resolver::new(Arc::clone(&waker), DNS_THREADS)?;
        let mut seed_bytes = [0u8; 8];
        getrandom::getrandom(&mut seed_bytes).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
        // Timer ticks, probe phases and gauge instants count from one instant.
        let epoch = Instant::now();
        let mut driver = Driver {
            poll,
            handle: LoopHandle::new(waker),
            slots: Vec::new(),
            gauges: Vec::new(),
            timers: TimerQueue::new(0, epoch, timer_granularity(targets.iter().map(|t| t.as_ref()))),
            resolver,
            out: Outbox::default(),
            out_spare: Outbox::default(),
            observer,
            scratch: vec![0; SCRATCH],
            unfinished_reads: Vec::new(),
            targets: TargetMap::default(),
            mode,
            seed: u64::from_le_bytes(seed_bytes),
            epoch,
            reloader: None,
            fd_budget: usize::MAX,
            open_sockets: 0,
            stopped: 0,
            owned: None,
            read_delay: None,
            wake_clock: rxstamp::WakeClock::now(),
            establishing: 0,
            establishing_by_target: Vec::new(),
            stopping: false,
            fanouts: Vec::new(),
            pending_endpoint_answers: Vec::new(),
            discoveries: Vec::new(),
            probes: Vec::new(),
        };
        for spec in targets {
            driver.add_target(spec);
        }
        Ok(driver)
    }

    /// Where reloads get their new targets from; a reload runs when
    /// `LoopHandle::reload` is called.
    pub fn with_reloader(mut self, reloader: Reloader) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Caps the sockets sessions may hold; connects beyond it fail with
    /// `fd_limit` and retry with backoff, as descriptors free up.
    pub fn with_fd_budget(mut self, budget: usize) -> Self {
        self.fd_budget = budget;
        self
    }

    /// Registers every socket by inode so the kernel scan can find ours.
    pub fn with_owned_registry(mut self, registry: Arc<OwnedRegistry>) -> Self {
        for (id, spec) in self.targets.iter() {
            registry.set_target_name(id, Some(spec.name.clone()));
        }
        self.owned = Some(registry);
        self
    }

    /// Stops the loop or makes it reload, from any thread.
    pub fn handle(&self) -> LoopHandle {
        self.handle.clone()
    }

    pub fn observer(&self) -> &O {
        &self.observer
    }

    pub fn into_observer(self) -> O {
        self.observer
    }

    /// Runs until stopped, until every session has stopped by itself
    /// (one-shot mode), or until `deadline`. Shutdown waits at most
    /// `grace` for close handshakes.
    pub fn run(&mut self, deadline: Option<Instant>, grace: Duration) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.handle.attach_loop_thread();
        let now = Instant::now();
        self.start_sessions(now);
        let mut turn = Turn {
            next_tick: now,
            stopping_since: None,
            last_wake: None,
        };
        loop {
            let now = Instant::now();
            self.apply_shutdown(&mut turn, deadline, now);
            self.publish_tick(&mut turn, now);
            if self.finished(&turn) {
                return Ok(());
            }
            if turn.stopping_since.is_none() && self.handle.take_reload() {
                self.apply_reload(now);
            }
            if turn.stopping_since.is_some_and(|t| now >= t + grace) {
                log::warn!("shutdown grace period over; dropping remaining connections");
                return Ok(());
            }
            match self.wait(&turn, deadline, grace, now, &mut events) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // Readiness says nothing about time: read the clocks after every wake.
            self.wake_clock = rxstamp::WakeClock::now();
            let now = self.wake_clock.mono;
            turn.last_wake = Some(now);
            self.dispatch(&events, now);
            self.take_resolved();
            self.fire_timers(now);
            // Most agents have neither: not even a clock read for them.
            if !self.fanouts.is_empty() {
                self.look_up_endpoints(now);
            }
            if !self.discoveries.is_empty() {
                self.run_discoveries(Instant::now());
            }
            if self.handle.probes_waiting() {
                self.start_probes(Instant::now());
            }
            if !self.probes.is_empty() {
                self.expire_probes(Instant::now());
            }
        }
    }

    fn start_sessions(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            self.start_or_wait(i, now);
        }
    }

    /// On a stop request or at the deadline, closes every session (once).
    fn apply_shutdown(&mut self, turn: &mut Turn, deadline: Option<Instant>, now: Instant) {
        let due = self.handle.stop_requested() || deadline.is_some_and(|d| now >= d);
        if turn.stopping_since.is_some() || !due {
            return;
        }
        turn.stopping_since = Some(now);
        self.stopping = true;
        for i in 0..self.slots.len() {
            self.slots[i].session.stop(now, &mut self.out);
            self.after_session_call(i, now);
        }
    }

    fn publish_tick(&mut self, turn: &mut Turn, now: Instant) {
        if now >= turn.next_tick {
            self.observer
                .on_tick(&self.gauges, now, gauges::gauge_stamp(now, self.epoch));
            turn.next_tick = now + TICK;
        }
    }

    /// One-shot runs end when every session is done; persistent ones only
    /// when stopping (a reload may leave no sessions at all).
    fn finished(&self, turn: &Turn) -> bool {
        let one_shot = matches!(self.mode, Mode::OneShot { .. });
        // A one-shot run also waits for its endpoint lookups' first answers.
        let fanned_out = turn.stopping_since.is_some() || self.fanouts.iter().all(|f| f.answered);
        self.stopped == self.slots.len() && fanned_out && (one_shot || turn.stopping_since.is_some())
    }

    fn apply_reload(&mut self, now: Instant) {
        let Some(mut reloader) = self.reloader.take() else {
            return;
        };
        match reloader() {
            Ok(targets) => {
                let summary = self.reconcile(&targets, now);
                self.observer.on_reload(Ok(&summary));
            }
            Err(e) => self.observer.on_reload(Err(&e.to_string())),
        }
        self.reloader = Some(reloader);
    }

    /// Sleeps until readiness, the next deadline, tick or shutdown step;
    /// spaces wake-ups once sessions are open (see `pacing::wake_spacing`).
    fn wait(
        &mut self,
        turn: &Turn,
        deadline: Option<Instant>,
        grace: Duration,
        now: Instant,
        events: &mut Events,
    ) -> io::Result<()> {
        let mut wait = turn.next_tick.saturating_duration_since(now);
        if let Some(t) = self.timers.next_deadline() {
            // Already on the timer grid: deadlines of one period share a wake.
            wait = wait.min(t.saturating_duration_since(now));
        }
        for t in [self.next_endpoint_lookup(), self.next_discovery_start()]
            .into_iter()
            .flatten()
        {
            wait = wait.min(t.saturating_duration_since(now));
        }
        if !self.pending_endpoint_answers.is_empty() {
            wait = Duration::ZERO;
        }
        if let Some(d) = deadline {
            wait = wait.min(d.saturating_duration_since(now));
        }
        if let Some(t) = turn.stopping_since {
            wait = wait.min((t + grace).saturating_duration_since(now));
        }
        if let Some(t) = self.next_probe_deadline() {
            wait = wait.min(t.saturating_duration_since(now));
        }
        if !self.unfinished_reads.is_empty() || self.handle.probes_waiting() {
            wait = Duration::ZERO;
        }
        // A /probe check's duration is its measurement: no spacing while one runs.
        let quiet = turn.stopping_since.is_none() && self.establishing == 0 && self.probes.is_empty();
        let pause = pacing::wake_spacing(turn.last_wake, Instant::now(), self.timers.grid(), wait, quiet);
        if !pause.is_zero() {
            // Parked rather than asleep: a LoopHandle wake (a /probe, a
            // signal) ends the pause.
            // Woken early, the poll below just times out early: one more
            // turn, rather than a clock read at every pause.
            std::thread::park_timeout(pause);
            wait = wait.saturating_sub(pause);
        }
        self.poll.poll(events, Some(wait))
    }

    /// Hands readiness to the sessions it concerns; finishes reads a
    /// previous wake left unfinished first.
    fn dispatch(&mut self, events: &Events, now: Instant) {
        for i in std::mem::take(&mut self.unfinished_reads) {
            self.read_socket(i, now, true);
        }
        for event in events.iter() {
            if event.token() == WAKER {
                continue;
            }
            let (i, generation) = slots::untoken(event.token());
            let Some(slot) = self.slots.get(i) else {
                continue;
            };
            if slot.generation != generation || slot.socket.is_none() {
                continue; // an event for a socket that is gone
            }
            if slot.connecting {
                self.finish_connect(i, now);
                continue;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                // Only a FIN or an error needs reading past a short read.
                let drain = event.is_read_closed() || event.is_error();
                self.read_socket(i, now, drain);
            }
            if event.is_writable() && self.slots[i].generation == generation {
                self.flush(i, now);
            }
        }
    }

    fn take_resolved(&mut self) {
        let mut results = self.resolver.take_results();
        results.append(&mut self.pending_endpoint_answers);
        for r in results {
            if r.slot >= ENDPOINT_LOOKUPS {
                self.endpoints_resolved(r, Instant::now());
                continue;
            }
            let Some(slot) = self.slots.get_mut(r.slot) else {
                continue;
            };
            if slot.resolve_seq == r.seq {
                // A connect starts now, after the reads of this wake.
                let at = Instant::now();
                if let Some(secrets) = r.secrets {
                    slot.session.handle_secrets(secrets, at, &mut self.out);
                }
                slot.session.handle_resolved(r.result, at, &mut self.out);
                self.after_session_call(r.slot, at);
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(i) = self.timers.pop_expired(now) {
            // The clock as of this session's turn: a probe's send time must
            // not include the reads and sends handled before it in this
            // wake, or they would count in its RTT.
            let at = Instant::now();
            match self.slots[i].session.phase() {
                Phase::Idle => self.start_or_wait(i, at),
                Phase::Backoff if self.at_the_gate(i) => self.wait_at_the_gate(i, at),
                _ => {
                    self.slots[i].session.handle_timeout(at, &mut self.out);
                    self.after_session_call(i, at);
                }
            }
        }
    }

    /// Starts session `i`, or has it wait while its target has
    /// `max_connecting` sessions establishing.
    pub(super) fn start_or_wait(&mut self, i: usize, now: Instant) {
        if self.slots[i].retired {
            return; // its target was removed while it waited
        }
        if self.at_the_gate(i) {
            self.wait_at_the_gate(i, now);
        } else {
            self.slots[i].session.start(now, &mut self.out);
            self.after_session_call(i, now);
        }
    }

    /// Whether session `i` must wait before beginning an attempt.
    fn at_the_gate(&self, i: usize) -> bool {
        let slot = &self.slots[i];
        let busy = self
            .establishing_by_target
            .get(slot.target.index())
            .copied()
            .unwrap_or(0);
        !self.stopping && busy >= slot.session.spec().max_connecting
    }

    /// Looks again one timer-grid period later; the session itself does not
    /// change (its backoff deadline stays as it was).
    fn wait_at_the_gate(&mut self, i: usize, now: Instant) {
        self.timers.arm(i, Some(now + self.timers.grid()));
    }
}

#[cfg(test)]
mod tests;
