//! The store (SPEC §6): everything the authorization server remembers, behind one cloneable
//! [`Store`] handle with two engines chosen by `store.url` — SQLite (`sqlite://…`, the
//! embedded default) and PostgreSQL (`postgres://…`, for replicas). Secrets are kept only as
//! SHA-256 hashes; multi-step changes are single transactions; revocations are announced as
//! [`StoreEvent`]s. Every method takes `now` instead of reading a clock.
//!
//! Engine-specific code lives in `store/sqlite.rs` and `store/postgres.rs`; the portable SQL
//! in `store/ops_*.rs` is instantiated by both, and `tests/it/store/` is the one contract
//! suite both pass.

mod codec;
mod error;
mod events;
mod group_commit;
mod migrate;
mod model;
mod ops_apps;
mod ops_federation;
mod ops_tokens;
mod ops_users;
mod postgres;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

pub use codec::{SecretHash, new_app_id, new_id, secret_hash, truncate_to_micros};
pub use error::{StoreError, StoreErrorKind};
pub use events::EventHook;
pub use migrate::SCHEMA_VERSION;
pub use model::*;

use crate::clock::Clock;
use events::Events;
use postgres::PostgresEngine;
use sqlite::SqliteEngine;

/// Where `store.url` points, parsed. `sqlite://data/x.db` (two slashes) is relative to the
/// config file's folder; `sqlite:///var/lib/x.db` is absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    /// The URL as given (it may hold a password: never log it).
    Postgres(String),
}

impl StoreLocation {
    /// Parses `url`; the error says what is accepted and never repeats the URL.
    pub fn parse(url: &str, base_dir: &Path) -> Result<Self, String> {
        if let Some(rest) = url.strip_prefix("sqlite://") {
            if rest.is_empty() || rest == "/" {
                return Err("store.url: sqlite:// needs a file path".to_owned());
            }
            let path = Path::new(rest);
            return Ok(Self::Sqlite(if path.is_absolute() {
                path.to_path_buf()
            } else {
                base_dir.join(path)
            }));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        Err(
            "store.url: must start with sqlite:// (sqlite://relative/path.db or \
             sqlite:///absolute/path.db) or postgres://"
                .to_owned(),
        )
    }
}

enum Engine {
    Sqlite(SqliteEngine),
    Postgres(PostgresEngine),
}

struct Inner {
    engine: Engine,
    events: Events,
    /// Code redemptions and refresh rotations, committed in groups.
    grants: group_commit::GroupCommit,
}

/// The store handle. Cheap to clone; all clones share one pool and one event bus.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner.engine {
            Engine::Sqlite(_) => "Store(sqlite)",
            Engine::Postgres(_) => "Store(postgres)",
        })
    }
}

/// Runs `$body` with `$e` bound to whichever engine this store uses.
macro_rules! on_engine {
    ($self:ident, $e:ident => $body:expr) => {
        match &$self.inner.engine {
            Engine::Sqlite($e) => $body,
            Engine::Postgres($e) => $body,
        }
    };
}

impl Store {
    /// Opens the store at `url` (see [`StoreLocation`]), creating and migrating it as needed.
    /// Fails with `Unavailable` when the database cannot be reached and `Incompatible` when
    /// its schema is newer than this binary (the store is then left untouched).
    pub async fn open(
        url: &str,
        base_dir: &Path,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        Self::open_with_ca(url, base_dir, max_connections, None).await
    }

    /// [`Store::open`] with `store.tls_ca` (SPEC §7.5): for PostgreSQL, the PEM file of the
    /// CA(s) the server's certificate must chain to (`None`: the system's roots). A TLS
    /// failure is `Unavailable` with a message that names TLS.
    pub async fn open_with_ca(
        url: &str,
        base_dir: &Path,
        max_connections: u32,
        tls_ca: Option<&Path>,
    ) -> Result<Self, StoreError> {
        let location = StoreLocation::parse(url, base_dir).map_err(StoreError::internal)?;
        let events = Events::new();
        let engine = match location {
            StoreLocation::Sqlite(path) => {
                Engine::Sqlite(SqliteEngine::open(&path, max_connections, events.clone()).await?)
            }
            StoreLocation::Postgres(url) => Engine::Postgres(
                PostgresEngine::open(&url, tls_ca, max_connections, events.clone()).await?,
            ),
        };
        let writers = match engine {
            Engine::Sqlite(_) => group_commit::SQLITE_WRITERS,
            Engine::Postgres(_) => group_commit::POSTGRES_WRITERS,
        };
        Ok(Self {
            inner: Arc::new_cyclic(|weak| Inner {
                engine,
                events,
                grants: group_commit::GroupCommit::start(weak.clone(), writers),
            }),
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn engine_name(&self) -> &'static str {
        match self.inner.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }

    /// Closes the pools (and the PostgreSQL listener). Later calls fail with `Unavailable`.
    pub async fn close(&self) {
        on_engine!(self, e => e.close().await)
    }

    /// Runs `hook` synchronously for every revocation event this handle publishes (its own
    /// changes, before the changing call returns; other replicas' as they arrive).
    pub fn on_event_sync(&self, hook: EventHook) {
        self.inner.events.add_hook(hook);
    }

    /// Revocation events from now on: this handle's own changes (right after commit) and,
    /// with PostgreSQL, other replicas'. On `RecvError::Lagged`, flush everything.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.events.subscribe()
    }

    // --- shared throttles (SPEC §3.2) ---------------------------------------------------

    /// Whether the throttles are shared through this store: with PostgreSQL (replicas), not
    /// with SQLite (one process, whose throttles stay in memory).
    pub fn shares_throttles(&self) -> bool {
        matches!(self.inner.engine, Engine::Postgres(_))
    }

    /// The latest time until which one of `keys` (opaque, fixed-size throttle keys) is
    /// blocked, if it is after `now`. Always `None` without [`Store::shares_throttles`].
    pub async fn throttle_blocked_until(
        &self,
        keys: &[Vec<u8>],
        now: SystemTime,
    ) -> Result<Option<SystemTime>, StoreError> {
        match &self.inner.engine {
            Engine::Sqlite(_) => Ok(None),
            Engine::Postgres(e) => e.throttle_blocked_until(keys, now).await,
        }
    }

    /// Changes the rows of `keys` in one transaction, each under a row lock: `change` gets a
    /// row as stored ([`ThrottleRow::default`] when there is none or it has expired) and
    /// returns what to store. Expired rows are deleted now and then. Does nothing without
    /// [`Store::shares_throttles`].
    pub async fn throttle_update(
        &self,
        keys: &[Vec<u8>],
        now: SystemTime,
        change: &(dyn Fn(ThrottleRow) -> ThrottleRow + Send + Sync),
    ) -> Result<(), StoreError> {
        match &self.inner.engine {
            Engine::Sqlite(_) => Ok(()),
            Engine::Postgres(e) => e.throttle_update(keys, now, change).await,
        }
    }

    /// Forgets `key`'s failures. Does nothing without [`Store::shares_throttles`].
    pub async fn throttle_forget(&self, key: &[u8]) -> Result<(), StoreError> {
        match &self.inner.engine {
            Engine::Sqlite(_) => Ok(()),
            Engine::Postgres(e) => e.throttle_forget(key).await,
        }
    }

    /// For `/readyz`: one round trip to the database.
    pub async fn health(&self) -> Result<(), StoreError> {
        on_engine!(self, e => e.health().await)
    }

    // --- apps (SPEC §3.3) -------------------------------------------------------------

    /// Inserts a new app; `Conflict` if its id or client id is taken.
    pub async fn create_app(&self, app: &App) -> Result<(), StoreError> {
        on_engine!(self, e => e.create_app(app).await)
    }

    pub async fn get_app(&self, id: &str) -> Result<Option<App>, StoreError> {
        on_engine!(self, e => e.get_app(id).await)
    }

    pub async fn get_app_by_client_id(&self, client_id: &str) -> Result<Option<App>, StoreError> {
        on_engine!(self, e => e.get_app_by_client_id(client_id).await)
    }

    /// Up to `limit` apps in (create_time, id) order, starting after `after`.
    pub async fn list_apps(
        &self,
        after: Option<&AppCursor>,
        limit: u32,
    ) -> Result<Vec<App>, StoreError> {
        on_engine!(self, e => e.list_apps(after, limit).await)
    }

    /// Replaces the writable fields of app `app.id` (everything but id, client_id,
    /// client_type, the secret hashes, created_by, create_time, managed_by: secrets change
    /// only through [`Store::rotate_app_secret`], so a stale copy cannot undo a rotation);
    /// `update_time` is taken from `app`. Leaving the
    /// app inactive revokes its grants and refresh tokens in the same transaction and
    /// announces [`StoreEvent::AppRevoked`]; an active app announces
    /// [`StoreEvent::AppUpdated`] (its scopes may have narrowed). `NotFound` if there is no
    /// such app.
    pub async fn update_app(&self, app: &App) -> Result<(), StoreError> {
        on_engine!(self, e => e.update_app(app).await)
    }

    /// Creates or updates (by client id) an app declared in the config; returns it as stored
    /// (an existing app keeps its id and create time), announcing it as
    /// [`Store::update_app`] does. `Conflict` if the client id belongs to an API-managed app.
    pub async fn upsert_config_app(&self, app: &App) -> Result<App, StoreError> {
        on_engine!(self, e => e.upsert_config_app(app).await)
    }

    /// Replaces the client secret hash. With `previous_valid_until`, the old secret keeps
    /// working until then; without, it stops at once. Announces [`StoreEvent::AppUpdated`].
    pub async fn rotate_app_secret(
        &self,
        id: &str,
        new_hash: SecretHash,
        previous_valid_until: Option<SystemTime>,
        updated_by: &str,
        now: SystemTime,
    ) -> Result<App, StoreError> {
        on_engine!(self, e => e.rotate_app_secret(id, new_hash, previous_valid_until, updated_by, now).await)
    }

    /// Deletes an app and, in the same transaction, its grants, refresh tokens, codes and
    /// pending consents; announces [`StoreEvent::AppRevoked`]. `NotFound` if absent.
    pub async fn delete_app(&self, id: &str) -> Result<(), StoreError> {
        on_engine!(self, e => e.delete_app(id).await)
    }

    // --- personal access tokens ---------------------------------------------------------

    pub async fn create_pat(&self, pat: &PersonalToken) -> Result<(), StoreError> {
        on_engine!(self, e => e.create_pat(pat).await)
    }

    /// The PAT with this token hash, expired or not (check `expire_time`).
    pub async fn get_pat_by_hash(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<PersonalToken>, StoreError> {
        on_engine!(self, e => e.get_pat_by_hash(hash).await)
    }

    /// A user's PATs, oldest first.
    pub async fn list_pats(&self, user: &str) -> Result<Vec<PersonalToken>, StoreError> {
        on_engine!(self, e => e.list_pats(user).await)
    }

    /// Records a use; writes at most once a minute per token, so it is cheap per request.
    pub async fn touch_pat(&self, id: &str, now: SystemTime) -> Result<(), StoreError> {
        on_engine!(self, e => e.touch_pat(id, now).await)
    }

    /// Deletes `user`'s PAT `id` and announces [`StoreEvent::PatRevoked`]; `NotFound` if it
    /// does not exist or belongs to someone else.
    pub async fn delete_pat(&self, user: &str, id: &str) -> Result<(), StoreError> {
        on_engine!(self, e => e.delete_pat(user, id).await)
    }

    // --- login sessions -----------------------------------------------------------------

    pub async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        on_engine!(self, e => e.create_session(session).await)
    }

    /// The session if it exists and has not expired at `now`.
    pub async fn get_session(
        &self,
        id_hash: &SecretHash,
        now: SystemTime,
    ) -> Result<Option<Session>, StoreError> {
        on_engine!(self, e => e.get_session(id_hash, now).await)
    }

    /// Ends a session; true if there was one.
    pub async fn delete_session(&self, id_hash: &SecretHash) -> Result<bool, StoreError> {
        on_engine!(self, e => e.delete_session(id_hash).await)
    }

    // --- pending consents -----------------------------------------------------------------

    pub async fn create_consent(&self, consent: &PendingConsent) -> Result<(), StoreError> {
        on_engine!(self, e => e.create_consent(consent).await)
    }

    /// Reads a pending consent (to render the page) without consuming it.
    pub async fn get_consent(
        &self,
        id: &str,
        now: SystemTime,
    ) -> Result<Option<PendingConsent>, StoreError> {
        on_engine!(self, e => e.get_consent(id, now).await)
    }

    /// Consumes the consent if `csrf_hash` and `user` match and it has not expired: of
    /// concurrent calls exactly one gets `Some`. A mismatch consumes nothing.
    pub async fn take_consent(
        &self,
        id: &str,
        csrf_hash: &SecretHash,
        user: &str,
        now: SystemTime,
    ) -> Result<Option<PendingConsent>, StoreError> {
        on_engine!(self, e => e.take_consent(id, csrf_hash, user, now).await)
    }

    // --- codes, grants, refresh tokens (SPEC §3.1) ----------------------------------------

    pub async fn create_code(&self, code: &NewAuthCode) -> Result<(), StoreError> {
        on_engine!(self, e => e.create_code(code).await)
    }

    /// Reads a code (used or not) so the caller can check client, redirect URI and PKCE
    /// before [`Store::redeem_code`].
    pub async fn get_code(&self, hash: &SecretHash) -> Result<Option<AuthCode>, StoreError> {
        on_engine!(self, e => e.get_code(hash).await)
    }

    /// [`Store::get_code`] with, when `throttle_keys` are given, the latest `blocked_until`
    /// of those keys after `now` ([`Store::throttle_blocked_until`]), read in the same round
    /// trip: the grant's client authentication judged against the other replicas' failures.
    pub async fn get_code_judging(
        &self,
        hash: &SecretHash,
        throttle_keys: Option<&[Vec<u8>]>,
        now: SystemTime,
    ) -> Result<(Option<AuthCode>, Option<SystemTime>), StoreError> {
        match (&self.inner.engine, throttle_keys) {
            (Engine::Postgres(e), Some(keys)) => e.get_code_judging(hash, keys, now).await,
            _ => Ok((self.get_code(hash).await?, None)),
        }
    }

    /// In one transaction: marks the code used, creates its grant and the grant's first
    /// refresh token (`first`). Of concurrent redemptions exactly one gets `Redeemed`. The
    /// answer comes once that transaction has committed, which it may share with other
    /// grants' (group commit, `store/group_commit.rs`).
    pub async fn redeem_code(
        &self,
        hash: &SecretHash,
        first: &NewRefreshToken,
        now: SystemTime,
    ) -> Result<RedeemOutcome, StoreError> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let write = group_commit::GrantWrite::Redeem {
            hash: *hash,
            first: first.clone(),
            now,
            reply,
        };
        self.inner.grants.submit(write, outcome).await
    }

    pub async fn get_refresh_token(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<RefreshToken>, StoreError> {
        on_engine!(self, e => e.get_refresh_token(hash).await)
    }

    /// In one transaction: marks `old` rotated (recording its successor), inserts `new` as
    /// the next generation, revokes the access token issued with `old` (if its jti was
    /// recorded), and extends the grant. Of concurrent rotations exactly one gets `Rotated`;
    /// the others get `AlreadyRotated` with the winner's `rotated_at`. Committed as
    /// [`Store::redeem_code`] is.
    pub async fn rotate_refresh_token(
        &self,
        old: &SecretHash,
        client_id: &str,
        new: &NewRefreshToken,
        now: SystemTime,
    ) -> Result<RotateOutcome, StoreError> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let write = group_commit::GrantWrite::Rotate {
            old: *old,
            client_id: client_id.to_owned(),
            new: new.clone(),
            now,
            reply,
        };
        self.inner.grants.submit(write, outcome).await
    }

    /// How many group-commit batches of grants this handle has run (each one transaction,
    /// whatever the number of grants in it): for tests and diagnostics.
    pub fn grant_batches(&self) -> u64 {
        self.inner.grants.batches()
    }

    /// How many group-commit writers this handle runs (batches that may be in flight at once).
    pub fn grant_writers(&self) -> usize {
        self.inner.grants.writers()
    }

    /// [`Store::get_refresh_token_and_grant`] with the throttle judgement of
    /// [`Store::get_code_judging`], in the same round trip.
    pub async fn get_refresh_token_and_grant_judging(
        &self,
        hash: &SecretHash,
        throttle_keys: Option<&[Vec<u8>]>,
        now: SystemTime,
    ) -> Result<(Option<(RefreshToken, Grant)>, Option<SystemTime>), StoreError> {
        match (&self.inner.engine, throttle_keys) {
            (Engine::Postgres(e), Some(keys)) => {
                e.get_refresh_token_and_grant_judging(hash, keys, now).await
            }
            _ => Ok((self.get_refresh_token_and_grant(hash).await?, None)),
        }
    }

    /// A refresh token and its grant, read in one round trip.
    pub async fn get_refresh_token_and_grant(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<(RefreshToken, Grant)>, StoreError> {
        on_engine!(self, e => e.get_refresh_token_and_grant(hash).await)
    }

    pub async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        on_engine!(self, e => e.get_grant(id).await)
    }

    /// True if the grant exists, is not revoked, and its app exists and is active.
    pub async fn is_grant_live(&self, id: &str) -> Result<bool, StoreError> {
        on_engine!(self, e => e.is_grant_live(id).await)
    }

    /// Revokes a grant and all its refresh tokens (its access tokens die with it: see
    /// [`Store::is_access_token_live`]); announces [`StoreEvent::GrantRevoked`]. Returns
    /// false (and announces nothing) if it was already revoked or does not exist.
    pub async fn revoke_grant(&self, id: &str, now: SystemTime) -> Result<bool, StoreError> {
        on_engine!(self, e => e.revoke_grant(id, now).await)
    }

    // --- access tokens ----------------------------------------------------------------------

    /// Records that access token `jti` is revoked (kept until `expire_time`, when it would
    /// have expired anyway) and announces [`StoreEvent::TokenRevoked`]. Idempotent.
    pub async fn revoke_access_token(
        &self,
        jti: &str,
        grant_id: Option<&str>,
        expire_time: SystemTime,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        on_engine!(self, e => e.revoke_access_token(jti, grant_id, expire_time, now).await)
    }

    pub async fn is_access_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        on_engine!(self, e => e.is_access_token_revoked(jti).await)
    }

    /// One round trip for a cache miss: the token is not revoked and its grant is live.
    pub async fn is_access_token_live(
        &self,
        jti: &str,
        grant_id: &str,
    ) -> Result<bool, StoreError> {
        on_engine!(self, e => e.is_access_token_live(jti, grant_id).await)
    }

    /// For a cache miss, in one round trip: the current scopes of the token's app (SPEC §2:
    /// a token holds at most what its app allows now), or `None` when the token is revoked
    /// or its grant or app is not live.
    pub async fn live_access_token_app_scopes(
        &self,
        jti: &str,
        grant_id: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        on_engine!(self, e => e.live_access_token_app_scopes(jti, grant_id).await)
    }

    // --- federated users (SPEC §7.1) -------------------------------------------------------

    /// The federated user of this name, if one ever signed in.
    pub async fn get_federated_user(
        &self,
        name: &str,
    ) -> Result<Option<FederatedUser>, StoreError> {
        on_engine!(self, e => e.get_federated_user(name).await)
    }

    /// Records a login through a provider in one transaction: a new name is created; a name
    /// of the same provider and subject takes this login's scope, groups and time; a name of
    /// another identity is left alone (`NameTaken`), since identities never merge.
    pub async fn record_federated_login(
        &self,
        user: &FederatedUser,
    ) -> Result<FederatedLogin, StoreError> {
        on_engine!(self, e => e.record_federated_login(user).await)
    }

    /// Ends a federated user whose name has become a `[[users]]` entry (identities never
    /// merge): in one transaction the record goes, with every session, pending consent and
    /// unused code of that name, and every grant (with its refresh and access tokens) and PAT
    /// is revoked, announced as [`StoreEvent::GrantRevoked`] and [`StoreEvent::PatRevoked`].
    /// False (and nothing changed) when no federated user has that name.
    pub async fn retire_federated_user(
        &self,
        name: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        on_engine!(self, e => e.retire_federated_user(name, now).await)
    }

    /// Marks a provider callback's `state` used until `expire_time`: true the first time,
    /// false for a replay.
    pub async fn use_login_state(
        &self,
        state_hash: &SecretHash,
        expire_time: SystemTime,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        on_engine!(self, e => e.use_login_state(state_hash, expire_time, now).await)
    }

    // --- housekeeping ---------------------------------------------------------------------

    /// Deletes rows that expired at or before `now` (codes, sessions, consents, PATs,
    /// refresh tokens, revocation records, grants), `batch` rows per statement.
    pub async fn cleanup_expired(
        &self,
        now: SystemTime,
        batch: u32,
    ) -> Result<CleanupReport, StoreError> {
        on_engine!(self, e => e.cleanup_expired(now, batch).await)
    }

    /// Runs [`Store::cleanup_expired`] every `interval` (first after one interval) until the
    /// returned task is aborted. Failures are logged and retried at the next tick.
    pub fn spawn_cleanup(&self, interval: Duration, clock: Clock) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match store.cleanup_expired(clock.now(), 500).await {
                    Ok(r) if r.total() > 0 => tracing::debug!(report = ?r, "store cleanup"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "store cleanup failed"),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_resolve_against_the_config_folder() {
        let base = Path::new("/etc/gatehouse");
        assert_eq!(
            StoreLocation::parse("sqlite://data/g.db", base),
            Ok(StoreLocation::Sqlite(PathBuf::from(
                "/etc/gatehouse/data/g.db"
            )))
        );
        assert_eq!(
            StoreLocation::parse("sqlite:///var/lib/g.db", base),
            Ok(StoreLocation::Sqlite(PathBuf::from("/var/lib/g.db")))
        );
        assert!(StoreLocation::parse("sqlite://", base).is_err());
        assert!(StoreLocation::parse("mysql://x", base).is_err());
        assert!(matches!(
            StoreLocation::parse("postgres://u:pw@h/db", base),
            Ok(StoreLocation::Postgres(_))
        ));
        let err = StoreLocation::parse("mysql://u:hunter2@h", base).unwrap_err();
        assert!(!err.contains("hunter2"));
    }
}
