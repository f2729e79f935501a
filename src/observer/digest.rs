//! Log lines that stay readable at scale. A target whose thousand sessions
//! fail together would otherwise log a thousand lines per backoff round;
//! instead the first failure of each reason in a streak is logged in full,
//! then one summary per interval (failures by reason, sessions affected)
//! until every session of the target is open again, which ends the streak
//! with a recovery line. Opens are alike: the target's first and the one
//! that makes it whole are logged, the rest summed up. Every line still
//! goes out at debug, so `RUST_LOG=debug` keeps one line per attempt.
//!
//! Pure bookkeeping: the observer passes the time in and logs what this
//! returns.

use std::time::Duration;

use crate::clock::Instant;

/// How often a streak (or a run of quiet opens) is summed up.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Whether an event's own line goes out at its level or only at debug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Say {
    Full,
    Quiet,
}

/// One target's log bookkeeping.
#[derive(Debug)]
pub struct Digest {
    connections: u32,
    open: u32,
    streak: Option<Streak>,
    /// Opens logged only at debug since the last line about them.
    quiet_opens: u32,
    quiet_opens_since: Option<Instant>,
}

/// Failures since the target was last whole.
#[derive(Debug)]
struct Streak {
    since: Instant,
    last_summary: Instant,
    /// (reason, failures in the streak, failures not yet summed up);
    /// reasons are a closed set of labels, so this stays short.
    reasons: Vec<(&'static str, u64, u64)>,
    /// Which sessions failed, one bit per session ordinal.
    affected: Vec<u64>,
}

impl Streak {
    fn new(now: Instant) -> Streak {
        Streak {
            since: now,
            last_summary: now,
            reasons: Vec::new(),
            affected: Vec::new(),
        }
    }

    fn sessions_affected(&self) -> u32 {
        self.affected.iter().map(|w| w.count_ones()).sum()
    }

    fn pending(&self) -> u64 {
        self.reasons.iter().map(|r| r.2).sum()
    }

    fn total(&self) -> u64 {
        self.reasons.iter().map(|r| r.1).sum()
    }

    /// `reason×count, …` of what `pick` selects.
    fn by_reason(&self, pick: impl Fn(&(&'static str, u64, u64)) -> u64) -> String {
        let parts: Vec<String> = self
            .reasons
            .iter()
            .filter(|r| pick(r) > 0)
            .map(|r| format!("{}×{}", r.0, pick(r)))
            .collect();
        parts.join(", ")
    }
}

fn secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string()
}

impl Digest {
    pub fn new(connections: u32) -> Digest {
        Digest {
            connections,
            open: 0,
            streak: None,
            quiet_opens: 0,
            quiet_opens_since: None,
        }
    }

    /// A session left the open phase (whatever the reason).
    /// Sessions of the target open now.
    pub fn open_sessions(&self) -> u32 {
        self.open
    }

    pub fn session_closed(&mut self) {
        self.open = self.open.saturating_sub(1);
    }

    /// A session of the target failed (connect or disconnect) with `reason`.
    pub fn failure(&mut self, ordinal: u32, reason: &'static str, now: Instant) -> Say {
        let streak = self.streak.get_or_insert_with(|| Streak::new(now));
        // Ordinals are below the target's session count: the set is bounded.
        if ordinal < self.connections {
            let word = ordinal as usize / 64;
            if streak.affected.len() <= word {
                streak.affected.resize(word + 1, 0);
            }
            streak.affected[word] |= 1 << (ordinal % 64);
        }
        match streak.reasons.iter_mut().find(|r| r.0 == reason) {
            Some(r) => {
                r.1 += 1;
                r.2 += 1;
                Say::Quiet
            }
            None => {
                // Logged in full: not pending a summary.
                streak.reasons.push((reason, 1, 0));
                Say::Full
            }
        }
    }

    /// A session of the target opened; returns how to log its line and,
    /// when it made the target whole after failures, the recovery line.
    pub fn opened(&mut self, name: &str, now: Instant) -> (Say, Option<String>) {
        self.open += 1;
        let whole = self.open >= self.connections;
        if whole {
            let recovery = self.streak.take().map(|s| {
                format!(
                    "target={name} recovered: all {} session(s) open after {} failure(s) ({}) of {} session(s) in {}",
                    self.connections,
                    s.total(),
                    s.by_reason(|r| r.1),
                    s.sessions_affected(),
                    secs(now.saturating_duration_since(s.since)),
                )
            });
            self.quiet_opens = 0;
            self.quiet_opens_since = None;
            return (Say::Full, recovery);
        }
        if self.open == 1 && self.streak.is_none() && self.quiet_opens == 0 {
            return (Say::Full, None);
        }
        self.quiet_opens += 1;
        self.quiet_opens_since.get_or_insert(now);
        (Say::Quiet, None)
    }

    /// Called about once a second: the summaries due, each with its level
    /// (failures warn, opens inform).
    pub fn tick(&mut self, name: &str, now: Instant) -> Vec<(log::Level, String)> {
        let mut lines = Vec::new();
        if let Some(s) = self.streak.as_mut() {
            let waited = now.saturating_duration_since(s.last_summary);
            if waited >= SUMMARY_INTERVAL && s.pending() > 0 {
                lines.push((
                    log::Level::Warn,
                    format!(
                        "target={name} still failing: {} more failure(s) in the last {} ({}); {} of {} session(s) \
                     affected since {} ago, {} open",
                        s.pending(),
                        secs(waited),
                        s.by_reason(|r| r.2),
                        s.sessions_affected(),
                        self.connections,
                        secs(now.saturating_duration_since(s.since)),
                        self.open,
                    ),
                ));
                s.reasons.iter_mut().for_each(|r| r.2 = 0);
                s.last_summary = now;
            }
        }
        if let Some(since) = self.quiet_opens_since {
            if now.saturating_duration_since(since) >= SUMMARY_INTERVAL {
                let line = format!(
                    "target={name} {} more session(s) opened; {} of {} open",
                    self.quiet_opens, self.open, self.connections
                );
                lines.push((log::Level::Info, line));
                self.quiet_opens = 0;
                self.quiet_opens_since = None;
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn a_thousand_failures_are_two_lines_then_a_summary_then_a_recovery() {
        let t0 = Instant::now();
        let mut d = Digest::new(1000);
        for i in 0..1000 {
            assert_eq!(
                d.opened("t", t0).0,
                if i == 0 || i == 999 { Say::Full } else { Say::Quiet }
            );
        }
        for i in 0..1000 {
            d.session_closed();
            let say = d.failure(i, "reset", at(t0, 1));
            assert_eq!(say, if i == 0 { Say::Full } else { Say::Quiet }, "session {i}");
        }
        // A second reason gets its own full line, once.
        assert_eq!(d.failure(3, "refused", at(t0, 2)), Say::Full);
        assert_eq!(d.failure(4, "refused", at(t0, 2)), Say::Quiet);
        assert!(d.tick("t", at(t0, 5)).is_empty(), "not before the interval");
        let lines = d.tick("t", at(t0, 11));
        assert_eq!(lines.len(), 1, "{lines:?}");
        let (level, line) = &lines[0];
        assert_eq!(*level, log::Level::Warn);
        let lines = [line];
        assert!(lines[0].contains("1000 more failure(s)"), "{}", lines[0]);
        assert!(lines[0].contains("reset×999, refused×1"), "{}", lines[0]);
        assert!(lines[0].contains("1000 of 1000 session(s) affected"), "{}", lines[0]);
        assert!(lines[0].contains(", 0 open"), "{}", lines[0]);
        // Nothing new: no line, but the streak goes on.
        assert!(d.tick("t", at(t0, 25)).is_empty());
        for i in 0..999 {
            let (say, recovery) = d.opened("t", at(t0, 30));
            assert_eq!((say, recovery.is_some()), (Say::Quiet, false), "open {i}");
        }
        let (say, recovery) = d.opened("t", at(t0, 30));
        assert_eq!(say, Say::Full);
        let recovery = recovery.expect("the streak ends");
        assert!(
            recovery.contains(
                "all 1000 session(s) open after 1002 failure(s) (reset×1000, refused×2) of 1000 session(s) in 29s"
            ),
            "{recovery}"
        );
        // The next failure starts a new streak, logged in full again.
        d.session_closed();
        assert_eq!(d.failure(7, "reset", at(t0, 40)), Say::Full);
    }

    #[test]
    fn a_single_session_target_logs_every_recovery_and_every_first_failure() {
        let t0 = Instant::now();
        let mut d = Digest::new(1);
        assert_eq!(d.opened("one", t0), (Say::Full, None));
        d.session_closed();
        assert_eq!(d.failure(0, "pong_timeout", at(t0, 1)), Say::Full);
        assert_eq!(d.failure(0, "refused", at(t0, 2)), Say::Full);
        assert_eq!(d.failure(0, "refused", at(t0, 3)), Say::Quiet);
        let (say, recovery) = d.opened("one", at(t0, 4));
        assert_eq!(say, Say::Full);
        assert!(recovery
            .expect("recovered")
            .contains("3 failure(s) (pong_timeout×1, refused×2) of 1 session(s)"));
        d.session_closed();
        assert_eq!(d.failure(0, "pong_timeout", at(t0, 5)), Say::Full, "a new streak");
    }

    #[test]
    fn quiet_opens_are_summed_up_once_per_interval() {
        let t0 = Instant::now();
        let mut d = Digest::new(100);
        assert_eq!(d.opened("t", t0).0, Say::Full);
        for _ in 0..49 {
            assert_eq!(d.opened("t", at(t0, 1)).0, Say::Quiet);
        }
        assert!(d.tick("t", at(t0, 2)).is_empty());
        assert_eq!(
            d.tick("t", at(t0, 11)),
            [(
                log::Level::Info,
                "target=t 49 more session(s) opened; 50 of 100 open".to_string()
            )]
        );
        assert!(d.tick("t", at(t0, 30)).is_empty());
    }
}
