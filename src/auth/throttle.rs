//! Login throttling (SPEC §3.2, §5 `[login]`; SECURITY.md "Browser pages"): failed logins are
//! counted per user name and per client address within `login.window`; each failure after the
//! first makes the key wait twice as long as before (exponential back-off), and reaching
//! `login.max_failures` bans the key for `login.ban`, as Authelia's regulation does. The
//! client address is the one [`client_addr`] resolves through `server.trusted_proxies`, for
//! this throttle and the client-authentication one. The state is in memory (per replica) and
//! bounded; time is always the caller's `now`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::FORWARDED;

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

/// The client address every throttle counts (SPEC §3.2): the TCP peer, unless the peer is a
/// trusted proxy (`trusted` is `server.trusted_proxies`, as the proxy's header policy knows
/// them); then the right-most `X-Forwarded-For` entry that is not itself a trusted proxy,
/// or, without `X-Forwarded-For`, the right-most such `Forwarded: for=` (RFC 7239). Entries
/// left of it were written by the client and are never believed. An entry that is not an
/// address (`unknown`, an obfuscated name, garbage) ends the walk at the trusted hop that
/// reported it; a chain of trusted hops only ends at its left-most one.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted(peer) {
        return peer;
    }
    let xff = headers.get_all("x-forwarded-for");
    let hops: Vec<Option<IpAddr>> = if xff.iter().next().is_some() {
        xff.iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(|entry| std::str::from_utf8(entry).ok().and_then(parse_hop))
            .collect()
    } else {
        headers
            .get_all(FORWARDED)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(|element| std::str::from_utf8(element).ok().and_then(forwarded_for))
            .collect()
    };
    let mut nearest = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) if trusted(ip) => nearest = ip,
            Some(ip) => return ip,
            None => return nearest,
        }
    }
    nearest
}

/// The address of one `Forwarded` element's `for=` parameter.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
        .and_then(|(_, value)| parse_hop(value))
}

/// One hop: `192.0.2.1`, `2001:db8::1`, with a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`),
/// bracketed (`[2001:db8::1]`), possibly quoted.
fn parse_hop(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<IpAddr>().ok())
        })?;
    Some(ip.to_canonical())
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
    use http::HeaderValue;

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

    fn resolve(peer: &str, headers: &[(&str, &str)]) -> IpAddr {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        let proxies: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        client_addr(ip(peer), &map, |a| proxies.iter().any(|n| n.contains(&a)))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let xff = [("x-forwarded-for", "192.0.2.1")];
        assert_eq!(resolve("203.0.113.5", &xff), ip("203.0.113.5"));
        let fwd = [("forwarded", "for=192.0.2.1")];
        assert_eq!(resolve("203.0.113.5", &fwd), ip("203.0.113.5"));
        assert_eq!(resolve("::ffff:203.0.113.5", &xff), ip("203.0.113.5"));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("x-forwarded-for", "192.0.2.1")], "192.0.2.1"),
            // The client wrote the left-most entry; our balancer appended the real one.
            (
                &[("x-forwarded-for", "198.51.100.1, 192.0.2.1")],
                "192.0.2.1",
            ),
            (
                &[("x-forwarded-for", "198.51.100.1, 192.0.2.1, 10.1.1.1")],
                "192.0.2.1",
            ),
            // Several header lines are one list, in order.
            (
                &[
                    ("x-forwarded-for", "198.51.100.1"),
                    ("x-forwarded-for", "192.0.2.1"),
                ],
                "192.0.2.1",
            ),
            (&[("x-forwarded-for", "192.0.2.1:4711")], "192.0.2.1"),
            (&[("x-forwarded-for", "[2001:db8::1]:4711")], "2001:db8::1"),
            (&[("x-forwarded-for", "::ffff:192.0.2.1")], "192.0.2.1"),
            // Only trusted hops: the left-most one (an internal client).
            (&[("x-forwarded-for", "10.2.2.2, 10.1.1.1")], "10.2.2.2"),
            // Not an address: stop at the trusted hop that reported it, never look left of it.
            (&[("x-forwarded-for", "192.0.2.1, unknown")], "10.0.0.1"),
            (
                &[("x-forwarded-for", "192.0.2.1, unknown, 10.1.1.1")],
                "10.1.1.1",
            ),
            (&[("x-forwarded-for", "")], "10.0.0.1"),
            (&[], "10.0.0.1"),
            (&[("forwarded", "for=192.0.2.43")], "192.0.2.43"),
            (
                &[(
                    "forwarded",
                    "for=198.51.100.1, for=\"[2001:db8:cafe::17]:4711\";proto=https",
                )],
                "2001:db8:cafe::17",
            ),
            (
                &[("forwarded", "proto=https;For=\"192.0.2.43:47011\"")],
                "192.0.2.43",
            ),
            (&[("forwarded", "for=192.0.2.1, for=_hidden")], "10.0.0.1"),
            // X-Forwarded-For wins over Forwarded when both are present.
            (
                &[
                    ("forwarded", "for=198.51.100.1"),
                    ("x-forwarded-for", "192.0.2.1"),
                ],
                "192.0.2.1",
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(resolve("10.0.0.1", headers), ip(want), "{headers:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_forwarding_header_resolves_without_panicking(value in "[ -~]{0,80}") {
            for name in ["x-forwarded-for", "forwarded"] {
                let _ = resolve("10.0.0.1", &[(name, value.as_str())]);
            }
        }
    }
}
