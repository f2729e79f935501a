//! TLS 1.3 session tickets shared by a target's sessions, so that a
//! reconnect storm resumes instead of paying full handshakes.
//!
//! rustls's default store keeps 8 tickets per server name, and a TLS 1.3
//! ticket is used once: when hundreds of a target's sessions drop together
//! (a proxy or load balancer restart), the first 8 resume and the rest do
//! full handshakes (measured: 340 of 2,000). Here a target keeps up to one
//! ticket per session, bounded by `MAX_TICKETS`: each ticket holds a copy
//! of the server's certificate chain, so the bound is the memory price.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;

/// Tickets kept per target at most, whatever its session count.
pub const MAX_TICKETS: usize = 256;

pub struct TicketPool {
    /// Key-exchange hints and TLS 1.2 sessions (one per name, reusable).
    others: ClientSessionMemoryCache,
    /// A target has one server name; a few are allowed for safety, each
    /// with its tickets, newest last.
    tls13: Mutex<Vec<(ServerName<'static>, VecDeque<Tls13ClientSessionValue>)>>,
    per_name: usize,
}

/// Server names remembered per target (one is the rule).
const NAMES: usize = 4;

impl TicketPool {
    /// A pool for a target holding `sessions` sessions.
    pub fn new(sessions: usize) -> TicketPool {
        TicketPool {
            others: ClientSessionMemoryCache::new(NAMES),
            tls13: Mutex::new(Vec::new()),
            per_name: sessions.clamp(2, MAX_TICKETS),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tls13
            .lock()
            .map(|t| t.iter().map(|(_, q)| q.len()).sum())
            .unwrap_or(0)
    }
}

impl fmt::Debug for TicketPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tickets are secrets: never printed.
        f.debug_struct("TicketPool").field("per_name", &self.per_name).finish()
    }
}

impl ClientSessionStore for TicketPool {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        self.others.set_kx_hint(name, group);
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        self.others.kx_hint(name)
    }

    fn set_tls12_session(&self, name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.others.set_tls12_session(name, value);
    }

    fn tls12_session(&self, name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.others.tls12_session(name)
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.others.remove_tls12_session(name);
    }

    fn insert_tls13_ticket(&self, name: ServerName<'static>, value: Tls13ClientSessionValue) {
        // A poisoned lock only means another thread panicked mid-push: the
        // queue is still a valid queue.
        let mut names = self.tls13.lock().unwrap_or_else(|p| p.into_inner());
        let at = match names.iter().position(|(n, _)| *n == name) {
            Some(at) => at,
            None => {
                if names.len() == NAMES {
                    names.remove(0);
                }
                names.push((name, VecDeque::new()));
                names.len() - 1
            }
        };
        let tickets = &mut names[at].1;
        if tickets.len() == self.per_name {
            tickets.pop_front();
        }
        tickets.push_back(value);
    }

    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        // The newest ticket is the furthest from its lifetime's end.
        let mut names = self.tls13.lock().unwrap_or_else(|p| p.into_inner());
        let (_, tickets) = names.iter_mut().find(|(n, _)| n == name)?;
        let ticket = tickets.pop_back();
        if tickets.is_empty() {
            // Give back the queue's memory while there is nothing in it.
            *tickets = VecDeque::new();
        }
        ticket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_size_follows_the_sessions_within_bounds() {
        assert_eq!(TicketPool::new(1).per_name, 2);
        assert_eq!(TicketPool::new(100).per_name, 100);
        assert_eq!(TicketPool::new(100_000).per_name, MAX_TICKETS);
        assert_eq!(TicketPool::new(10).len(), 0);
        assert!(!format!("{:?}", TicketPool::new(3)).contains("tls13"));
    }
}
