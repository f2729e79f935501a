//! Socket work for sessions: finishing non-blocking connects, reading
//! until the socket is drained, writing pending output, closing.

use std::io::{self, Write};

use mio::Interest;

use super::{rxstamp, slots, Driver, Observer, READ_BUDGET};
use crate::clock::Instant;

impl<O: Observer> Driver<O> {
    pub(super) fn finish_connect(&mut self, i: usize, now: Instant) {
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

    pub(super) fn read_socket(&mut self, i: usize, now: Instant, drain: bool) {
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
                    let arrived = stamp.and_then(|s| self.wake_clock.arrival(s));
                    let delay = arrived.map(|a| now.saturating_duration_since(a));
                    slot.session
                        .handle_input(&self.scratch[..n], arrived.unwrap_or(now), &mut self.out);
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

    pub(super) fn flush(&mut self, i: usize, now: Instant) {
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
            let t = slots::token(i, slot.generation);
            if let Err(e) = self.poll.registry().reregister(sock, t, interest) {
                log::error!("reregister failed: {e}");
            }
            slot.wants_write = want;
        }
    }

    pub(super) fn close_socket(&mut self, i: usize, farewell: &[u8]) {
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
