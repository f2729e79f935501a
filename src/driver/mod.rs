//! The thin I/O driver: one mio `Poll` for every session. It moves bytes
//! between sockets and session cores, runs their timers, and hands their
//! events to an `Observer` (metrics and logs, or a status report).

pub mod fdlimit;
pub mod resolver;
pub mod rxstamp;
pub mod socket;
pub mod timers;

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Interest, Poll, Token, Waker};

use crate::kernel::owned::{self, OwnedRegistry};
use crate::kernel::{diagnose, tcpinfo, Diagnosis, TcpSnapshot};
use crate::session::spec::TargetSpec;
use crate::session::{IoRequest, Mode, Outbox, Phase, Session, SessionEvent};
use resolver::Resolver;
use timers::TimerQueue;

const WAKER: Token = Token(usize::MAX);
/// Reads per socket per wake before yielding to other sessions.
const READ_BUDGET: usize = 16;
const SCRATCH: usize = 64 * 1024;
const DNS_THREADS: usize = 4;
/// Timer wake-ups are rounded up to a grid so that deadlines in the same
/// window fire in one wake: at thousands of sessions a wake per deadline
/// costs more in context switches than all the work done. The grid is the
/// shortest configured timer over `TIMER_GRID_DIVISOR` (deadlines fire at
/// most 0.5 % late), between these bounds. RTT is measured from the actual
/// send and to the pong's arrival, so the grid never skews it; but the pings
/// of one grid period reach a server together and queue there. Measured at
/// 9k sessions on two servers (probes at ordered phases): 25 ms instead of
/// 10 ms cut CPU by 12-34 % (fewer wakes, and a server woken once serves
/// several pings) and moved RTT p50/p99/max from 0.39/1.06/4.6 ms to
/// 0.72/1.90/6.6 ms.
pub const MAX_TIMER_GRANULARITY: Duration = Duration::from_millis(25);
pub const MIN_TIMER_GRANULARITY: Duration = Duration::from_millis(1);
pub const TIMER_GRID_DIVISOR: u32 = 200;

/// The timer grid for these targets (see `MAX_TIMER_GRANULARITY`).
pub fn timer_granularity<'a>(targets: impl IntoIterator<Item = &'a TargetSpec>) -> Duration {
    let shortest = targets
        .into_iter()
        .flat_map(|spec| {
            let t = &spec.timing;
            [
                t.ping_interval,
                Some(t.pong_timeout),
                t.idle_timeout,
                Some(t.connect_timeout),
                Some(t.handshake_timeout),
                // Not close_timeout: a close finishing late costs nothing.
            ]
        })
        .flatten()
        .min();
    match shortest {
        Some(d) => (d / TIMER_GRID_DIVISOR).clamp(MIN_TIMER_GRANULARITY, MAX_TIMER_GRANULARITY),
        None => MAX_TIMER_GRANULARITY,
    }
}

/// What the kernel said about a session's socket when it failed.
#[derive(Debug, Clone, Copy)]
pub struct KernelEvidence {
    pub snapshot: TcpSnapshot,
    pub diagnosis: Option<Diagnosis>,
}

/// Where an event comes from.
pub struct EventContext<'a> {
    pub target: usize,
    /// Numbers the sessions of one target from 0, for log lines.
    pub ordinal: u32,
    pub session: &'a Session,
    /// Set on failure events whose cause the TCP state can tell.
    pub kernel: Option<&'a KernelEvidence>,
    /// For events raised by received bytes: how long they waited in the
    /// kernel before the loop read them (their `now` is their arrival).
    pub read_delay: Option<Duration>,
    pub now: Instant,
}

/// What the once-a-second gauges need of a session, kept in one contiguous
/// array updated after every session call: scanning 9k sessions' own
/// scattered state cost 1-1.6 ms of cache misses a second (a loop stall).
/// Instants are milliseconds since the driver's epoch plus one (zero: none),
/// which makes an entry 24 bytes instead of 48 and the scan half as long.
#[derive(Debug, Clone, Copy)]
pub struct SessionGauge {
    target: u32,
    open: bool,
    last_pong: u64,
    last_message: u64,
}

impl SessionGauge {
    fn of(target: usize, s: &Session, epoch: Instant) -> SessionGauge {
        let target = u32::try_from(target).unwrap_or(u32::MAX);
        if s.phase() != Phase::Open {
            return SessionGauge {
                target,
                open: false,
                last_pong: 0,
                last_message: 0,
            };
        }
        let stamp = |t: Option<Instant>| t.or(s.stats.opened_at).map_or(0, |t| gauge_stamp(t, epoch));
        let probes = s.spec().timing.ping_interval.is_some();
        let last = match s.spec().scheme {
            crate::session::spec::Scheme::Tcp => s.stats.last_rx,
            _ => s.stats.last_message,
        };
        SessionGauge {
            target,
            open: true,
            last_pong: if probes { stamp(s.stats.last_pong) } else { 0 },
            last_message: stamp(last),
        }
    }

    pub fn target(&self) -> usize {
        self.target as usize
    }

    pub fn open(&self) -> bool {
        self.open
    }

    /// Last answered probe, else when the session opened, on the clock of
    /// `Observer::on_tick`'s `now_ms`; `None` when not open or the target
    /// sends no probes.
    pub fn last_pong_ms(&self) -> Option<u64> {
        (self.last_pong != 0).then_some(self.last_pong)
    }

    /// Last data message (WebSocket; pongs do not count) or byte (TCP),
    /// else when the session opened, on the same clock; `None` when not open.
    pub fn last_message_ms(&self) -> Option<u64> {
        (self.last_message != 0).then_some(self.last_message)
    }
}

/// `t` on the gauge clock: whole milliseconds since `epoch`, plus one so that
/// zero can mean none (saturating: half a billion years).
fn gauge_stamp(t: Instant, epoch: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_millis()).map_or(u64::MAX, |ms| ms.saturating_add(1))
}

/// Receives what sessions report. Runs on the loop thread: must not block.
pub trait Observer {
    fn on_event(&mut self, ctx: &EventContext<'_>, event: &SessionEvent);
    /// Called about once a second with every session's gauge inputs and the
    /// time on their clock (see `SessionGauge`).
    fn on_tick(&mut self, _sessions: &[SessionGauge], _now_ms: u64) {}
    /// Bytes were read that had waited this long in the kernel.
    fn on_read_delay(&mut self, _delay: Duration) {}
    /// A reload added a target under this index (indices are never reused).
    fn on_target_added(&mut self, _index: usize, _spec: &Arc<TargetSpec>) {}
    /// A reload removed a target; its sessions are closing.
    fn on_target_removed(&mut self, _index: usize, _spec: &Arc<TargetSpec>) {}
    /// A reload was attempted: the change it made, or why it was refused.
    fn on_reload(&mut self, _result: Result<&ReloadSummary, &str>) {}
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub kept: usize,
    pub added: usize,
    pub removed: usize,
}

/// Produces the new target list on reload, or says why it cannot.
pub type Reloader = Box<dyn FnMut() -> Result<Vec<Arc<TargetSpec>>, String> + Send>;

struct Slot {
    session: Session,
    target: usize,
    ordinal: u32,
    socket: Option<mio::net::TcpStream>,
    /// Bumped whenever the socket changes, so stale events are ignored.
    generation: u32,
    connecting: bool,
    wants_write: bool,
    resolve_seq: u64,
    /// The socket's inode, when the kernel view is on.
    inode: Option<u64>,
    /// Its target was removed by a reload: the session is closing or
    /// stopped, and the slot may be reused.
    retired: bool,
}

pub struct Driver<O: Observer> {
    poll: Poll,
    waker: Arc<Waker>,
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
    /// Every target ever configured, by index; `None` once a reload removed it.
    targets: Vec<Option<Arc<TargetSpec>>>,
    mode: Mode,
    seed: u64,
    /// Timer ticks, probe phases (see `probe_anchor`) and gauge instants
    /// count from here.
    epoch: Instant,
    reload: Arc<AtomicBool>,
    reloader: Option<Reloader>,
    /// Sockets sessions may hold, and how many they hold now.
    fd_budget: usize,
    open_sockets: usize,
    /// Sessions in `Phase::Stopped`: counted, because scanning every slot
    /// on every wake costs more than all the real work at 9k sessions.
    stopped: usize,
    owned: Option<Arc<OwnedRegistry>>,
    stop: Arc<AtomicBool>,
    /// Read delay of the bytes being handled, for `EventContext`.
    read_delay: Option<Duration>,
    /// Sessions resolving, connecting or handshaking.
    establishing: usize,
}

fn wants_diagnosis(ev: &SessionEvent) -> bool {
    match ev {
        SessionEvent::ConnectFailed { reason, .. } => diagnose::failure_wants_diagnosis(*reason),
        SessionEvent::Disconnected { reason, .. } => diagnose::disconnect_wants_diagnosis(*reason),
        _ => false,
    }
}

fn kernel_evidence(slot: &Slot) -> Option<KernelEvidence> {
    let snapshot = tcpinfo::read(slot.socket.as_ref()?).ok()?;
    Some(KernelEvidence {
        snapshot,
        diagnosis: diagnose::diagnose(&snapshot),
    })
}

/// How long the loop sleeps before polling: kernel receive stamps make a
/// late read cost RTT nothing, so it wakes at most once per grid period and
/// pongs and deadlines of one period share a wake-up (each costs tens of µs
/// on a VM). Not unless `quiet` (no session being established: connect
/// completion has no stamp and its duration must stay exact; not stopping),
/// and not when the poll must not wait at all.
fn wake_spacing(last_wake: Option<Instant>, now: Instant, grid: Duration, wait: Duration, quiet: bool) -> Duration {
    match last_wake {
        Some(last) if quiet && !wait.is_zero() => (last + grid).saturating_duration_since(now),
        _ => Duration::ZERO,
    }
}

/// Where in the ping interval session `ordinal` of `connections` of target
/// `index` probes: the target's sessions evenly spaced in order (neighbours
/// in memory probe in the same or the next timer tick), each target shifted
/// by the golden ratio so that targets with one session each do not probe
/// together.
fn probe_anchor(epoch: Instant, interval: Duration, index: usize, ordinal: u32, connections: u32) -> Instant {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    let share = f64::from(ordinal) / f64::from(connections.max(1)) + index as f64 * GOLDEN;
    epoch + interval.mul_f64(share.fract())
}

fn establishing(phase: Phase) -> bool {
    matches!(phase, Phase::Resolving | Phase::Connecting | Phase::Handshaking)
}

fn token(slot: usize, generation: u32) -> Token {
    Token(((generation as usize) << 32) | slot)
}

fn untoken(t: Token) -> (usize, u32) {
    (t.0 & 0xffff_ffff, (t.0 >> 32) as u32)
}

impl<O: Observer> Driver<O> {
    pub fn new(targets: &[Arc<TargetSpec>], mode: Mode, observer: O) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let resolver = Resolver::new(Arc::clone(&waker), DNS_THREADS)?;
        let mut seed_bytes = [0u8; 8];
        getrandom::getrandom(&mut seed_bytes).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
        let seed = u64::from_le_bytes(seed_bytes);
        // Timer ticks, probe phases and gauge instants count from one instant.
        let start = Instant::now();
        let mut driver = Driver {
            poll,
            waker,
            slots: Vec::new(),
            gauges: Vec::new(),
            timers: TimerQueue::new(0, start, timer_granularity(targets.iter().map(|t| t.as_ref()))),
            targets: Vec::new(),
            mode,
            seed,
            epoch: start,
            reload: Arc::new(AtomicBool::new(false)),
            reloader: None,
            fd_budget: usize::MAX,
            open_sockets: 0,
            resolver,
            out: Outbox::default(),
            out_spare: Outbox::default(),
            observer,
            scratch: vec![0; SCRATCH],
            unfinished_reads: Vec::new(),
            stopped: 0,
            owned: None,
            stop: Arc::new(AtomicBool::new(false)),
            read_delay: None,
            establishing: 0,
        };
        for spec in targets {
            driver.add_target(spec);
        }
        Ok(driver)
    }

    /// Adds a target and its sessions (not yet started); returns its index.
    fn add_target(&mut self, spec: &Arc<TargetSpec>) -> usize {
        let index = self.targets.len();
        self.targets.push(Some(Arc::clone(spec)));
        if let Some(r) = &self.owned {
            r.set_target_name(index, Some(spec.name.clone()));
        }
        let mut reusable = (0..self.slots.len())
            .filter(|&i| self.slots[i].retired && self.slots[i].session.phase() == Phase::Stopped)
            .collect::<Vec<_>>()
            .into_iter();
        for ordinal in 0..spec.connections {
            let n = ((index as u64) << 20) ^ (self.slots.len() as u64 + u64::from(ordinal));
            let mut session = Session::new(
                Arc::clone(spec),
                self.mode,
                self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            if let Some(interval) = spec.timing.ping_interval {
                session.set_probe_anchor(probe_anchor(self.epoch, interval, index, ordinal, spec.connections));
            }
            match reusable.next() {
                Some(i) => {
                    let slot = &mut self.slots[i];
                    slot.session = session;
                    slot.target = index;
                    slot.ordinal = ordinal;
                    slot.retired = false;
                    self.stopped -= 1;
                    self.gauges[i] = SessionGauge::of(index, &slot.session, self.epoch);
                }
                None => {
                    self.gauges.push(SessionGauge::of(index, &session, self.epoch));
                    self.slots.push(Slot {
                        session,
                        target: index,
                        ordinal,
                        socket: None,
                        generation: 0,
                        connecting: false,
                        wants_write: false,
                        resolve_seq: 0,
                        inode: None,
                        retired: false,
                    });
                }
            }
        }
        self.timers.ensure_slots(self.slots.len());
        index
    }

    /// Applies a new target list: targets with an unchanged fingerprint keep
    /// their sessions; removed or changed ones close theirs; new ones start.
    pub fn reconcile(&mut self, new: &[Arc<TargetSpec>], now: Instant) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let mut kept = std::collections::HashSet::new();
        for index in 0..self.targets.len() {
            let Some(spec) = self.targets[index].clone() else {
                continue;
            };
            if new
                .iter()
                .any(|n| n.name == spec.name && n.fingerprint == spec.fingerprint)
            {
                kept.insert(spec.name.clone());
                summary.kept += 1;
                continue;
            }
            summary.removed += 1;
            self.targets[index] = None;
            if let Some(r) = &self.owned {
                r.set_target_name(index, None);
            }
            self.observer.on_target_removed(index, &spec);
            for i in 0..self.slots.len() {
                if self.slots[i].target == index && !self.slots[i].retired {
                    self.slots[i].retired = true;
                    self.slots[i].session.stop(now, &mut self.out);
                    self.after_session_call(i, now);
                }
            }
        }
        for spec in new.iter().filter(|s| !kept.contains(&s.name)) {
            summary.added += 1;
            let index = self.add_target(spec);
            self.observer.on_target_added(index, spec);
            for i in 0..self.slots.len() {
                if self.slots[i].target == index && !self.slots[i].retired {
                    self.slots[i].session.start(now, &mut self.out);
                    self.after_session_call(i, now);
                }
            }
        }
        // The grid (see `timer_granularity`) follows the targets through reloads.
        self.timers
            .set_grid(timer_granularity(self.targets.iter().flatten().map(|t| t.as_ref())));
        summary
    }

    /// Where reloads get their new targets from; a reload runs when the
    /// flag of `reload_handle` is set and the loop is woken.
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

    pub fn reload_handle(&self) -> (Arc<AtomicBool>, Arc<Waker>) {
        (Arc::clone(&self.reload), Arc::clone(&self.waker))
    }

    /// Registers every socket by inode so the kernel scan can find ours.
    pub fn with_owned_registry(mut self, registry: Arc<OwnedRegistry>) -> Self {
        for (index, spec) in self.targets.iter().enumerate() {
            registry.set_target_name(index, spec.as_ref().map(|s| s.name.clone()));
        }
        self.owned = Some(registry);
        self
    }

    /// Setting this flag (then waking) makes `run` close every session and return.
    pub fn stop_handle(&self) -> (Arc<AtomicBool>, Arc<Waker>) {
        (Arc::clone(&self.stop), Arc::clone(&self.waker))
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
        let now = Instant::now();
        for i in 0..self.slots.len() {
            self.slots[i].session.start(now, &mut self.out);
            self.after_session_call(i, now);
        }
        let mut next_tick = now;
        let mut stopping_since: Option<Instant> = None;
        let mut last_wake: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if stopping_since.is_none() && (self.stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| now >= d)) {
                stopping_since = Some(now);
                for i in 0..self.slots.len() {
                    self.slots[i].session.stop(now, &mut self.out);
                    self.after_session_call(i, now);
                }
            }
            if now >= next_tick {
                self.observer.on_tick(&self.gauges, gauge_stamp(now, self.epoch));
                next_tick = now + Duration::from_secs(1);
            }
            // One-shot runs end when every session is done; persistent ones
            // only when stopping (a reload may leave no sessions at all).
            let one_shot = matches!(self.mode, Mode::OneShot { .. });
            if self.stopped == self.slots.len() && (one_shot || stopping_since.is_some()) {
                return Ok(());
            }
            if stopping_since.is_none() && self.reload.swap(false, Ordering::SeqCst) {
                if let Some(mut reloader) = self.reloader.take() {
                    match reloader() {
                        Ok(targets) => {
                            let summary = self.reconcile(&targets, now);
                            self.observer.on_reload(Ok(&summary));
                        }
                        Err(e) => self.observer.on_reload(Err(&e)),
                    }
                    self.reloader = Some(reloader);
                }
            }
            if stopping_since.is_some_and(|t| now >= t + grace) {
                log::warn!("shutdown grace period over; dropping remaining connections");
                return Ok(());
            }

            let mut wait = next_tick.saturating_duration_since(now);
            if let Some(t) = self.timers.next_deadline() {
                // Already on the timer grid: deadlines of one period share a wake.
                wait = wait.min(t.saturating_duration_since(now));
            }
            if let Some(d) = deadline {
                wait = wait.min(d.saturating_duration_since(now));
            }
            if let Some(t) = stopping_since {
                wait = wait.min((t + grace).saturating_duration_since(now));
            }
            if !self.unfinished_reads.is_empty() {
                wait = Duration::ZERO;
            }
            let quiet = stopping_since.is_none() && self.establishing == 0;
            let pause = wake_spacing(last_wake, Instant::now(), self.timers.grid(), wait, quiet);
            if !pause.is_zero() {
                std::thread::sleep(pause);
                wait = wait.saturating_sub(pause);
            }
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // Readiness says nothing about time: read the clock after every wake.
            let now = Instant::now();
            last_wake = Some(now);
            for i in std::mem::take(&mut self.unfinished_reads) {
                self.read_socket(i, now, true);
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                let (i, generation) = untoken(event.token());
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
            for r in self.resolver.take_results() {
                let Some(slot) = self.slots.get_mut(r.slot) else {
                    continue;
                };
                if slot.resolve_seq == r.seq {
                    // A connect starts now, after the reads of this wake.
                    let at = Instant::now();
                    slot.session.handle_resolved(r.result, at, &mut self.out);
                    self.after_session_call(r.slot, at);
                }
            }
            while let Some(i) = self.timers.pop_expired(now) {
                // The clock as of this session's turn: a probe's send time
                // must not include the reads and sends handled before it in
                // this wake, or they would count in its RTT.
                let at = Instant::now();
                self.slots[i].session.handle_timeout(at, &mut self.out);
                self.after_session_call(i, at);
            }
        }
    }

    fn finish_connect(&mut self, i: usize, now: Instant) {
        let slot = &mut self.slots[i];
        let Some(sock) = slot.socket.as_ref() else {
            return;
        };
        let result = match sock.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match sock.peer_addr() {
                Ok(_) => Ok(()),
                // Spurious wake-up: the connect is still in progress.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Err(e),
            },
        };
        if result.is_ok() {
            slot.connecting = false;
        }
        slot.session.handle_connected(result, now, &mut self.out);
        self.after_session_call(i, now);
        // Data may have arrived with the connect (edge-triggered: read now).
        if self.slots[i].socket.is_some() && !self.slots[i].connecting {
            self.read_socket(i, now, true);
        }
    }

    /// Reads until `WouldBlock`, or, unless `drain`, until a short read:
    /// with edge-triggered readiness a short read means the socket was empty,
    /// and anything arriving later raises a new edge. That saves the extra
    /// read per pong that would only say `WouldBlock`.
    fn read_socket(&mut self, i: usize, now: Instant, drain: bool) {
        let generation = self.slots[i].generation;
        for _ in 0..READ_BUDGET {
            let slot = &mut self.slots[i];
            if slot.generation != generation {
                return; // the session closed this socket meanwhile
            }
            let Some(sock) = slot.socket.as_mut() else {
                return;
            };
            match rxstamp::recv(sock, &mut self.scratch) {
                Ok((0, _)) => {
                    slot.session.handle_eof(now, &mut self.out);
                    self.after_session_call(i, now);
                    return;
                }
                Ok((n, stamp)) => {
                    // The bytes' own time is their arrival: a pong read late
                    // because the loop was busy still has its true RTT, and
                    // the wait is reported on its own.
                    let delay = stamp.and_then(|s| rxstamp::delay(s, SystemTime::now()));
                    let arrived = delay.and_then(|d| Instant::now().checked_sub(d)).unwrap_or(now);
                    slot.session.handle_input(&self.scratch[..n], arrived, &mut self.out);
                    if let Some(d) = delay {
                        self.observer.on_read_delay(d);
                    }
                    self.read_delay = delay;
                    self.after_session_call(i, now);
                    self.read_delay = None;
                    if n < self.scratch.len() && !drain {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    slot.session.handle_io_error(e, now, &mut self.out);
                    self.after_session_call(i, now);
                    return;
                }
            }
        }
        self.unfinished_reads.push(i);
    }

    /// Writes pending output; keeps WRITABLE interest only while some remains.
    fn flush(&mut self, i: usize, now: Instant) {
        let slot = &mut self.slots[i];
        if slot.connecting {
            return;
        }
        let Some(sock) = slot.socket.as_mut() else {
            return;
        };
        let mut failed = None;
        while !slot.session.pending_output().is_empty() {
            match sock.write(slot.session.pending_output()) {
                Ok(0) => {
                    failed = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => slot.session.consume_output(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            slot.session.handle_io_error(e, now, &mut self.out);
            self.after_session_call(i, now);
            return;
        }
        let want = !slot.session.pending_output().is_empty();
        if want != slot.wants_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let t = token(i, slot.generation);
            if let Err(e) = self.poll.registry().reregister(sock, t, interest) {
                log::error!("reregister failed: {e}");
            }
            slot.wants_write = want;
        }
    }

    /// Carries out what a session asked for, reports its events, sends its
    /// output and re-arms its timer.
    fn after_session_call(&mut self, i: usize, now: Instant) {
        let mut taken = std::mem::take(&mut self.out_spare);
        loop {
            // What the session pushed moves here; `out` gets the emptied
            // buffers of the last round, capacity kept.
            std::mem::swap(&mut taken, &mut self.out);
            let Outbox {
                events,
                io: io_requests,
            } = &mut taken;
            if io_requests.is_empty() && events.is_empty() {
                break;
            }
            let slot = &self.slots[i];
            // The socket is still open here (closing comes after the events),
            // so the kernel can say what state the failed connection is in.
            let evidence = events
                .iter()
                .any(wants_diagnosis)
                .then(|| kernel_evidence(slot))
                .flatten();
            for ev in events.iter() {
                if let SessionEvent::PhaseChanged { from, to } = ev {
                    if let (Some(registry), Some(inode)) = (&self.owned, slot.inode) {
                        if *to == Phase::Open || *from == Phase::Open {
                            registry.set_open(inode, *to == Phase::Open);
                        }
                    }
                    if *to == Phase::Stopped {
                        self.stopped += 1;
                    } else if *from == Phase::Stopped {
                        self.stopped -= 1;
                    }
                    match (establishing(*from), establishing(*to)) {
                        (false, true) => self.establishing += 1,
                        (true, false) => self.establishing = self.establishing.saturating_sub(1),
                        _ => {}
                    }
                }
                let ctx = EventContext {
                    target: slot.target,
                    ordinal: slot.ordinal,
                    session: &slot.session,
                    kernel: if wants_diagnosis(ev) { evidence.as_ref() } else { None },
                    read_delay: self.read_delay,
                    now,
                };
                self.observer.on_event(&ctx, ev);
            }
            events.clear();
            for req in io_requests.drain(..) {
                self.do_io(i, req, now);
            }
        }
        self.out_spare = taken;
        self.flush(i, now);
        let slot = &self.slots[i];
        self.gauges[i] = SessionGauge::of(slot.target, &slot.session, self.epoch);
        let at = slot.session.poll_timeout();
        self.timers.arm(i, at);
    }

    fn do_io(&mut self, i: usize, req: IoRequest, now: Instant) {
        match req {
            IoRequest::Resolve { host, port } => {
                let slot = &mut self.slots[i];
                slot.resolve_seq += 1;
                if let Some(result) = self.resolver.submit(i, slot.resolve_seq, &host, port) {
                    slot.session.handle_resolved(result, now, &mut self.out);
                }
            }
            IoRequest::Connect(addr) => {
                self.close_socket(i, &[]);
                if self.open_sockets >= self.fd_budget {
                    let slot = &mut self.slots[i];
                    log::debug!(
                        "target {}: file-descriptor budget ({}) in use",
                        slot.session.spec().name,
                        self.fd_budget
                    );
                    let emfile = io::Error::from_raw_os_error(24);
                    slot.session.handle_connected(Err(emfile), now, &mut self.out);
                    return;
                }
                let slot = &mut self.slots[i];
                let result = socket::connect(addr, &slot.session.spec().socket).and_then(|mut sock| {
                    slot.generation = slot.generation.wrapping_add(1);
                    let t = token(i, slot.generation);
                    self.poll
                        .registry()
                        .register(&mut sock, t, Interest::READABLE | Interest::WRITABLE)?;
                    Ok(sock)
                });
                match result {
                    Ok(sock) => {
                        if let Some(registry) = &self.owned {
                            slot.inode = owned::socket_inode(&sock);
                            if let Some(inode) = slot.inode {
                                registry.insert(inode, slot.target);
                            }
                        }
                        slot.socket = Some(sock);
                        slot.connecting = true;
                        slot.wants_write = true;
                        self.open_sockets += 1;
                    }
                    Err(e) => {
                        if matches!(e.raw_os_error(), Some(24) | Some(23)) {
                            log::error!(
                                "target {}: out of file descriptors (EMFILE): raise LimitNOFILE / ulimit -n or lower connections",
                                slot.session.spec().name
                            );
                        }
                        slot.session.handle_connected(Err(e), now, &mut self.out);
                    }
                }
            }
            IoRequest::CloseSocket { farewell } => self.close_socket(i, &farewell),
        }
    }

    fn close_socket(&mut self, i: usize, farewell: &[u8]) {
        let slot = &mut self.slots[i];
        if let (Some(registry), Some(inode)) = (&self.owned, slot.inode.take()) {
            registry.remove(inode);
        }
        if let Some(mut sock) = slot.socket.take() {
            if !farewell.is_empty() && !slot.connecting {
                let _ = sock.write(farewell); // best effort: a close frame
            }
            let _ = self.poll.registry().deregister(&mut sock);
            self.open_sockets -= 1;
            slot.generation = slot.generation.wrapping_add(1);
            slot.connecting = false;
            slot.wants_write = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_driver_pins_every_session_to_its_probe_anchor() {
        struct Quiet;
        impl Observer for Quiet {
            fn on_event(&mut self, _: &EventContext<'_>, _: &SessionEvent) {}
        }
        let text = "[[target]]\nurl = \"ws://a.test/\"\nconnections = 3\n\
                    [[target]]\nurl = \"ws://b.test/\"\nconnections = 2\n";
        let cfg = crate::config::parse(text, "t", &[], &|_| None).expect("valid config");
        let driver = Driver::new(&cfg.targets, Mode::Persistent, Quiet).expect("driver");
        let anchors: Vec<_> = driver.slots.iter().map(|s| s.session.probe_anchor()).collect();
        let default_interval = Duration::from_secs(10);
        let expected: Vec<_> = [(0, 0, 3), (0, 1, 3), (0, 2, 3), (1, 0, 2), (1, 1, 2)]
            .into_iter()
            .map(|(target, ordinal, n)| Some(probe_anchor(driver.epoch, default_interval, target, ordinal, n)))
            .collect();
        assert_eq!(anchors, expected);
    }

    /// A loopback server that runs `serve` on each connection in its own thread.
    fn loopback_server(serve: fn(std::net::TcpStream)) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(stream));
            }
        });
        port
    }

    fn echo_server() -> u16 {
        loopback_server(|mut stream| {
            if let Ok(mut reader) = stream.try_clone() {
                let _ = std::io::copy(&mut reader, &mut stream);
            }
        })
    }

    #[test]
    fn a_probe_is_timed_from_its_own_turn_not_from_the_start_of_the_wake() {
        let echo = echo_server();
        // A byte every millisecond for a few seconds: every wake has a read
        // to do before it gets to the timers.
        let chatty = loopback_server(|mut stream| {
            for _ in 0..5_000 {
                if stream.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(ms(1));
            }
        });
        // Every read makes its wake slow, so a probe sent after it would
        // carry that delay in its RTT if timed from the start of the wake.
        struct SlowReads(Vec<Duration>);
        impl Observer for SlowReads {
            fn on_event(&mut self, _: &EventContext<'_>, event: &SessionEvent) {
                if let SessionEvent::Pong { rtt } = event {
                    self.0.push(*rtt);
                }
            }
            fn on_read_delay(&mut self, _: Duration) {
                std::thread::sleep(ms(20));
            }
        }
        let text = format!(
            "[[target]]\nurl = \"tcp://127.0.0.1:{chatty}\"\n\
             [[target]]\nurl = \"tcp://127.0.0.1:{echo}\"\nconnections = 20\nping_interval = \"1s\"\n\
             pong_timeout = \"500ms\"\nprobe = {{ send = \"p\", expect = \"p\" }}\n"
        );
        let cfg = crate::config::parse(&text, "t", &[], &|_| None).expect("valid config");
        let mut driver = Driver::new(&cfg.targets, Mode::Persistent, SlowReads(Vec::new())).expect("driver");
        driver.run(Some(Instant::now() + ms(3_000)), ms(500)).expect("run");
        let mut rtts = std::mem::take(&mut driver.observer.0);
        assert!(rtts.len() >= 20, "only {} answers: {rtts:?}", rtts.len());
        rtts.sort();
        // A loopback echo answers in well under a millisecond; a probe timed
        // from the start of its wake would include at least one 20 ms read.
        let median = rtts[rtts.len() / 2];
        assert!(median < ms(10), "median RTT {median:?} of {rtts:?}");
    }

    #[test]
    fn gauges_are_compact_and_on_the_clock_of_the_tick() {
        assert_eq!(std::mem::size_of::<SessionGauge>(), 24);
        let echo = echo_server();
        // The last tick's view: (open, pong age, message age) per session.
        struct LastTick(Vec<(bool, Option<u64>, Option<u64>)>);
        impl Observer for LastTick {
            fn on_event(&mut self, _: &EventContext<'_>, _: &SessionEvent) {}
            fn on_tick(&mut self, sessions: &[SessionGauge], now_ms: u64) {
                let age = |t: Option<u64>| t.map(|t| now_ms - t);
                self.0 = sessions
                    .iter()
                    .map(|g| (g.open(), age(g.last_pong_ms()), age(g.last_message_ms())))
                    .collect();
            }
        }
        let text = format!(
            "[[target]]\nurl = \"tcp://127.0.0.1:{echo}\"\nconnections = 3\nping_interval = \"300ms\"\n\
             pong_timeout = \"200ms\"\nprobe = {{ send = \"p\", expect = \"p\" }}\n"
        );
        let cfg = crate::config::parse(&text, "t", &[], &|_| None).expect("valid config");
        let mut driver = Driver::new(&cfg.targets, Mode::Persistent, LastTick(Vec::new())).expect("driver");
        // The tick at about 2 s sees sessions that have answered for a while.
        driver.run(Some(Instant::now() + ms(2_200)), ms(500)).expect("run");
        let seen = &driver.observer.0;
        assert_eq!(seen.len(), 3, "{seen:?}");
        for &(open, pong_age, message_age) in seen {
            assert!(open, "{seen:?}");
            // Answered every 300 ms: the last pong (and byte) is younger than that and some slack.
            assert!(pong_age.is_some_and(|a| a < 500), "{seen:?}");
            assert!(message_age.is_some_and(|a| a < 500), "{seen:?}");
        }
    }

    #[test]
    fn probe_anchors_spread_a_targets_sessions_evenly_in_order_and_shift_targets_apart() {
        let epoch = Instant::now();
        let interval = Duration::from_secs(10);
        let offset = |index: usize, ordinal: u32, connections: u32| {
            probe_anchor(epoch, interval, index, ordinal, connections) - epoch
        };
        // Target 0: ordinal k of 4 at k quarters of the interval.
        let quarters: Vec<_> = (0..4).map(|k| offset(0, k, 4)).collect();
        assert_eq!(quarters, [0, 2_500, 5_000, 7_500].map(Duration::from_millis));
        // Target 1 starts 0.618 of an interval in and wraps around.
        let shifted: Vec<_> = (0..2).map(|k| offset(1, k, 2).as_millis()).collect();
        assert_eq!(shifted, [6_180, 1_180]);
        // One session per target: ten targets at least 5 % of the interval apart.
        let mut phases: Vec<_> = (0..10).map(|t| offset(t, 0, 1).as_millis()).collect();
        phases.sort();
        let closest = phases.windows(2).map(|w| w[1] - w[0]).min();
        assert!(closest >= Some(500), "{phases:?}");
    }

    #[test]
    fn the_timer_grid_follows_the_shortest_timer_within_bounds() {
        let spec = |ping_ms: u64, pong_ms: u64| {
            let text = format!(
                "[[target]]\nurl = \"ws://example.test/\"\nping_interval = \"{ping_ms}ms\"\npong_timeout = \"{pong_ms}ms\"\n"
            );
            let cfg = crate::config::parse(&text, "t", &[], &|_| None).expect("valid config");
            TargetSpec::clone(&cfg.targets[0])
        };
        // Production-like timers: the coarsest grid.
        assert_eq!(timer_granularity([&spec(10_000, 5_000)]), MAX_TIMER_GRANULARITY);
        // The test suite's fast timers: 300 ms / 200 = 1.5 ms.
        assert_eq!(timer_granularity([&spec(500, 300)]), Duration::from_micros(1_500));
        // The shortest target decides; never below the floor.
        assert_eq!(
            timer_granularity([&spec(10_000, 5_000), &spec(500, 300)]),
            Duration::from_micros(1_500)
        );
        assert_eq!(timer_granularity([&spec(50, 20)]), MIN_TIMER_GRANULARITY);
        assert_eq!(timer_granularity(std::iter::empty()), MAX_TIMER_GRANULARITY);
        assert_eq!(ms(25), MAX_TIMER_GRANULARITY);
    }

    #[test]
    fn the_loop_wakes_at_most_once_per_grid_period_once_sessions_are_open() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let grid = ms(10);
        // 3 ms after the last wake: sleep out the other 7.
        assert_eq!(wake_spacing(Some(t), t + ms(3), grid, ms(500), true), ms(7));
        // A whole period has passed, or this is the first wake: poll now.
        assert_eq!(wake_spacing(Some(t), t + ms(12), grid, ms(500), true), Duration::ZERO);
        assert_eq!(wake_spacing(None, t, grid, ms(500), true), Duration::ZERO);
        // Sessions being established (or stopping), or unfinished reads
        // (wait zero): no spacing.
        assert_eq!(wake_spacing(Some(t), t + ms(3), grid, ms(500), false), Duration::ZERO);
        assert_eq!(
            wake_spacing(Some(t), t + ms(3), grid, Duration::ZERO, true),
            Duration::ZERO
        );
    }

    #[test]
    fn establishing_covers_resolve_connect_and_handshake_only() {
        for p in [Phase::Resolving, Phase::Connecting, Phase::Handshaking] {
            assert!(establishing(p), "{p:?}");
        }
        for p in [Phase::Idle, Phase::Open, Phase::Closing, Phase::Backoff, Phase::Stopped] {
            assert!(!establishing(p), "{p:?}");
        }
    }

    #[test]
    fn tokens_round_trip_slot_and_generation() {
        for (slot, generation) in [(0, 0), (9_000, 1), (123_456, u32::MAX)] {
            assert_eq!(untoken(token(slot, generation)), (slot, generation));
        }
        assert_ne!(token(0, 0), WAKER);
    }
}
