//! Finds a limit on how long a target's sessions may live: when sessions
//! keep ending at the same age, something on the path (a load balancer's
//! maximum connection duration, a proxy's session timer, a server's token
//! lifetime) ends them on a clock, and each such ending is `lifetime_limit`
//! rather than a fault. Deterministic: ends and ages are passed in.

use std::time::Duration;

use crate::clock::Instant;

/// Ends this close together are one moment: sessions opened together by a
/// restart and cut together are one observation, not many.
const SAME_MOMENT: Duration = Duration::from_secs(1);
/// Moments whose ages agree before a limit is believed.
const MOMENTS: usize = 4;
/// Sessions younger than this say nothing about a lifetime limit.
const MIN_AGE: Duration = Duration::from_secs(1);
/// Ages agree within this share of the limit (the timers that cut
/// sessions are exact; random ends agree this well rarely) ...
const RELATIVE_TOLERANCE: f64 = 0.01;
/// ... plus this much: ages count from the open, the cutter's from the
/// accept, and an end is seen up to one timer-grid period late.
const ABSOLUTE_TOLERANCE: Duration = Duration::from_millis(100);

/// What one session's end says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Nothing (yet) about a limit.
    Unexplained,
    /// Ended at the limit's age: the limit ended it. `new` when this end
    /// made the limit known.
    AtLimit { limit: Duration, new: bool },
    /// A session outlived the limit once believed: there is none (any more).
    LimitGone { was: Duration },
}

/// One moment at which sessions ended: its time and the age they ended at
/// (`None` when sessions of different ages ended together).
#[derive(Debug, Clone, Copy)]
struct Moment {
    at: Instant,
    age: Option<Duration>,
}

#[derive(Debug, Default)]
pub struct LifetimeWatch {
    moments: Vec<Moment>,
    limit: Option<Duration>,
}

fn agree(a: Duration, b: Duration) -> bool {
    let slack = b.mul_f64(RELATIVE_TOLERANCE) + ABSOLUTE_TOLERANCE;
    a.max(b) - a.min(b) <= slack
}

impl LifetimeWatch {
    /// The limit believed now.
    pub fn limit(&self) -> Option<Duration> {
        self.limit
    }

    /// A session ended at `now` after `age` open. `by_peer`: the far side
    /// (or the path) ended it, not our timeouts or our own close.
    pub fn on_end(&mut self, now: Instant, age: Duration, by_peer: bool) -> Verdict {
        if let Some(limit) = self.limit {
            if age > limit && !agree(age, limit) {
                self.limit = None;
                self.moments.clear();
                return Verdict::LimitGone { was: limit };
            }
        }
        if !by_peer || age < MIN_AGE {
            return Verdict::Unexplained;
        }
        match self.moments.last_mut() {
            Some(last) if now.saturating_duration_since(last.at) < SAME_MOMENT => {
                // Ended with others: the same age keeps the moment whole.
                last.age = last.age.filter(|&a| agree(age, a));
            }
            _ => {
                if self.moments.len() == MOMENTS {
                    self.moments.remove(0);
                }
                self.moments.push(Moment {
                    at: now,
                    age: Some(age),
                });
            }
        }
        if let Some(limit) = self.limit {
            return if agree(age, limit) {
                Verdict::AtLimit { limit, new: false }
            } else {
                Verdict::Unexplained
            };
        }
        match self.agreed_age() {
            Some(limit) if agree(age, limit) => {
                self.limit = Some(limit);
                Verdict::AtLimit { limit, new: true }
            }
            _ => Verdict::Unexplained,
        }
    }

    /// The median age of the last moments, if they all agree on it.
    fn agreed_age(&self) -> Option<Duration> {
        if self.moments.len() < MOMENTS {
            return None;
        }
        let mut ages: Vec<Duration> = self.moments.iter().map(|m| m.age).collect::<Option<_>>()?;
        ages.sort_unstable();
        let median = ages[ages.len() / 2];
        ages.iter().all(|&a| agree(a, median)).then_some(median)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Feeds ends `(seconds after start, age in seconds)` by the peer.
    fn feed(w: &mut LifetimeWatch, start: Instant, ends: &[(f64, f64)]) -> Vec<Verdict> {
        ends.iter()
            .map(|&(at, age)| w.on_end(start + S.mul_f64(at), S.mul_f64(age), true))
            .collect()
    }

    #[test]
    fn sessions_cut_at_one_age_reveal_the_limit_on_the_fourth_moment() {
        let start = Instant::now();
        let mut w = LifetimeWatch::default();
        let v = feed(
            &mut w,
            start,
            &[(30.0, 30.0), (60.6, 30.1), (91.2, 29.95), (121.5, 30.05)],
        );
        assert_eq!(v[..3], [Verdict::Unexplained; 3]);
        // The median of the ages agreeing.
        let limit = S.mul_f64(30.05);
        assert_eq!(v[3], Verdict::AtLimit { limit, new: true });
        // Later ends at that age are explained; earlier ones are not.
        let v = feed(&mut w, start, &[(151.8, 30.02), (160.0, 4.0)]);
        assert_eq!(v, [Verdict::AtLimit { limit, new: false }, Verdict::Unexplained]);
        assert_eq!(w.limit(), Some(limit));
        // A session that lives clearly longer proves there is no limit.
        let v = feed(&mut w, start, &[(230.0, 45.0)]);
        assert_eq!(v[0], Verdict::LimitGone { was: limit });
        assert_eq!(w.limit(), None);
    }

    #[test]
    fn a_mass_cut_of_sessions_of_one_age_is_one_moment_not_three() {
        let start = Instant::now();
        let mut w = LifetimeWatch::default();
        // Ten sessions opened together, all cut 37 s later (a restart).
        let ends: Vec<(f64, f64)> = (0..10).map(|i| (37.0 + f64::from(i) * 0.01, 37.0)).collect();
        assert!(feed(&mut w, start, &ends).iter().all(|v| *v == Verdict::Unexplained));
        assert_eq!(w.limit(), None);
    }

    #[test]
    fn random_ages_our_own_timeouts_and_young_sessions_never_make_a_limit() {
        let start = Instant::now();
        let mut w = LifetimeWatch::default();
        let mut rng = crate::session::rng::Rng::new(7);
        let mut at = 0.0;
        for _ in 0..10_000 {
            at += 1.5 + (rng.next_u64() % 1000) as f64 / 10.0;
            let age = 1.0 + (rng.next_u64() % 3600) as f64;
            assert_eq!(feed(&mut w, start, &[(at, age)])[0], Verdict::Unexplained);
        }
        let mut w = LifetimeWatch::default();
        for i in 0..10 {
            let end = start + S * (10 * i);
            assert_eq!(w.on_end(end, S * 5, false), Verdict::Unexplained, "our own timeouts");
            assert_eq!(w.on_end(end + S * 2, S / 2, true), Verdict::Unexplained, "too young");
        }
        assert_eq!(w.limit(), None);
    }

    #[test]
    fn sessions_of_different_ages_cut_together_break_the_agreement() {
        let start = Instant::now();
        let mut w = LifetimeWatch::default();
        feed(&mut w, start, &[(10.0, 10.0), (20.5, 10.0), (31.0, 10.0)]);
        // Two ends at one moment with different ages: a restart, not a limit.
        let v = feed(&mut w, start, &[(41.5, 6.0), (41.6, 10.0)]);
        assert_eq!(v, [Verdict::Unexplained; 2]);
        assert_eq!(w.limit(), None);
        // Three more agreeing moments after it make the limit known.
        let v = feed(&mut w, start, &[(52.0, 10.0), (62.5, 10.0), (73.0, 10.0), (83.5, 10.0)]);
        assert_eq!(v[..3], [Verdict::Unexplained; 3]);
        assert_eq!(
            v[3],
            Verdict::AtLimit {
                limit: S * 10,
                new: true
            }
        );
    }
}
