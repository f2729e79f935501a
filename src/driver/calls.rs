//! What happens after every call into a session: its I/O requests carried
//! out, its events reported (with the kernel's evidence when it failed), its
//! output sent and its timer re-armed.

use std::io;

use mio::Interest;

use super::gauges::SessionGauge;
use super::pacing::establishing;
use super::{socket, Driver, EventContext, KernelEvidence, Observer};
use crate::clock::Instant;
use crate::kernel::owned;
use crate::kernel::{diagnose, tcpinfo};
use crate::session::{reason, IoRequest, Outbox, Phase, SessionEvent};

fn wants_diagnosis(ev: &SessionEvent) -> bool {
    match ev {
        SessionEvent::ConnectFailed { reason, .. } => diagnose::failure_wants_diagnosis(*reason),
        SessionEvent::Disconnected { reason, .. } => diagnose::disconnect_wants_diagnosis(*reason),
        _ => false,
    }
}

fn kernel_evidence(socket: Option<&mio::net::TcpStream>) -> Option<KernelEvidence> {
    let snapshot = tcpinfo::read(socket?).ok()?;
    Some(KernelEvidence {
        snapshot,
        diagnosis: diagnose::diagnose(&snapshot),
    })
}

impl<O: Observer> Driver<O> {
    pub(super) fn after_session_call(&mut self, i: usize, now: Instant) {
        self.settle_session_call(i, now);
        if self.slots[i].probe {
            self.take_due_probe_steps(i, now);
        }
    }

    /// A /probe check's next step due now (its first ping on open) is
    /// taken now: through the timer wheel it would wait for the next grid
    /// tick, up to 25 ms, and that wait would count in the check's
    /// duration. A few steps at most, so a session can never spin here.
    #[inline(never)]
    fn take_due_probe_steps(&mut self, i: usize, now: Instant) {
        for _ in 0..4 {
            let session = &self.slots[i].session;
            let due_now = !matches!(session.phase(), Phase::Idle | Phase::Backoff | Phase::Stopped)
                && session.poll_timeout().is_some_and(|t| t <= now);
            if !due_now {
                return;
            }
            self.slots[i].session.handle_timeout(Instant::now(), &mut self.out);
            self.settle_session_call(i, now);
        }
    }

    /// Hands what a session call produced to the observer and the sockets,
    /// and re-arms the session's timer.
    fn settle_session_call(&mut self, i: usize, now: Instant) {
        // Most calls (a ping sent, a data frame counted) produce nothing.
        if !self.out.events.is_empty() || !self.out.io.is_empty() {
            self.hand_out(i, now);
        }
        self.flush(i, now);
        let slot = &self.slots[i];
        self.gauges[i] = if slot.trial || slot.probe {
            SessionGauge::none(slot.target)
        } else {
            SessionGauge::of(slot.target, &slot.session, self.epoch)
        };
        let at = slot.session.poll_timeout();
        self.timers.arm(i, at);
    }

    /// The events and I/O requests of a session call, and of the calls
    /// these lead to.
    fn hand_out(&mut self, i: usize, now: Instant) {
        let mut taken = std::mem::take(&mut self.out_spare);
        let mut trials_over = Vec::new();
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
                .then(|| kernel_evidence(slot.socket.as_ref()))
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
                    let target = slot.target.index();
                    let counted = !slot.probe;
                    if counted && self.establishing_by_target.len() <= target {
                        self.establishing_by_target.resize(target + 1, 0);
                    }
                    // Probes wait at no target's gate.
                    let mut spare = 0;
                    let by_target = match self.establishing_by_target.get_mut(target) {
                        Some(n) if counted => n,
                        _ => &mut spare,
                    };
                    match (establishing(*from), establishing(*to)) {
                        (false, true) => {
                            self.establishing += 1;
                            *by_target += 1;
                        }
                        (true, false) => {
                            self.establishing = self.establishing.saturating_sub(1);
                            *by_target = by_target.saturating_sub(1);
                        }
                        _ => {}
                    }
                }
                if slot.trial {
                    // Idle discovery's: the search's, never the target's series.
                    if let Some(k) = self.discoveries.iter().position(|d| d.runs_in(i)) {
                        if self.discoveries[k].on_event(ev) {
                            trials_over.push(k);
                        }
                    }
                    continue;
                }
                let ctx = EventContext {
                    target: slot.target,
                    ordinal: slot.ordinal,
                    session: &slot.session,
                    kernel: if wants_diagnosis(ev) { evidence.as_ref() } else { None },
                    read_delay: self.read_delay,
                    now,
                };
                if slot.probe {
                    if let Some(run) = self.probes.iter_mut().find(|p| p.slot == i && !p.done) {
                        run.on_event(&ctx, ev);
                    }
                    continue;
                }
                self.observer.on_event(&ctx, ev);
            }
            events.clear();
            for req in io_requests.drain(..) {
                self.do_io(i, req, now);
            }
        }
        self.out_spare = taken;
        for k in trials_over {
            self.trial_over(k, now);
        }
        if !self.probes.is_empty() {
            self.probes.retain(|p| !p.done);
        }
    }

    pub(super) fn do_io(&mut self, i: usize, req: IoRequest, now: Instant) {
        match req {
            IoRequest::Resolve { host, port } => {
                let slot = &mut self.slots[i];
                slot.resolve_seq += 1;
                let files = &slot.session.spec().secret_files;
                if let Some(result) = self.resolver.submit(i, slot.resolve_seq, &host, port, files) {
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
                    let emfile = io::Error::from_raw_os_error(libc::EMFILE);
                    slot.session.handle_connected(Err(emfile), now, &mut self.out);
                    return;
                }
                let slot = &mut self.slots[i];
                log::debug!(
                    "target={} session={} connecting to {addr}",
                    slot.session.spec().name,
                    slot.ordinal
                );
                let result = socket::connect(addr, &slot.session.spec().socket).and_then(|mut sock| {
                    slot.generation = slot.generation.wrapping_add(1);
                    let t = slot.token(i);
                    self.poll
                        .registry()
                        .register(&mut sock, t, Interest::READABLE | Interest::WRITABLE)?;
                    Ok(sock)
                });
                match result {
                    Ok(sock) => {
                        if let (Some(registry), false) = (&self.owned, slot.probe) {
                            slot.inode = owned::socket_inode(&sock);
                            if let Some(inode) = slot.inode {
                                registry.insert(inode, slot.target, addr.port());
                            }
                        }
                        slot.socket = Some(sock);
                        slot.connecting = true;
                        slot.wants_write = true;
                        self.open_sockets += 1;
                    }
                    Err(e) => {
                        if e.raw_os_error().is_some_and(reason::is_fd_exhaustion) {
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
}
