//! HTTP basic authentication against the web configuration's bcrypt
//! hashes. A bcrypt check costs tens of milliseconds of the HTTP loop, so
//! credentials that passed are remembered (as a salted digest, never in
//! clear), and checks of new credentials are rationed: a flood of wrong
//! passwords gets 429s instead of stalling every other request.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::clock::Instant;

/// Passed credentials remembered; the set starts over when full.
const REMEMBERED: usize = 64;
/// bcrypt checks of unknown credentials allowed per second (and in a burst).
const CHECKS_PER_SECOND: f64 = 5.0;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No credentials, or wrong ones: 401.
    Denied,
    /// Too many unknown credentials to check right now: 429.
    Busy,
}

pub struct BasicAuth {
    users: BTreeMap<String, String>,
    salt: [u8; 16],
    state: Mutex<State>,
}

struct State {
    passed: HashSet<[u8; 20]>,
    tokens: f64,
    refilled: Instant,
}

impl BasicAuth {
    /// `users`: name → bcrypt hash.
    pub fn new(users: BTreeMap<String, String>) -> BasicAuth {
        let mut salt = [0u8; 16];
        // A salt the process cannot get is a digest anyone could precompute:
        // still never the password itself.
        let _ = getrandom::getrandom(&mut salt);
        BasicAuth {
            users,
            salt,
            state: Mutex::new(State {
                passed: HashSet::new(),
                tokens: CHECKS_PER_SECOND,
                refilled: Instant::now(),
            }),
        }
    }

    /// Judges an `Authorization` header value.
    pub fn check(&self, authorization: Option<&str>, now: Instant) -> Verdict {
        let Some((user, password)) = authorization.and_then(decode) else {
            return Verdict::Denied;
        };
        let Some(hash) = self.users.get(&user) else {
            return Verdict::Denied;
        };
        let digest = self.digest(&user, &password);
        let Ok(mut state) = self.state.lock() else {
            return Verdict::Denied;
        };
        if state.passed.contains(&digest) {
            return Verdict::Allowed;
        }
        let elapsed = now.saturating_duration_since(state.refilled).as_secs_f64();
        state.tokens = (state.tokens + elapsed * CHECKS_PER_SECOND).min(CHECKS_PER_SECOND);
        state.refilled = now;
        if state.tokens < 1.0 {
            return Verdict::Busy;
        }
        state.tokens -= 1.0;
        if !bcrypt::verify(&password, hash).unwrap_or(false) {
            return Verdict::Denied;
        }
        if state.passed.len() >= REMEMBERED {
            state.passed.clear();
        }
        state.passed.insert(digest);
        Verdict::Allowed
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 20] {
        let mut h = Sha1::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }
}

/// `Basic base64(user:password)` → (user, password).
fn decode(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn header(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    fn auth() -> BasicAuth {
        // Cost 4: the test is about the logic, not bcrypt's slowness.
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        BasicAuth::new(BTreeMap::from([("prometheus".to_string(), hash)]))
    }

    #[test]
    fn right_credentials_pass_and_wrong_or_missing_ones_do_not() {
        let a = auth();
        let t = Instant::now();
        assert_eq!(a.check(Some(&header("prometheus", "s3cret")), t), Verdict::Allowed);
        assert_eq!(a.check(Some(&header("prometheus", "wrong")), t), Verdict::Denied);
        assert_eq!(a.check(Some(&header("nobody", "s3cret")), t), Verdict::Denied);
        assert_eq!(a.check(None, t), Verdict::Denied);
        assert_eq!(a.check(Some("Bearer abc"), t), Verdict::Denied);
        assert_eq!(a.check(Some("Basic !!!"), t), Verdict::Denied);
    }

    #[test]
    fn unknown_credentials_are_rationed_and_remembered_ones_are_not() {
        let a = auth();
        let t = Instant::now();
        assert_eq!(a.check(Some(&header("prometheus", "s3cret")), t), Verdict::Allowed);
        let verdicts: Vec<Verdict> = (0..8)
            .map(|_| a.check(Some(&header("prometheus", "guess")), t))
            .collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Denied).count(), 4);
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Busy).count(), 4);
        // The known password still passes while the guesses wait.
        assert_eq!(a.check(Some(&header("prometheus", "s3cret")), t), Verdict::Allowed);
        let later = t + Duration::from_secs(1);
        assert_eq!(a.check(Some(&header("prometheus", "guess")), later), Verdict::Denied);
    }
}
