//! When a session probes: the first probe at once, the rest at a fixed
//! phase of the ping interval, one probe in flight at a time, each with its
//! answer deadline. Shared by every liveness protocol that probes.

use std::time::Duration;

use super::rng::Rng;
use super::spec::Timing;
use crate::clock::Instant;

/// Where a session's probes fall within the interval after its first one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probing {
    /// Probes go out at instants congruent to this modulo the interval
    /// (the driver gives neighbouring sessions neighbouring anchors);
    /// without one, at a random phase.
    pub anchor: Option<Instant>,
    /// Persistent sessions spread out; a one-shot check probes back to back.
    pub spread: bool,
}

/// What a probe's deadline means now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Nothing,
    /// Send the probe with this id.
    Probe(u64),
    /// The probe in flight was not answered within the answer timeout.
    Unanswered,
}

/// One probe in flight at most, its send time, and when the next one is
/// due. Probes are numbered from 1; the one in flight is always the last.
#[derive(Debug, Default)]
pub struct ProbeSchedule {
    next: Option<Instant>,
    /// When the probe numbered `seq` went out, while it is unanswered.
    sent: Option<Instant>,
    seq: u64,
}

impl ProbeSchedule {
    /// Probing every `interval` from `now` (the first probe goes out at once,
    /// so RTT is known from the start); never without an interval.
    pub fn starting(now: Instant, interval: Option<Duration>) -> ProbeSchedule {
        ProbeSchedule {
            next: interval.map(|_| now),
            sent: None,
            seq: 0,
        }
    }

    pub fn probes(&self) -> bool {
        self.next.is_some()
    }

    /// The earlier of the next probe and the answer deadline of the one in
    /// flight.
    pub fn poll_timeout(&self, answer_timeout: Duration) -> Option<Instant> {
        let answer_by = self.sent.map(|sent| sent + answer_timeout);
        super::min_opt(self.next, answer_by)
    }

    /// Called at `poll_timeout`: says whether to give up on the probe in
    /// flight or send a new one (which it then counts as sent at `now`),
    /// probing every `ping_interval` with `pong_timeout` to answer.
    pub fn on_timeout(&mut self, now: Instant, timing: &Timing, probing: &Probing, rng: &mut Rng) -> Due {
        if let Some(sent) = self.sent {
            if now >= sent + timing.pong_timeout {
                return Due::Unanswered;
            }
        }
        let Some(at) = self.next.filter(|&at| now >= at) else {
            return Due::Nothing;
        };
        let Some(interval) = timing.ping_interval else {
            self.next = None;
            return Due::Nothing;
        };
        if self.sent.is_some() {
            // Still waiting for the previous answer: skip this round.
            self.next = Some(next_in_phase(at, interval, now));
            return Due::Nothing;
        }
        let first = self.seq == 0;
        self.next = Some(if first && probing.spread {
            // Sessions opened together would otherwise probe together
            // forever. Move this one to its phase: its anchor, or a random
            // one. At most an interval later, so the detection bound holds.
            match probing.anchor {
                Some(anchor) => next_in_phase(anchor, interval, now),
                None => {
                    let half = interval.as_micros() as u64 / 2;
                    now + Duration::from_micros(half + rng.below_inclusive(half))
                }
            }
        } else {
            // From when it was due, not when the loop got to it, so the
            // phase does not drift by the timer grid's lateness.
            next_in_phase(at, interval, now)
        });
        self.seq = self.seq.wrapping_add(1);
        self.sent = Some(now);
        Due::Probe(self.seq)
    }

    /// The round trip of the probe in flight if `id` is its id.
    pub fn answer(&mut self, id: u64, now: Instant) -> Option<Duration> {
        match self.sent {
            Some(sent) if id == self.seq => {
                self.sent = None;
                Some(now.saturating_duration_since(sent))
            }
            _ => None,
        }
    }

    /// The id of the probe in flight, if any.
    pub fn in_flight(&self) -> Option<u64> {
        self.sent.map(|_| self.seq)
    }
}

/// The first instant after `now` that lies a whole number of intervals from
/// `anchor` (before or after it).
pub fn next_in_phase(anchor: Instant, interval: Duration, now: Instant) -> Instant {
    let period = interval.as_nanos().max(1);
    let wait = match anchor.checked_duration_since(now) {
        Some(ahead) => match ahead.as_nanos() % period {
            0 => period,
            rest => rest,
        },
        None => period - now.duration_since(anchor).as_nanos() % period,
    };
    now + Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_in_phase_is_the_first_later_instant_a_whole_number_of_intervals_from_the_anchor() {
        let t = Instant::now();
        let i = Duration::from_secs(10);
        let s = Duration::from_secs(1);
        // Anchor ahead, behind, many intervals away, and exactly on `now`.
        assert_eq!(next_in_phase(t + 3 * s, i, t), t + 3 * s);
        assert_eq!(next_in_phase(t + 23 * s, i, t), t + 3 * s);
        assert_eq!(next_in_phase(t + 10 * s, i, t), t + 10 * s);
        assert_eq!(next_in_phase(t, i, t + 3 * s), t + 10 * s);
        assert_eq!(next_in_phase(t, i, t + 27 * s), t + 30 * s);
        assert_eq!(next_in_phase(t, i, t), t + 10 * s);
        assert_eq!(next_in_phase(t, i, t + 20 * s), t + 30 * s);
    }

    #[test]
    fn one_probe_in_flight_answered_by_its_id_and_given_up_at_its_deadline() {
        let t = Instant::now();
        let s = Duration::from_secs(1);
        let timing = Timing::default(); // every 10 s, 5 s to answer
        let anchored = Probing {
            anchor: Some(t + 4 * s),
            spread: true,
        };
        let mut rng = Rng::new(1);
        let mut sched = ProbeSchedule::starting(t, timing.ping_interval);
        assert_eq!(sched.poll_timeout(timing.pong_timeout), Some(t));
        // The first probe goes out at once; the second on the anchor's phase.
        assert_eq!(sched.on_timeout(t, &timing, &anchored, &mut rng), Due::Probe(1));
        assert_eq!(sched.poll_timeout(timing.pong_timeout), Some(t + 4 * s));
        // A wrong id is no answer; the right one gives the round trip.
        assert_eq!(sched.answer(7, t + s), None);
        assert_eq!(sched.answer(1, t + s), Some(s));
        assert_eq!(sched.answer(1, t + 2 * s), None, "answered once only");
        // Then every interval, counted from when each was due.
        assert_eq!(sched.on_timeout(t + 4 * s, &timing, &anchored, &mut rng), Due::Probe(2));
        assert_eq!(sched.poll_timeout(timing.pong_timeout), Some(t + 9 * s));
        // Unanswered: given up at its deadline, not before.
        assert_eq!(
            sched.on_timeout(t + 9 * s - Duration::from_nanos(1), &timing, &anchored, &mut rng),
            Due::Nothing
        );
        assert_eq!(
            sched.on_timeout(t + 9 * s, &timing, &anchored, &mut rng),
            Due::Unanswered
        );
    }

    #[test]
    fn a_round_due_while_a_probe_is_in_flight_is_skipped_on_its_phase() {
        let t = Instant::now();
        let s = Duration::from_secs(1);
        // Answers may take longer than an interval here.
        let timing = Timing {
            ping_interval: Some(2 * s),
            pong_timeout: 5 * s,
            ..Timing::default()
        };
        let back_to_back = Probing::default();
        let mut rng = Rng::new(1);
        let mut sched = ProbeSchedule::starting(t, timing.ping_interval);
        assert_eq!(sched.on_timeout(t, &timing, &back_to_back, &mut rng), Due::Probe(1));
        assert_eq!(
            sched.on_timeout(t + 2 * s, &timing, &back_to_back, &mut rng),
            Due::Nothing
        );
        assert_eq!(sched.in_flight(), Some(1));
        assert_eq!(sched.answer(1, t + 3 * s), Some(3 * s));
        assert_eq!(
            sched.on_timeout(t + 4 * s, &timing, &back_to_back, &mut rng),
            Due::Probe(2)
        );
        // Without an interval nothing is ever sent.
        let off = ProbeSchedule::starting(t, None);
        assert!(!off.probes());
        assert_eq!(off.poll_timeout(timing.pong_timeout), None);
    }
}
