//! In-memory state of the authorization server on this replica (RFC 6749 §6, SPEC §3.1):
//! the last token response per rotated refresh token, kept for `oauth.refresh_grace` so a
//! repeated refresh gets the same answer, which origins some app allows for CORS, and failed
//! client authentications per client id and client address (brute-force throttling, with the
//! login throttle's bounded, record-then-judge counters).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moka::sync::Cache;
use tokio::sync::Mutex;

use crate::auth::throttle::{Attempt, Key, Throttle, ThrottlePolicy, Throttled};
use crate::store::SecretHash;

/// Most refresh responses remembered at once (each is a few hundred bytes).
const MAX_REFRESH_ENTRIES: u64 = 100_000;
/// Most origins remembered for CORS preflights.
const MAX_ORIGIN_ENTRIES: u64 = 10_000;
/// How long a preflight's "some app allows this origin" answer is reused.
pub const ORIGIN_TTL: Duration = Duration::from_secs(10);

/// Failed client authentications allowed per client id and client address within
/// [`FAILURE_WINDOW`]; the next attempts are refused without checking the secret for
/// [`FAILURE_WINDOW`] after the last of them.
pub const MAX_CLIENT_FAILURES: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How client authentications are throttled: no back-off (machines retry at once), a ban.
pub const CLIENT_POLICY: ThrottlePolicy = ThrottlePolicy {
    max_failures: MAX_CLIENT_FAILURES,
    window: FAILURE_WINDOW,
    ban: FAILURE_WINDOW,
    back_off: false,
};

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
    /// Failures per (client id, client address), against the gateway's clock.
    clients: Throttle,
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
            clients: Throttle::new(),
        }
    }

    /// These caches with the client-authentication throttle shared through `store` (with
    /// PostgreSQL, SPEC §3.2: failures on one replica ban on the others).
    pub fn sharing_throttle_through(mut self, store: &crate::store::Store) -> Self {
        self.clients = Throttle::sharing_through(store);
        self
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

    /// Registers a client authentication of `client_id` from `addr` before its secret is
    /// checked (see [`Throttle::attempt`]).
    pub async fn client_attempt(
        &self,
        client_id: &str,
        addr: IpAddr,
        now: SystemTime,
    ) -> Result<Attempt<'_, 1>, Throttled> {
        let key = [Key::client(client_id, addr)];
        self.clients.attempt(&CLIENT_POLICY, key, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_huge_client_id_is_stored_as_a_small_key() {
        let caches = OAuthCaches::new(Duration::from_secs(10));
        let now = SystemTime::now();
        let huge = "c".repeat(64 * 1024);
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..MAX_CLIENT_FAILURES {
            caches
                .client_attempt(&huge, addr, now)
                .await
                .unwrap()
                .failed()
                .await;
        }
        assert!(caches.client_attempt(&huge, addr, now).await.is_err());
        let other = format!("{}d", &huge[1..]);
        assert!(caches.client_attempt(&other, addr, now).await.is_ok());
        // The keys hold no copy of the id: a fixed size, nothing on the heap.
        assert!(std::mem::size_of::<Key>() <= 64);
    }
}
