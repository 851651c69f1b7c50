//! In-memory state of the authorization server on this replica (RFC 6749 §6, SPEC §3.1):
//! the last token response per rotated refresh token, kept for `oauth.refresh_grace` so a
//! repeated refresh gets the same answer, which origins some app allows for CORS, and failed
//! client authentications per client id and address (brute-force throttling).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moka::sync::Cache;
use tokio::sync::Mutex;

use crate::store::SecretHash;

/// Most refresh responses remembered at once (each is a few hundred bytes).
const MAX_REFRESH_ENTRIES: u64 = 100_000;
/// Most origins remembered for CORS preflights.
const MAX_ORIGIN_ENTRIES: u64 = 10_000;
/// How long a preflight's "some app allows this origin" answer is reused.
pub const ORIGIN_TTL: Duration = Duration::from_secs(10);

/// Failed client authentications allowed per client id and address within
/// [`FAILURE_WINDOW`]; more are refused without checking the secret until the window ends.
pub const MAX_CLIENT_FAILURES: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Most (client id, address) pairs tracked at once.
const MAX_FAILURE_ENTRIES: u64 = 100_000;

/// The answer given to the refresh that rotated a token, replayed within the grace period.
#[derive(Clone, Debug)]
pub struct RememberedRefresh {
    /// The JSON body sent.
    pub body: String,
    /// The `scope` parameter of that request (a repeat must ask the same).
    pub requested_scope: Option<String>,
    pub client_id: String,
    pub rotated_at: SystemTime,
}

/// One slot per refresh token: refreshes of the same token on this replica take turns on
/// its lock, so the first rotates and the ones behind it find its answer.
pub type RefreshSlot = Arc<Mutex<Option<RememberedRefresh>>>;

/// The authorization server's caches (a field of `Gateway`).
pub struct OAuthCaches {
    refresh: Cache<SecretHash, RefreshSlot>,
    origins: Cache<String, bool>,
    /// (client id, address) → (failures, start of the window), against the gateway's clock.
    failures: Cache<(String, IpAddr), (u32, SystemTime)>,
}

impl OAuthCaches {
    /// Caches that keep refresh answers a little longer than `refresh_grace` (the grace
    /// itself is decided against the store's rotation time and the gateway's clock).
    pub fn new(refresh_grace: Duration) -> Self {
        Self {
            refresh: Cache::builder()
                .max_capacity(MAX_REFRESH_ENTRIES)
                .time_to_live(refresh_grace + Duration::from_secs(5))
                .build(),
            origins: Cache::builder()
                .max_capacity(MAX_ORIGIN_ENTRIES)
                .time_to_live(ORIGIN_TTL)
                .build(),
            failures: Cache::builder()
                .max_capacity(MAX_FAILURE_ENTRIES)
                .time_to_live(FAILURE_WINDOW)
                .build(),
        }
    }

    /// The slot of the refresh token with this hash (made empty if there is none).
    pub fn refresh_slot(&self, hash: &SecretHash) -> RefreshSlot {
        self.refresh.get_with(*hash, || Arc::new(Mutex::new(None)))
    }

    pub fn origin(&self, origin: &str) -> Option<bool> {
        self.origins.get(origin)
    }

    pub fn remember_origin(&self, origin: &str, allowed: bool) {
        self.origins.insert(origin.to_owned(), allowed);
    }

    /// Seconds until `client_id` may try again from `peer`, if it is throttled now.
    pub fn client_throttled(&self, client_id: &str, peer: IpAddr, now: SystemTime) -> Option<u64> {
        let (count, since) = self.failures.get(&(client_id.to_owned(), peer))?;
        let ends = since + FAILURE_WINDOW;
        (count >= MAX_CLIENT_FAILURES && now < ends).then(|| {
            ends.duration_since(now)
                .unwrap_or_default()
                .as_secs()
                .max(1)
        })
    }

    /// Counts a failed client authentication.
    pub fn client_failed(&self, client_id: &str, peer: IpAddr, now: SystemTime) {
        let key = (client_id.to_owned(), peer);
        let next = match self.failures.get(&key) {
            Some((count, since)) if now < since + FAILURE_WINDOW => {
                (count.saturating_add(1), since)
            }
            _ => (1, now),
        };
        self.failures.insert(key, next);
    }
}
