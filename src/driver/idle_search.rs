//! How long the path lets a silent connection live, found across trials:
//! a session that sends nothing after its upgrade for `hold`, then one
//! probe. A path that closes idle connections (a proxy's read timeout, a
//! load balancer's idle timeout) ends the session at exactly its timeout,
//! which is measured directly (twice, agreeing, so a restart is not taken
//! for it); one that silently forgets them (a NAT, a firewall's state
//! table) leaves the probe unanswered, and the timeout is searched by
//! halving between the longest silence that survived and the shortest that
//! did not. Then: whether RFC 6455 pings alone keep a connection alive
//! through it. Deterministic: trials' outcomes are passed in.

use std::time::Duration;

/// One trial session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trial {
    /// Silent for `hold` after the upgrade, then one probe.
    Silent { hold: Duration },
    /// Only pings, `pings` of them `interval` apart, nothing else.
    PingsOnly { interval: Duration, pings: u32 },
}

/// How a trial session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every probe was answered: the connection lived through the trial.
    Answered,
    /// The far side (or the path) ended it after this long open.
    Killed { after: Duration },
    /// A probe went unanswered: the path forgot the connection.
    Unanswered,
    /// It never opened (or ended for a reason that says nothing).
    Inconclusive,
}

/// What has been found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// Silent connections die after about this long.
    Timeout(Duration),
    /// A connection silent for `max` still lived.
    NoneUpTo(Duration),
}

/// Kills agreeing within this share are the same timeout.
const AGREE: f64 = 0.1;
/// Halving stops when the bounds are this close (as a share of the upper).
const CONVERGED: f64 = 0.1;
/// Pings per pings-only trial: it then lasts about twice the timeout.
const PINGS: u32 = 7;

#[derive(Debug)]
pub struct IdleSearch {
    max: Duration,
    /// Longest silence a connection survived.
    lo: Duration,
    /// Shortest silence after which one was found forgotten.
    hi: Option<Duration>,
    /// Ages at which silent sessions were ended by the far side.
    kills: Vec<Duration>,
    finding: Option<Finding>,
    pings_keep_alive: Option<bool>,
}

impl IdleSearch {
    pub fn new(max: Duration) -> IdleSearch {
        IdleSearch {
            max,
            lo: Duration::ZERO,
            hi: None,
            kills: Vec::new(),
            finding: None,
            pings_keep_alive: None,
        }
    }

    pub fn finding(&self) -> Option<Finding> {
        self.finding
    }

    /// Whether pings alone kept a connection alive past the timeout.
    pub fn pings_keep_alive(&self) -> Option<bool> {
        self.pings_keep_alive
    }

    /// The next trial to run; `None` when everything is known.
    pub fn next_trial(&self) -> Option<Trial> {
        match self.finding {
            Some(Finding::NoneUpTo(_)) => None,
            Some(Finding::Timeout(t)) => self.pings_keep_alive.is_none().then(|| Trial::PingsOnly {
                interval: t / 3,
                pings: PINGS,
            }),
            None => Some(Trial::Silent {
                hold: match self.hi {
                    Some(hi) => (self.lo + hi) / 2,
                    None => self.max,
                },
            }),
        }
    }

    /// Takes a trial's outcome.
    pub fn record(&mut self, trial: Trial, outcome: Outcome) {
        match trial {
            Trial::Silent { hold } => self.record_silent(hold, outcome),
            Trial::PingsOnly { .. } => {
                let Some(Finding::Timeout(t)) = self.finding else {
                    return;
                };
                self.pings_keep_alive = match outcome {
                    Outcome::Answered => Some(true),
                    // Ended around one timeout in: the pings did not count.
                    Outcome::Killed { after } if after < t * 2 => Some(false),
                    Outcome::Unanswered => Some(false),
                    _ => None,
                };
            }
        }
    }

    fn record_silent(&mut self, hold: Duration, outcome: Outcome) {
        match outcome {
            Outcome::Answered => {
                self.lo = self.lo.max(hold);
                if hold >= self.max {
                    self.finding = Some(Finding::NoneUpTo(self.max));
                } else {
                    self.check_converged();
                }
            }
            Outcome::Killed { after } if after <= hold => {
                self.kills.push(after);
                if self.kills.len() > 3 {
                    self.kills.remove(0);
                }
                let last = self.kills[self.kills.len() - 1];
                let agreeing = self.kills[..self.kills.len() - 1]
                    .iter()
                    .any(|&k| k.max(last) - k.min(last) <= last.mul_f64(AGREE));
                if agreeing {
                    self.finding = Some(Finding::Timeout(last));
                }
            }
            Outcome::Killed { .. } | Outcome::Inconclusive => {}
            Outcome::Unanswered => {
                self.hi = Some(self.hi.map_or(hold, |hi| hi.min(hold)));
                self.check_converged();
            }
        }
    }

    fn check_converged(&mut self) {
        if let Some(hi) = self.hi {
            if hi.saturating_sub(self.lo) <= hi.mul_f64(CONVERGED) {
                self.finding = Some(Finding::Timeout((self.lo + hi) / 2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Runs the search against a path with this behaviour.
    fn run(max: Duration, path: impl Fn(Trial) -> Outcome) -> (IdleSearch, usize) {
        let mut search = IdleSearch::new(max);
        let mut trials = 0;
        while let Some(trial) = search.next_trial() {
            trials += 1;
            assert!(trials < 100, "the search must end");
            search.record(trial, path(trial));
        }
        (search, trials)
    }

    #[test]
    fn a_proxy_that_closes_idle_connections_is_measured_directly_then_pings_are_tried() {
        // nginx with proxy_read_timeout 60s: silent sessions closed at 60 s,
        // pinged ones (pongs are reads from upstream) live on.
        let (search, trials) = run(S * 900, |trial| match trial {
            Trial::Silent { hold } if hold > S * 60 => Outcome::Killed {
                after: S * 60 + S / 100,
            },
            Trial::Silent { .. } => Outcome::Answered,
            Trial::PingsOnly { interval, .. } => {
                assert_eq!(interval, (S * 60 + S / 100) / 3);
                Outcome::Answered
            }
        });
        assert_eq!(search.finding(), Some(Finding::Timeout(S * 60 + S / 100)));
        assert_eq!(search.pings_keep_alive(), Some(true));
        assert_eq!(trials, 3, "two agreeing kills and one pings-only trial");
    }

    #[test]
    fn a_path_that_counts_only_data_ends_the_pings_only_trial_too() {
        let (search, _) = run(S * 300, |trial| match trial {
            Trial::Silent { .. } => Outcome::Killed { after: S * 30 },
            Trial::PingsOnly { .. } => Outcome::Killed { after: S * 30 },
        });
        assert_eq!(search.finding(), Some(Finding::Timeout(S * 30)));
        assert_eq!(search.pings_keep_alive(), Some(false));
    }

    #[test]
    fn a_path_that_forgets_silently_is_found_by_halving_within_a_tenth() {
        // A NAT dropping state after 100 s of silence: probes after longer
        // silences go unanswered.
        let (search, trials) = run(S * 900, |trial| match trial {
            Trial::Silent { hold } if hold > S * 100 => Outcome::Unanswered,
            Trial::Silent { .. } => Outcome::Answered,
            Trial::PingsOnly { .. } => Outcome::Answered,
        });
        let Some(Finding::Timeout(t)) = search.finding() else {
            panic!("{:?}", search.finding());
        };
        assert!(t.as_secs_f64() > 90.0 && t.as_secs_f64() < 110.0, "{t:?}");
        assert!(trials < 15, "{trials} trials");
    }

    #[test]
    fn no_timeout_up_to_max_and_inconclusive_trials_are_retried() {
        let (search, trials) = run(S * 60, |_| Outcome::Answered);
        assert_eq!(search.finding(), Some(Finding::NoneUpTo(S * 60)));
        assert_eq!(search.pings_keep_alive(), None);
        assert_eq!(trials, 1);

        let mut search = IdleSearch::new(S * 60);
        let first = search.next_trial().unwrap();
        search.record(first, Outcome::Inconclusive);
        assert_eq!(
            search.next_trial(),
            Some(first),
            "a trial that said nothing is run again"
        );
        // One kill alone (a restart?) is not believed; a disagreeing one neither.
        search.record(first, Outcome::Killed { after: S * 20 });
        search.record(first, Outcome::Killed { after: S * 41 });
        assert_eq!(search.finding(), None);
        search.record(first, Outcome::Killed { after: S * 40 });
        assert_eq!(search.finding(), Some(Finding::Timeout(S * 40)));
    }
}
