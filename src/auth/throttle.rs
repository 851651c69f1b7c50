//! Login throttling (SPEC §3.2, §5 `[login]`; SECURITY.md "Browser pages"): failed logins are
//! counted per user name and per client address within `login.window`; each failure after the
//! first makes the key wait twice as long as before (exponential back-off), and reaching
//! `login.max_failures` bans the key for `login.ban`, as Authelia's regulation does. The
//! state is in memory (per replica) and bounded; time is always the caller's `now`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::password::{HashParams, PasswordVerifier, VerifierLimits, hash_password_with};
use crate::config::Config;

/// The first back-off, after the second failure; it doubles with each further failure.
const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// Keys remembered at most; beyond it, stale keys are dropped first, then unbanned ones.
const MAX_KEYS: usize = 100_000;

/// The `[login]` settings the throttle applies (read from the live config on each call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub max_failures: u32,
    pub window: Duration,
    pub ban: Duration,
}

impl ThrottlePolicy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_failures: config.login.max_failures.max(1),
            window: config.login.window,
            ban: config.login.ban,
        }
    }

    /// How long a key with `failures` recent failures must wait.
    fn wait_after(&self, failures: u32) -> Duration {
        if failures >= self.max_failures {
            return self.ban;
        }
        if failures < 2 {
            return Duration::ZERO;
        }
        let doublings = (failures - 2).min(20);
        BASE_BACKOFF.saturating_mul(1u32 << doublings).min(self.ban)
    }
}

/// What a throttled key is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(IpAddr),
}

#[derive(Clone, Debug)]
struct Entry {
    failures: u32,
    first_failure: SystemTime,
    blocked_until: SystemTime,
}

/// Failed-login counters, shared by every connection of this process.
#[derive(Debug, Default)]
pub struct Throttle {
    entries: Mutex<HashMap<Key, Entry>>,
}

/// Why a login attempt is refused before its password is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// When the caller may try again.
    pub retry_after: Duration,
}

impl Throttle {
    pub fn new() -> Self {
        Self::default()
    }

    fn keys(user: &str, addr: IpAddr) -> [Key; 2] {
        // User names are compared as typed; the directory's names are case-sensitive too.
        [Key::User(user.to_owned()), Key::Addr(normalize(addr))]
    }

    /// Refuses the attempt if the user name or the address must still wait.
    pub fn check(&self, user: &str, addr: IpAddr, now: SystemTime) -> Result<(), Throttled> {
        let entries = self.lock();
        let wait = Self::keys(user, addr)
            .iter()
            .filter_map(|k| entries.get(k))
            .filter_map(|e| e.blocked_until.duration_since(now).ok())
            .max();
        match wait {
            Some(retry_after) if !retry_after.is_zero() => Err(Throttled { retry_after }),
            _ => Ok(()),
        }
    }

    /// Counts a failed attempt against both keys.
    pub fn failure(&self, policy: &ThrottlePolicy, user: &str, addr: IpAddr, now: SystemTime) {
        let mut entries = self.lock();
        if entries.len() >= MAX_KEYS {
            prune(&mut entries, policy, now);
        }
        for key in Self::keys(user, addr) {
            let entry = entries.entry(key).or_insert(Entry {
                failures: 0,
                first_failure: now,
                blocked_until: now,
            });
            let window_over = entry.first_failure + policy.window <= now;
            let ban_over = entry.failures >= policy.max_failures && entry.blocked_until <= now;
            if window_over || ban_over {
                entry.failures = 0;
                entry.first_failure = now;
            }
            entry.failures = entry.failures.saturating_add(1);
            entry.blocked_until = now + policy.wait_after(entry.failures);
        }
    }

    /// A successful login forgets the user name's failures. The address keeps its count:
    /// one valid account must not reset the counter of someone guessing others.
    pub fn success(&self, user: &str) {
        self.lock().remove(&Key::User(user.to_owned()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic while holding the lock leaves consistent counters: keep using them.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// IPv6 clients usually hold a whole /64: count them as one address.
fn normalize(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn prune(entries: &mut HashMap<Key, Entry>, policy: &ThrottlePolicy, now: SystemTime) {
    entries.retain(|_, e| e.blocked_until > now || e.first_failure + policy.window > now);
    if entries.len() >= MAX_KEYS {
        // Still full of fresh keys (a flood of names or addresses): keep only the bans.
        entries.retain(|_, e| e.blocked_until > now);
    }
}

/// Everything a login needs besides the store: the throttle and the bounded verifier.
#[derive(Debug)]
pub struct LoginGuard {
    pub throttle: Throttle,
    pub verifier: PasswordVerifier,
}

impl LoginGuard {
    /// A guard whose unknown-user work costs what the configured users' hashes cost: the
    /// dummy hash is made with the first user's argon2 parameters when they are not OWASP's.
    pub fn new(config: &Config) -> Self {
        let limits = VerifierLimits::default();
        let params = config
            .users
            .iter()
            .find_map(|u| super::password::validate_hash(u.password_hash.expose()).ok());
        let verifier = match params {
            Some(p) if p != HashParams::OWASP => dummy_like(p)
                .and_then(|h| PasswordVerifier::with_dummy_hash(limits, &h).ok())
                .unwrap_or_else(|| PasswordVerifier::new(limits)),
            _ => PasswordVerifier::new(limits),
        };
        Self {
            throttle: Throttle::new(),
            verifier,
        }
    }
}

fn dummy_like(params: HashParams) -> Option<String> {
    let password = crate::auth::secret::random_token::<16>().ok()?;
    hash_password_with(&password, params).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ThrottlePolicy = ThrottlePolicy {
        max_failures: 5,
        window: Duration::from_secs(300),
        ban: Duration::from_secs(900),
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn back_off_doubles_then_bans() {
        let waits: Vec<u64> = (1..=6).map(|n| POLICY.wait_after(n).as_secs()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 900, 900]);
    }

    #[test]
    fn failures_block_the_user_name_from_any_address_and_the_address_for_any_name() {
        let t = Throttle::new();
        let now = SystemTime::now();
        t.failure(&POLICY, "alice", ip("10.0.0.1"), now);
        assert!(
            t.check("alice", ip("10.0.0.1"), now).is_ok(),
            "one failure is free"
        );
        t.failure(&POLICY, "alice", ip("10.0.0.1"), now);
        assert!(t.check("alice", ip("10.9.9.9"), now).is_err());
        assert!(t.check("bob", ip("10.0.0.1"), now).is_err());
        assert!(t.check("bob", ip("10.9.9.9"), now).is_ok());
        let later = now + Duration::from_secs(1);
        assert!(t.check("alice", ip("10.0.0.1"), later).is_ok());
    }

    #[test]
    fn max_failures_ban_until_the_ban_ends_and_then_counting_restarts() {
        let t = Throttle::new();
        let mut now = SystemTime::now();
        for _ in 0..5 {
            now += Duration::from_secs(10);
            t.failure(&POLICY, "alice", ip("10.0.0.1"), now);
        }
        let banned = t.check("alice", ip("10.0.0.2"), now).unwrap_err();
        assert_eq!(banned.retry_after, Duration::from_secs(900));
        now += Duration::from_secs(899);
        assert!(t.check("alice", ip("10.0.0.2"), now).is_err());
        now += Duration::from_secs(1);
        assert!(t.check("alice", ip("10.0.0.2"), now).is_ok());
        t.failure(&POLICY, "alice", ip("10.0.0.1"), now);
        assert!(
            t.check("alice", ip("10.0.0.1"), now).is_ok(),
            "a fresh count"
        );
    }

    #[test]
    fn success_clears_the_name_but_not_the_address() {
        let t = Throttle::new();
        let now = SystemTime::now();
        t.failure(&POLICY, "alice", ip("10.0.0.1"), now);
        t.failure(&POLICY, "alice", ip("10.0.0.1"), now);
        t.success("alice");
        assert!(t.check("alice", ip("10.0.0.2"), now).is_ok());
        assert!(t.check("alice", ip("10.0.0.1"), now).is_err());
    }

    #[test]
    fn ipv6_addresses_in_one_64_share_a_counter() {
        let t = Throttle::new();
        let now = SystemTime::now();
        t.failure(&POLICY, "a", ip("2001:db8::1"), now);
        t.failure(&POLICY, "b", ip("2001:db8::2"), now);
        assert!(t.check("c", ip("2001:db8::ffff"), now).is_err());
        assert!(t.check("c", ip("2001:db9::1"), now).is_ok());
    }
}
