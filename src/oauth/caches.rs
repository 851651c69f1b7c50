//! In-memory state of the authorization server on this replica (RFC 6749 §6, SPEC §3.1):
//! the last token response per rotated refresh token, kept for `oauth.refresh_grace` so a
//! repeated refresh gets the same answer, which origins some app allows for CORS, failed
//! client authentications per client id and client address (brute-force throttling, with the
//! login throttle's bounded, record-then-judge counters), and the apps read for client
//! authentication (see [`AppCache`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use moka::sync::Cache;
use tokio::sync::Mutex;

use crate::auth::throttle::{Attempt, Key, Throttle, ThrottlePolicy, Throttled};
use crate::store::{App, SecretHash, Store, StoreError, StoreEvent};

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

/// Most apps remembered for client authentication.
const MAX_APP_ENTRIES: u64 = 10_000;
/// How long an unused app stays in memory (each use also checks its age against
/// `auth.revocation_propagation`, see [`AppCache::get`]).
const APP_IDLE: Duration = Duration::from_secs(60);

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
    /// The apps client authentication reads; `None` until [`OAuthCaches::following`] (every
    /// authentication then reads the store).
    apps: Option<Arc<AppCache>>,
}

/// The apps read by client authentication, by client id, so that a token request costs no
/// store read for its client (the app record is needed on every grant, and changes rarely).
///
/// Never staler than the store's own answer would be by more than this: a change made through
/// this replica's store handle (an update, deactivation, deletion or secret rotation) removes
/// the app before the call that made it returns, a change on another replica sharing the
/// PostgreSQL store removes it when its notification arrives (milliseconds), and in any case
/// an entry is used only while younger than `auth.revocation_propagation` (default 1 s), the
/// bound SPEC sets for revocations to reach other replicas, which also covers notifications
/// lost while the replica is not listening, or another process on the same SQLite file.
pub struct AppCache {
    apps: Cache<String, CachedApp>,
    /// Bumped by every change event before its entry is removed: a read of the store that
    /// began before a change never leaves its (stale) answer behind (see [`AppCache::get`]).
    generation: AtomicU64,
}

#[derive(Clone)]
struct CachedApp {
    app: Arc<App>,
    read_at: SystemTime,
}

impl AppCache {
    fn new() -> Self {
        Self {
            apps: Cache::builder()
                .max_capacity(MAX_APP_ENTRIES)
                .time_to_idle(APP_IDLE)
                .build(),
            generation: AtomicU64::new(0),
        }
    }

    /// The app with `client_id`, from memory if it was read at most `max_age` before `now`,
    /// otherwise from `store` (and then remembered). Unknown client ids are not remembered.
    pub async fn get(
        &self,
        store: &Store,
        client_id: &str,
        now: SystemTime,
        max_age: Duration,
    ) -> Result<Option<Arc<App>>, StoreError> {
        if let Some(cached) = self.apps.get(client_id) {
            // A `now` before the read (a clock stepped back) counts as fresh.
            let age = now.duration_since(cached.read_at).unwrap_or_default();
            if age < max_age {
                return Ok(Some(cached.app));
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some(app) = store.get_app_by_client_id(client_id).await? else {
            return Ok(None);
        };
        let app = Arc::new(app);
        let entry = CachedApp {
            app: app.clone(),
            read_at: now,
        };
        self.apps.insert(client_id.to_owned(), entry);
        // Inserted, then checked: a change whose event came after this read began either
        // removes the entry after this insert, or is seen here and removed by it.
        if self.generation.load(Ordering::Acquire) != generation {
            self.apps.invalidate(client_id);
        }
        Ok(Some(app))
    }

    /// Applies one store event: a changed app is read afresh; after missed notifications
    /// every app is.
    fn on_event(&self, event: &StoreEvent) {
        match event {
            StoreEvent::AppRevoked { client_id } | StoreEvent::AppUpdated { client_id } => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.apps.invalidate(client_id);
            }
            StoreEvent::NotificationsLost | StoreEvent::NotificationsBack => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.apps.invalidate_all();
            }
            StoreEvent::TokenRevoked { .. }
            | StoreEvent::GrantRevoked { .. }
            | StoreEvent::PatRevoked { .. } => {}
        }
    }
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
            apps: None,
        }
    }

    /// These caches with client authentication's apps remembered, following `store`'s
    /// change events (see [`AppCache`]).
    pub fn following(mut self, store: &Store) -> Self {
        let apps = Arc::new(AppCache::new());
        let weak: Weak<AppCache> = Arc::downgrade(&apps);
        store.on_event_sync(Arc::new(move |event| {
            if let Some(apps) = weak.upgrade() {
                apps.on_event(event);
            }
        }));
        self.apps = Some(apps);
        self
    }

    /// The app with `client_id` for client authentication: remembered (see [`AppCache`]) or
    /// read from `store`.
    pub async fn app(
        &self,
        store: &Store,
        client_id: &str,
        now: SystemTime,
        max_age: Duration,
    ) -> Result<Option<Arc<App>>, StoreError> {
        match &self.apps {
            Some(apps) => apps.get(store, client_id, now, max_age).await,
            None => Ok(store.get_app_by_client_id(client_id).await?.map(Arc::new)),
        }
    }

    /// These caches with the client-authentication throttle shared through `store` (with
    /// PostgreSQL, SPEC §3.2: failures on one replica ban on the others).
    pub fn sharing_throttle_through(mut self, store: &Store) -> Self {
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

    /// [`OAuthCaches::client_attempt`] judged against this replica's failures only, with the
    /// keys of the judgement against the other replicas' still owed (`None`: none is, the
    /// throttle is this process's alone). See [`Throttle::attempt_here`].
    pub async fn client_attempt_here(
        &self,
        client_id: &str,
        addr: IpAddr,
        now: SystemTime,
    ) -> Result<(Attempt<'_, 1>, Option<Vec<Vec<u8>>>), Throttled> {
        let key = [Key::client(client_id, addr)];
        let attempt = self.clients.attempt_here(&CLIENT_POLICY, key, now).await?;
        Ok((attempt, self.clients.shared_keys(&key)))
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
