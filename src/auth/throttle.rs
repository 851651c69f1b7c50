//! Throttles against guessed credentials (SPEC §3.2, §5 `[login]`; SECURITY.md "Browser
//! pages", "Client authentication", "Resources"). Failed logins are counted per user name and
//! per client address, failed client authentications per client id at a client address, within
//! a window; with back-off each failure after the first makes the key wait twice as long as
//! before, and reaching `max_failures` bans the key, as Authelia's regulation does.
//!
//! Record, then judge: [`Throttle::attempt`] registers an attempt against its keys before any
//! password or secret is looked at, and judges it as if every attempt still being checked had
//! failed. An attempt that could only be refused because of those waits until they are
//! answered (a right password or secret takes them back, a wrong one counts), then is judged
//! again. So parallel guesses get no more tries than sequential ones, while parallel requests
//! with the right credentials (a backend's concurrent token calls, colleagues behind one NAT)
//! take turns instead of being refused. The client address is the one [`client_addr`]
//! resolves through `server.trusted_proxies`. Names are kept as SHA-256 digests and the map
//! holds at most [`MAX_KEYS`] keys, whatever is sent. Time is always the caller's `now`.
//!
//! With PostgreSQL the failures are shared by every replica (SPEC §3.2): each failure is
//! written to the store (counted there as here, under a row lock) before the failed attempt
//! is answered, and every attempt is also judged against the store's `blocked_until` of its
//! keys, so failures on one replica ban on the others. What stays per replica: the attempts
//! under way (a replica waits only for its own), and the bound on keys. With SQLite (one
//! process) the state is in memory only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::FORWARDED;
use sha2::{Digest as _, Sha256};

use super::password::{HashParams, PasswordVerifier, VerifierLimits, hash_password_with};
use crate::config::Config;
use crate::store::{Store, ThrottleRow};

/// The first back-off, after the second failure; it doubles with each further failure.
const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// Keys remembered at most by one throttle (about 100 bytes each).
pub const MAX_KEYS: usize = 100_000;

/// How a throttle counts: for logins the `[login]` settings (read from the live config on
/// each call), for client authentication a fixed policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub max_failures: u32,
    pub window: Duration,
    pub ban: Duration,
    /// Whether failures below `max_failures` make the key wait (exponential back-off).
    pub back_off: bool,
}

impl ThrottlePolicy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_failures: config.login.max_failures.max(1),
            window: config.login.window,
            ban: config.login.ban,
            back_off: true,
        }
    }

    /// How long a key with `failures` recent failures must wait.
    fn wait_after(&self, failures: u32) -> Duration {
        if failures >= self.max_failures {
            return self.ban;
        }
        if failures < 2 || !self.back_off {
            return Duration::ZERO;
        }
        let doublings = (failures - 2).min(20);
        BASE_BACKOFF.saturating_mul(1u32 << doublings).min(self.ban)
    }
}

/// A SHA-256 digest: what a throttle keeps of a name, however long the name was.
type Digest = [u8; 32];

fn digest(name: &str) -> Digest {
    Sha256::digest(name.as_bytes()).into()
}

/// What failures are counted against: a fixed-size value whatever the request sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key(KeyKind);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum KeyKind {
    User(Digest),
    Addr(IpAddr),
    Client(Digest, IpAddr),
}

impl Key {
    /// A login user name, compared as typed (the directory's names are case-sensitive too).
    pub fn user(name: &str) -> Self {
        Self(KeyKind::User(digest(name)))
    }

    /// A client address.
    pub fn addr(addr: IpAddr) -> Self {
        Self(KeyKind::Addr(normalize(addr)))
    }

    /// A client id presented from a client address.
    pub fn client(client_id: &str, addr: IpAddr) -> Self {
        Self(KeyKind::Client(digest(client_id), normalize(addr)))
    }

    /// The key as the store keeps it: a kind byte, then the digest and/or the address's
    /// octets (IPv4 as its 4 bytes, IPv6 as 16). Never the name itself.
    pub fn to_bytes(&self) -> Vec<u8> {
        fn octets(addr: &IpAddr) -> Vec<u8> {
            match addr {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            }
        }
        let mut out = Vec::with_capacity(49);
        match &self.0 {
            KeyKind::User(d) => {
                out.push(b'u');
                out.extend_from_slice(d);
            }
            KeyKind::Addr(a) => {
                out.push(b'a');
                out.extend(octets(a));
            }
            KeyKind::Client(d, a) => {
                out.push(b'c');
                out.extend_from_slice(d);
                out.extend(octets(a));
            }
        }
        out
    }
}

/// One more failure at `at` against a key with `failures` counted since `first_failure` and
/// blocked until `blocked_until`: the new (failures, first_failure, blocked_until). The one
/// rule the in-memory counters and the store's shared ones both follow.
fn count_failure(
    policy: &ThrottlePolicy,
    (failures, first_failure, blocked_until): (u32, SystemTime, SystemTime),
    at: SystemTime,
) -> (u32, SystemTime, SystemTime) {
    let window_over = first_failure + policy.window <= at;
    let ban_over = failures >= policy.max_failures && blocked_until <= at;
    let (failures, first_failure) = if failures == 0 || window_over || ban_over {
        (0, at)
    } else {
        (failures, first_failure)
    };
    let failures = failures.saturating_add(1);
    let blocked_until = blocked_until.max(at + policy.wait_after(failures));
    (failures, first_failure, blocked_until)
}

/// [`count_failure`] on a row of the store; it expires when both its window and its wait are
/// over.
fn count_shared_failure(policy: &ThrottlePolicy, row: ThrottleRow, at: SystemTime) -> ThrottleRow {
    let (failures, first_failure, blocked_until) = count_failure(
        policy,
        (row.failures, row.first_failure, row.blocked_until),
        at,
    );
    ThrottleRow {
        failures,
        first_failure,
        blocked_until,
        expires: blocked_until.max(first_failure + policy.window),
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Failures counted in the window.
    failures: u32,
    /// Attempts registered and not answered yet.
    pending: u32,
    first_failure: SystemTime,
    last_failure: SystemTime,
    blocked_until: SystemTime,
}

impl Entry {
    /// No failure yet. Concurrent requests' `now`s are not ordered, so "never" is the epoch,
    /// not some request's `now`.
    fn new() -> Self {
        Self {
            failures: 0,
            pending: 0,
            first_failure: SystemTime::UNIX_EPOCH,
            last_failure: SystemTime::UNIX_EPOCH,
            blocked_until: SystemTime::UNIX_EPOCH,
        }
    }

    /// Starts a new count when the window or the ban is over.
    fn roll(&mut self, policy: &ThrottlePolicy, now: SystemTime) {
        let window_over = self.first_failure + policy.window <= now;
        let ban_over = self.failures >= policy.max_failures && self.blocked_until <= now;
        if self.failures > 0 && (window_over || ban_over) {
            self.failures = 0;
        }
    }
}

/// How an attempt is judged.
enum Verdict {
    Go,
    /// Only the attempts still being checked stand in its way.
    Wait,
    Refuse(Duration),
}

fn judge(entry: &Entry, policy: &ThrottlePolicy, now: SystemTime) -> Verdict {
    if let Ok(wait) = entry.blocked_until.duration_since(now)
        && !wait.is_zero()
    {
        return Verdict::Refuse(wait);
    }
    let if_all_fail = entry.failures.saturating_add(entry.pending);
    if entry.pending > 0 && !policy.wait_after(if_all_fail).is_zero() {
        Verdict::Wait
    } else {
        Verdict::Go
    }
}

/// Failure counters, shared by every connection of this process (and, through the store, by
/// every replica when the store is PostgreSQL).
#[derive(Debug)]
pub struct Throttle {
    entries: Mutex<HashMap<Key, Entry>>,
    /// Told whenever an attempt is answered, for the attempts waiting on it.
    answered: tokio::sync::Notify,
    max_keys: usize,
    /// The store the replicas share failures through; `None`: this process only.
    shared: Option<Store>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            answered: tokio::sync::Notify::new(),
            max_keys: MAX_KEYS,
            shared: None,
        }
    }
}

/// How long an attempt waits for the attempts ahead of it before it is refused.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Why an attempt is refused before its password or secret is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// When the caller may try again.
    pub retry_after: Duration,
}

impl Throttled {
    /// [`Throttled::retry_after`] in whole seconds, rounded up, at least 1 (`Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        u64::try_from(self.retry_after.as_millis().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// An attempt registered against its keys: [`Attempt::failed`] when the credentials were
/// wrong, [`Attempt::forgive`] when they were right or never checked. Dropped unanswered (the
/// client went away while its password was checked), it counts as a failure.
#[derive(Debug)]
#[must_use = "an attempt counts as a failure unless it is forgiven"]
pub struct Attempt<'a, const N: usize> {
    throttle: &'a Throttle,
    policy: ThrottlePolicy,
    keys: [Key; N],
    at: SystemTime,
    answered: bool,
}

impl<const N: usize> Attempt<'_, N> {
    /// The credentials were wrong: a failure against every key, here and (with PostgreSQL)
    /// in the store, before this returns.
    pub async fn failed(mut self) {
        self.answered = true;
        self.throttle
            .answer(&self.policy, &self.keys, self.at, true);
        self.throttle
            .share_failure(&self.policy, &self.keys, self.at)
            .await;
    }

    /// The credentials were right, or never checked: not a failure.
    pub fn forgive(mut self) {
        self.answered = true;
        self.throttle
            .answer(&self.policy, &self.keys, self.at, false);
    }
}

impl<const N: usize> Drop for Attempt<'_, N> {
    fn drop(&mut self) {
        if !self.answered {
            self.throttle
                .answer(&self.policy, &self.keys, self.at, true);
            // Cannot wait here: the store hears of it a moment later.
            if let (Some(store), Ok(runtime)) = (
                self.throttle.shared.clone(),
                tokio::runtime::Handle::try_current(),
            ) {
                let (policy, keys, at) = (self.policy, self.keys, self.at);
                runtime.spawn(async move {
                    write_shared_failure(&store, &policy, &keys, at).await;
                });
            }
        }
    }
}

/// Counts a failure against `keys` in the store; a store that fails leaves the in-memory
/// counters alone in charge (the request that follows needs the store anyway).
async fn write_shared_failure(
    store: &Store,
    policy: &ThrottlePolicy,
    keys: &[Key],
    at: SystemTime,
) {
    let keys: Vec<Vec<u8>> = keys.iter().map(Key::to_bytes).collect();
    let policy = *policy;
    let change = move |row: ThrottleRow| count_shared_failure(&policy, row, at);
    if let Err(e) = store.throttle_update(&keys, at, &change).await {
        tracing::warn!(error = %e, "could not share a throttled failure with the other replicas");
    }
}

impl Throttle {
    pub fn new() -> Self {
        Self::default()
    }

    /// A throttle whose failures `store` shares with the other replicas, when it is one that
    /// does ([`Store::shares_throttles`]: PostgreSQL); in memory only otherwise.
    pub fn sharing_through(store: &Store) -> Self {
        Self {
            shared: store.shares_throttles().then(|| store.clone()),
            ..Self::default()
        }
    }

    async fn share_failure(&self, policy: &ThrottlePolicy, keys: &[Key], at: SystemTime) {
        if let Some(store) = &self.shared {
            write_shared_failure(store, policy, keys, at).await;
        }
    }

    /// When the replicas' shared failures block one of `keys` past `now`.
    async fn shared_block(&self, keys: &[Key], now: SystemTime) -> Option<Duration> {
        let store = self.shared.as_ref()?;
        let keys: Vec<Vec<u8>> = keys.iter().map(Key::to_bytes).collect();
        match store.throttle_blocked_until(&keys, now).await {
            Ok(until) => until.and_then(|u| u.duration_since(now).ok()),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the replicas' shared throttles");
                None
            }
        }
    }

    /// Registers an attempt against `keys` before its credentials are checked. Refused if a
    /// key must still wait; if it could only be refused because attempts ahead of it might
    /// fail, it waits for them (at most [`MAX_WAIT`]) and is judged again.
    pub async fn attempt<const N: usize>(
        &self,
        policy: &ThrottlePolicy,
        keys: [Key; N],
        now: SystemTime,
    ) -> Result<Attempt<'_, N>, Throttled> {
        let attempt = self.attempt_here(policy, keys, now).await?;
        // Registered here first, then judged against the other replicas' failures too.
        if let Some(wait) = self.shared_block(&keys, now).await
            && !wait.is_zero()
        {
            attempt.forgive();
            return Err(Throttled { retry_after: wait });
        }
        Ok(attempt)
    }

    /// [`Throttle::attempt`] judged against this replica's counters only: the caller owes the
    /// judgement against the other replicas' failures ([`Throttle::shared_keys`],
    /// [`Throttle::shared_wait`]) before it acts on the credentials' being right. A check that
    /// one statement of the caller can carry instead of a round trip of its own.
    pub async fn attempt_here<const N: usize>(
        &self,
        policy: &ThrottlePolicy,
        keys: [Key; N],
        now: SystemTime,
    ) -> Result<Attempt<'_, N>, Throttled> {
        let waited = tokio::time::timeout(MAX_WAIT, async {
            loop {
                // Listening before judging: an answer given in between is not missed.
                let answered = self.answered.notified();
                let mut answered = std::pin::pin!(answered);
                answered.as_mut().enable();
                match self.try_attempt(policy, keys, now) {
                    Some(result) => return result,
                    None => answered.await,
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            tracing::warn!("a throttled attempt waited too long for the attempts ahead of it");
            Err(Throttled {
                retry_after: Duration::from_secs(1),
            })
        })
    }

    /// The keys as the store shares them, when this throttle shares failures with other
    /// replicas (`None`: there is nothing to judge beyond [`Throttle::attempt_here`]).
    pub fn shared_keys(&self, keys: &[Key]) -> Option<Vec<Vec<u8>>> {
        self.shared
            .as_ref()
            .map(|_| keys.iter().map(Key::to_bytes).collect())
    }

    /// How long the replicas' shared failures block the keys whose latest `blocked_until` in
    /// the store is `blocked_until`, at `now` (`None`: not blocked).
    pub fn shared_wait(blocked_until: Option<SystemTime>, now: SystemTime) -> Option<Throttled> {
        let wait = blocked_until?.duration_since(now).ok()?;
        (!wait.is_zero()).then_some(Throttled { retry_after: wait })
    }

    /// The judgement of [`Throttle::attempt`] under the lock; `None`: wait.
    fn try_attempt<const N: usize>(
        &self,
        policy: &ThrottlePolicy,
        keys: [Key; N],
        now: SystemTime,
    ) -> Option<Result<Attempt<'_, N>, Throttled>> {
        let mut entries = self.lock();
        let mut wait = false;
        let mut refuse = Duration::ZERO;
        for key in &keys {
            let Some(entry) = entries.get_mut(key) else {
                continue;
            };
            entry.roll(policy, now);
            match judge(entry, policy, now) {
                Verdict::Go => {}
                Verdict::Wait => wait = true,
                Verdict::Refuse(d) => refuse = refuse.max(d),
            }
        }
        if !refuse.is_zero() {
            return Some(Err(Throttled {
                retry_after: refuse,
            }));
        }
        if wait {
            return None;
        }
        if entries.len() + N > self.max_keys {
            prune(&mut entries, policy, now, self.max_keys, N);
        }
        for key in keys {
            let entry = entries.entry(key).or_insert_with(Entry::new);
            entry.pending = entry.pending.saturating_add(1);
        }
        Some(Ok(Attempt {
            throttle: self,
            policy: *policy,
            keys,
            at: now,
            answered: false,
        }))
    }

    /// An attempt made at `at` is answered: a failure or not.
    fn answer(&self, policy: &ThrottlePolicy, keys: &[Key], at: SystemTime, failed: bool) {
        {
            let mut entries = self.lock();
            for key in keys {
                if failed {
                    let entry = entries.entry(*key).or_insert_with(Entry::new);
                    entry.pending = entry.pending.saturating_sub(1);
                    entry.roll(policy, at);
                    (entry.failures, entry.first_failure, entry.blocked_until) = count_failure(
                        policy,
                        (entry.failures, entry.first_failure, entry.blocked_until),
                        at,
                    );
                    entry.last_failure = entry.last_failure.max(at);
                } else if let Some(entry) = entries.get_mut(key) {
                    entry.pending = entry.pending.saturating_sub(1);
                    if entry.pending == 0 && entry.failures == 0 {
                        entries.remove(key);
                    }
                }
            }
        }
        self.answered.notify_waiters();
    }

    /// Forgets the failures counted against `key` (a user name whose password was right),
    /// here and in the store.
    pub async fn forget(&self, key: &Key) {
        self.forget_here(key);
        if let Some(store) = &self.shared
            && let Err(e) = store.throttle_forget(&key.to_bytes()).await
        {
            tracing::warn!(error = %e, "could not forget a key in the shared throttles");
        }
    }

    fn forget_here(&self, key: &Key) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(key) {
            if entry.pending == 0 {
                entries.remove(key);
            } else {
                *entry = Entry {
                    pending: entry.pending,
                    ..Entry::new()
                };
            }
        }
        drop(entries);
        self.answered.notify_waiters();
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
    match addr.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Makes room for `room` more keys: drops the keys whose window and wait are over, then, if
/// live keys still fill most of the map (a flood of names or addresses), the ones whose wait
/// ends first (plain counters before bans, keys with attempts under way last), down to 7/8 of
/// the bound so that this runs at most once per `max_keys / 8` new keys.
fn prune(
    entries: &mut HashMap<Key, Entry>,
    policy: &ThrottlePolicy,
    now: SystemTime,
    max_keys: usize,
    room: usize,
) {
    entries.retain(|_, e| {
        e.pending > 0 || e.blocked_until > now || e.first_failure + policy.window > now
    });
    let target = (max_keys - max_keys / 8).min(max_keys.saturating_sub(room));
    if entries.len() <= target {
        return;
    }
    let excess = entries.len() - target;
    let mut by_end: Vec<(bool, SystemTime, SystemTime, Key)> = entries
        .iter()
        .map(|(k, e)| (e.pending > 0, e.blocked_until, e.last_failure, *k))
        .collect();
    by_end.select_nth_unstable_by_key(excess - 1, |(pending, blocked, last, _)| {
        (*pending, *blocked, *last)
    });
    for (_, _, _, key) in &by_end[..excess] {
        entries.remove(key);
    }
    tracing::warn!(
        dropped = excess,
        kept = entries.len(),
        "throttle full: dropped the counters that end first"
    );
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
    /// Its throttle is in memory; see [`LoginGuard::sharing_through`].
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

    /// [`LoginGuard::new`] whose throttle shares failures through `store` (PostgreSQL).
    pub fn sharing_through(config: &Config, store: &Store) -> Self {
        Self {
            throttle: Throttle::sharing_through(store),
            ..Self::new(config)
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
    use futures_util::poll;
    use http::HeaderValue;

    const POLICY: ThrottlePolicy = ThrottlePolicy {
        max_failures: 5,
        window: Duration::from_secs(300),
        ban: Duration::from_secs(900),
        back_off: true,
    };

    const FLAT: ThrottlePolicy = ThrottlePolicy {
        back_off: false,
        ..POLICY
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn keys(user: &str, addr: &str) -> [Key; 2] {
        [Key::user(user), Key::addr(ip(addr))]
    }

    /// A failed login.
    async fn fail(t: &Throttle, policy: &ThrottlePolicy, user: &str, addr: &str, now: SystemTime) {
        let attempt = t.attempt(policy, keys(user, addr), now).await;
        attempt.unwrap().failed().await;
    }

    /// Whether a login may be tried now (an attempt that is then forgiven).
    async fn check(t: &Throttle, user: &str, addr: &str, now: SystemTime) -> Result<(), Throttled> {
        t.attempt(&POLICY, keys(user, addr), now).await?.forgive();
        Ok(())
    }

    impl Throttle {
        /// Bytes the stored keys hold, on the heap included (keys own nothing on the heap).
        fn key_bytes(&self) -> usize {
            self.lock().len() * std::mem::size_of::<Key>()
        }

        fn failures(&self, key: &Key) -> u32 {
            self.lock().get(key).map_or(0, |e| e.failures)
        }
    }

    #[test]
    fn back_off_doubles_then_bans() {
        let waits: Vec<u64> = (1..=6).map(|n| POLICY.wait_after(n).as_secs()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 900, 900]);
        let waits: Vec<u64> = (1..=6).map(|n| FLAT.wait_after(n).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 0, 900, 900]);
    }

    #[tokio::test]
    async fn failures_block_the_user_name_from_any_address_and_the_address_for_any_name() {
        let t = Throttle::new();
        let now = SystemTime::now();
        fail(&t, &POLICY, "alice", "10.0.0.1", now).await;
        assert!(
            check(&t, "alice", "10.0.0.1", now).await.is_ok(),
            "one failure is free"
        );
        fail(&t, &POLICY, "alice", "10.0.0.1", now).await;
        assert!(check(&t, "alice", "10.9.9.9", now).await.is_err());
        assert!(check(&t, "bob", "10.0.0.1", now).await.is_err());
        assert!(check(&t, "bob", "10.9.9.9", now).await.is_ok());
        let later = now + Duration::from_secs(1);
        assert!(check(&t, "alice", "10.0.0.1", later).await.is_ok());
    }

    #[tokio::test]
    async fn max_failures_ban_until_the_ban_ends_and_then_counting_restarts() {
        let t = Throttle::new();
        let mut now = SystemTime::now();
        for _ in 0..5 {
            now += Duration::from_secs(10);
            fail(&t, &POLICY, "alice", "10.0.0.1", now).await;
        }
        let banned = check(&t, "alice", "10.0.0.2", now).await.unwrap_err();
        assert_eq!(banned.retry_after, Duration::from_secs(900));
        now += Duration::from_secs(899);
        assert!(check(&t, "alice", "10.0.0.2", now).await.is_err());
        now += Duration::from_secs(1);
        assert!(check(&t, "alice", "10.0.0.2", now).await.is_ok());
        fail(&t, &POLICY, "alice", "10.0.0.1", now).await;
        assert!(
            check(&t, "alice", "10.0.0.1", now).await.is_ok(),
            "a fresh count"
        );
    }

    #[tokio::test]
    async fn success_clears_the_name_but_not_the_address() {
        let t = Throttle::new();
        let now = SystemTime::now();
        fail(&t, &POLICY, "alice", "10.0.0.1", now).await;
        fail(&t, &POLICY, "alice", "10.0.0.1", now).await;
        t.forget(&Key::user("alice")).await;
        assert!(check(&t, "alice", "10.0.0.2", now).await.is_ok());
        assert!(check(&t, "alice", "10.0.0.1", now).await.is_err());
    }

    #[tokio::test]
    async fn attempts_under_way_count_as_failures_when_the_next_one_is_judged() {
        let t = Throttle::new();
        let now = SystemTime::now();
        let key = [Key::client("app", ip("10.0.0.1"))];
        let mut under_way = Vec::new();
        for _ in 0..5 {
            under_way.push(t.attempt(&FLAT, key, now).await.unwrap());
        }
        let mut sixth = std::pin::pin!(t.attempt(&FLAT, key, now));
        assert!(poll!(&mut sixth).is_pending(), "waits for the five");
        for attempt in under_way {
            attempt.failed().await;
        }
        let refused = sixth.await.unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(900), "banned");
        // With back-off, two failures already make the next attempt wait a second.
        let t = Throttle::new();
        let first = t.attempt(&POLICY, keys("alice", "10.0.0.1"), now).await;
        let second = t.attempt(&POLICY, keys("bob", "10.0.0.1"), now).await;
        let mut third = std::pin::pin!(t.attempt(&POLICY, keys("carol", "10.0.0.1"), now));
        assert!(poll!(&mut third).is_pending());
        first.unwrap().failed().await;
        assert!(poll!(&mut third).is_pending(), "one may still fail");
        second.unwrap().failed().await;
        assert_eq!(third.await.unwrap_err().retry_after, Duration::from_secs(1));
    }

    #[tokio::test]
    async fn right_credentials_in_parallel_take_turns_instead_of_being_refused() {
        let t = Throttle::new();
        let now = SystemTime::now();
        let first = t.attempt(&POLICY, keys("alice", "10.0.0.1"), now).await;
        let second = t.attempt(&POLICY, keys("bob", "10.0.0.1"), now).await;
        let mut third = std::pin::pin!(t.attempt(&POLICY, keys("carol", "10.0.0.1"), now));
        assert!(poll!(&mut third).is_pending());
        first.unwrap().forgive();
        let third = third.await.unwrap();
        second.unwrap().forgive();
        third.forgive();
        assert_eq!(t.failures(&Key::addr(ip("10.0.0.1"))), 0);
        assert!(t.lock().is_empty(), "nothing left to remember");
    }

    #[tokio::test]
    async fn a_forgiven_attempt_leaves_the_earlier_failures_as_they_were() {
        let t = Throttle::new();
        let mut now = SystemTime::now();
        fail(&t, &POLICY, "alice", "10.0.0.1", now).await;
        now += Duration::from_secs(5);
        check(&t, "bob", "10.0.0.1", now).await.unwrap();
        assert_eq!(t.failures(&Key::addr(ip("10.0.0.1"))), 1);
        assert_eq!(t.failures(&Key::user("bob")), 0);
        assert!(
            check(&t, "carol", "10.0.0.1", now).await.is_ok(),
            "no back-off"
        );
    }

    #[tokio::test]
    async fn an_attempt_dropped_unanswered_counts_as_a_failure() {
        let t = Throttle::new();
        let now = SystemTime::now();
        let key = [Key::client("app", ip("10.0.0.1"))];
        drop(t.attempt(&FLAT, key, now).await.unwrap());
        assert_eq!(t.failures(&key[0]), 1);
    }

    #[tokio::test]
    async fn a_huge_user_name_is_stored_as_a_small_key() {
        let t = Throttle::new();
        let now = SystemTime::now();
        let huge = "a".repeat(64 * 1024);
        fail(&t, &POLICY, &huge, "10.0.0.1", now).await;
        fail(&t, &POLICY, &huge, "10.0.0.1", now).await;
        assert!(t.key_bytes() <= 2 * 64, "{} bytes of keys", t.key_bytes());
        // Still one counter per name: the same huge name is blocked, a different one is not.
        assert!(check(&t, &huge, "10.0.0.2", now).await.is_err());
        let other = format!("{}b", &huge[1..]);
        assert!(check(&t, &other, "10.0.0.2", now).await.is_ok());
        assert!(std::mem::size_of::<Key>() <= 64);
    }

    #[tokio::test]
    async fn the_map_never_holds_more_keys_than_its_bound_even_when_all_are_banned() {
        let t = Throttle {
            max_keys: 100,
            ..Throttle::default()
        };
        let ban_at_once = ThrottlePolicy {
            max_failures: 1,
            ..POLICY
        };
        let now = SystemTime::now();
        for i in 0..1_000u32 {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            fail(&t, &ban_at_once, &format!("user{i}"), &addr, now).await;
            assert!(t.lock().len() <= 100, "{} keys after {i}", t.lock().len());
        }
        // The newest ban is among those kept.
        assert!(check(&t, "user999", "192.0.2.1", now).await.is_err());
    }

    #[tokio::test]
    async fn ipv6_addresses_in_one_64_share_a_counter() {
        let t = Throttle::new();
        let now = SystemTime::now();
        fail(&t, &POLICY, "a", "2001:db8::1", now).await;
        fail(&t, &POLICY, "b", "2001:db8::2", now).await;
        assert!(check(&t, "c", "2001:db8::ffff", now).await.is_err());
        assert!(check(&t, "c", "2001:db9::1", now).await.is_ok());
        assert_eq!(Key::addr(ip("::ffff:10.0.0.1")), Key::addr(ip("10.0.0.1")));
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
