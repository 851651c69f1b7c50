//! The PostgreSQL engine, for several replicas: a pool of configurable size, revocation
//! events sent with `pg_notify` inside the changing transaction (so only on commit), and a
//! background `PgListener` that re-broadcasts other replicas' events and announces when its
//! connection drops ([`StoreEvent::NotificationsLost`]) and when it listens again
//! ([`StoreEvent::NotificationsBack`]). TLS to the server (SPEC §7.5) follows libpq's
//! `sslmode` (every value, `allow` included) and `store.tls_ca`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgSslMode};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Transaction};

use std::time::SystemTime;

use super::codec::{from_micros, micros};
use super::error::SqlxResultExt as _;
use super::events::{CHANNEL, Events};
use super::{StoreError, StoreErrorKind, StoreEvent, ThrottleRow};

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Serialises migrations of replicas that start at the same time.
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(7254021903)";

/// A grant's first read with the shared throttle's judgement of its client authentication
/// (as [`PostgresEngine::throttle_blocked_until`] makes it), in one round trip and always one
/// row (the code's or token's columns NULL when there is none): `$1` the code's or refresh
/// token's hash, `$2` the throttle keys, `$3` now.
const GET_CODE_JUDGING: &str = "SELECT c.hash, c.client_id, c.user_name, c.redirect_uri, \
    c.scope, c.code_challenge, c.code_challenge_method, c.create_time, c.expire_time, \
    c.used_at, c.grant_id, b.throttle_blocked_until \
    FROM (SELECT MAX(blocked_until) AS throttle_blocked_until FROM throttle_failures \
    WHERE key = ANY($2) AND blocked_until > $3 AND expires > $3) b \
    LEFT JOIN auth_codes c ON c.hash = $1";
const GET_REFRESH_AND_GRANT_JUDGING: &str = "SELECT t.hash, t.grant_id, t.generation, \
    t.parent_hash, t.create_time, t.expire_time, t.rotated_at, t.successor_hash, \
    t.revoked_at, t.access_jti, t.access_expire_time, g.user_name AS g_user_name, \
    g.client_id AS g_client_id, g.scope AS g_scope, g.create_time AS g_create_time, \
    g.expire_time AS g_expire_time, g.revoked_at AS g_revoked_at, b.throttle_blocked_until \
    FROM (SELECT MAX(blocked_until) AS throttle_blocked_until FROM throttle_failures \
    WHERE key = ANY($2) AND blocked_until > $3 AND expires > $3) b \
    LEFT JOIN (refresh_tokens t JOIN grants g ON g.id = t.grant_id) ON t.hash = $1";

/// How long a pooled connection may sit idle before it is pinged before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

pub(crate) struct PostgresEngine {
    pub(crate) pool: PgPool,
    pub(crate) events: Events,
    listen_pool: PgPool,
    listener: Option<tokio::task::AbortHandle>,
    /// When this replica last deleted expired throttle rows (Unix microseconds).
    throttle_swept: std::sync::atomic::AtomicI64,
}

impl PostgresEngine {
    /// Connects (failing with `Unavailable` when the server cannot be reached, with a message
    /// that names TLS when TLS is what failed), migrates, and starts the listener on its own
    /// connection, outside the main pool. `tls_ca` is `store.tls_ca`.
    pub(crate) async fn open(
        url: &str,
        tls_ca: Option<&Path>,
        max_connections: u32,
        events: Events,
    ) -> Result<Self, StoreError> {
        let options = connect_options(url, tls_ca)?;
        let options = settle_allow(options).await;
        let mode = options.get_ssl_mode();
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A connection idle for less than `PING_AFTER_IDLE` is used without a ping (a
            // round trip per statement, on the server's CPU too): sqlx tests each connection
            // as it is released, so only one that sat idle long enough for the server to go
            // away is pinged first (and replaced if it fails).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(|e| connect_error(e, mode))?;
        // Two: a listener given up on may still hold one connection for a moment.
        let listen_pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(options);
        let mut engine = Self {
            pool,
            events: events.clone(),
            listen_pool: listen_pool.clone(),
            listener: None,
            throttle_swept: std::sync::atomic::AtomicI64::new(0),
        };
        engine
            .migrate(super::migrate::POSTGRES, Some(MIGRATION_LOCK))
            .await?;
        let listener = listen(&listen_pool).await.ctx("start listening")?;
        engine.listener =
            Some(tokio::spawn(listen_loop(listen_pool, listener, events)).abort_handle());
        Ok(engine)
    }

    async fn begin_write(
        &self,
        context: &str,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.ctx(context)
    }

    /// Queues the events as notifications of `tx`: PostgreSQL delivers them on commit only.
    /// One round trip for all of them (a batch of rotations revokes one access token each).
    async fn notify(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        events: &[StoreEvent],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let payloads: Vec<String> = events.iter().map(|e| self.events.encode(e)).collect();
        sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
            .bind(CHANNEL)
            .bind(payloads)
            .execute(&mut **tx)
            .await
            .ctx("notify replicas")?;
        Ok(())
    }

    /// [`Self::get_code`] and [`Self::throttle_blocked_until`] of `keys` in one statement
    /// (always one row: the code's columns are NULL when there is no such code).
    pub(crate) async fn get_code_judging(
        &self,
        hash: &super::SecretHash,
        keys: &[Vec<u8>],
        now: SystemTime,
    ) -> Result<(Option<super::AuthCode>, Option<SystemTime>), StoreError> {
        use sqlx::Row as _;
        let c = "get code";
        let row = sqlx::query(GET_CODE_JUDGING)
            .bind(hash.0.to_vec())
            .bind(keys)
            .bind(micros(now))
            .fetch_one(&self.pool)
            .await
            .ctx(c)?;
        let blocked: Option<i64> = row.try_get("throttle_blocked_until").ctx(c)?;
        let found: Option<Vec<u8>> = row.try_get("hash").ctx(c)?;
        let code = found.map(|_| Self::code_row(&row)).transpose()?;
        Ok((code, blocked.map(from_micros)))
    }

    /// [`Self::get_refresh_token_and_grant`] and [`Self::throttle_blocked_until`] of `keys`
    /// in one statement.
    pub(crate) async fn get_refresh_token_and_grant_judging(
        &self,
        hash: &super::SecretHash,
        keys: &[Vec<u8>],
        now: SystemTime,
    ) -> Result<
        (
            Option<(super::RefreshToken, super::Grant)>,
            Option<SystemTime>,
        ),
        StoreError,
    > {
        use sqlx::Row as _;
        let c = "get refresh token";
        let row = sqlx::query(GET_REFRESH_AND_GRANT_JUDGING)
            .bind(hash.0.to_vec())
            .bind(keys)
            .bind(micros(now))
            .fetch_one(&self.pool)
            .await
            .ctx(c)?;
        let blocked: Option<i64> = row.try_get("throttle_blocked_until").ctx(c)?;
        let found: Option<Vec<u8>> = row.try_get("hash").ctx(c)?;
        let pair = match found {
            Some(_) => Some(Self::refresh_and_grant_row(&row)?),
            None => None,
        };
        Ok((pair, blocked.map(from_micros)))
    }

    /// The latest `blocked_until` of the rows of `keys` that is after `now`, if any.
    pub(crate) async fn throttle_blocked_until(
        &self,
        keys: &[Vec<u8>],
        now: SystemTime,
    ) -> Result<Option<SystemTime>, StoreError> {
        let until: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(blocked_until) FROM throttle_failures \
             WHERE key = ANY($1) AND blocked_until > $2 AND expires > $2",
        )
        .bind(keys)
        .bind(micros(now))
        .fetch_one(&self.pool)
        .await
        .ctx("read shared throttles")?;
        Ok(until.map(from_micros))
    }

    /// Changes the rows of `keys` in one transaction, each under its row lock (taken in key
    /// order, so two replicas never wait on each other in a cycle): `change` gets the row as
    /// stored (all zero when there is none, or when it has expired) and returns it changed.
    /// Expired rows are swept at most once a minute per replica.
    pub(crate) async fn throttle_update(
        &self,
        keys: &[Vec<u8>],
        now: SystemTime,
        change: &(dyn Fn(ThrottleRow) -> ThrottleRow + Send + Sync),
    ) -> Result<(), StoreError> {
        let c = "record a throttled failure";
        let mut sorted: Vec<&Vec<u8>> = keys.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut tx = self.begin_write(c).await?;
        for key in sorted {
            sqlx::query(
                "INSERT INTO throttle_failures (key, failures, first_failure, blocked_until, expires) \
                 VALUES ($1, 0, 0, 0, 0) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .execute(&mut *tx)
            .await
            .ctx(c)?;
            let (failures, first, blocked, expires): (i32, i64, i64, i64) = sqlx::query_as(
                "SELECT failures, first_failure, blocked_until, expires FROM throttle_failures \
                 WHERE key = $1 FOR UPDATE",
            )
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .ctx(c)?;
            let stored = if expires > micros(now) {
                ThrottleRow {
                    failures: u32::try_from(failures).unwrap_or(0),
                    first_failure: from_micros(first),
                    blocked_until: from_micros(blocked),
                    expires: from_micros(expires),
                }
            } else {
                ThrottleRow::default()
            };
            let row = change(stored);
            sqlx::query(
                "UPDATE throttle_failures SET failures = $2, first_failure = $3, \
                 blocked_until = $4, expires = $5 WHERE key = $1",
            )
            .bind(key)
            .bind(i32::try_from(row.failures).unwrap_or(i32::MAX))
            .bind(micros(row.first_failure))
            .bind(micros(row.blocked_until))
            .bind(micros(row.expires))
            .execute(&mut *tx)
            .await
            .ctx(c)?;
        }
        tx.commit().await.ctx(c)?;
        self.sweep_throttles(now).await;
        Ok(())
    }

    /// Deletes the row of `key` (a user name whose password was right).
    pub(crate) async fn throttle_forget(&self, key: &[u8]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM throttle_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .ctx("forget a throttled key")?;
        Ok(())
    }

    /// Deletes the expired throttle rows, at most once a minute per replica; a failure only
    /// leaves them for the next sweep.
    async fn sweep_throttles(&self, now: SystemTime) {
        use std::sync::atomic::Ordering;
        const EVERY: i64 = 60_000_000;
        let now = micros(now);
        let last = self.throttle_swept.load(Ordering::Relaxed);
        if now - last < EVERY
            || self
                .throttle_swept
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let swept = sqlx::query("DELETE FROM throttle_failures WHERE expires <= $1")
            .bind(now)
            .execute(&self.pool)
            .await;
        if let Err(e) = swept {
            tracing::warn!(error = %e, "could not delete expired throttle rows");
        }
    }

    pub(crate) async fn close(&self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
        self.listen_pool.close().await;
        self.pool.close().await;
    }

    super::ops_apps::apps_ops!(Postgres);
    /// See `ops_tokens::POSTGRES_REDEEM` and `ops_tokens::POSTGRES_ROTATE`.
    const REDEEM_ONE: &str = super::ops_tokens::POSTGRES_REDEEM;
    const ROTATE_ONE: &str = super::ops_tokens::POSTGRES_ROTATE;

    super::ops_tokens::tokens_ops!(Postgres);
    super::ops_users::user_ops!(Postgres);
    super::ops_federation::federation_ops!(Postgres);
    super::migrate::migrate_ops!(Postgres);
}

impl Drop for PostgresEngine {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

/// `store.url`'s options with `store.tls_ca` applied. libpq's rule for a root certificate is
/// kept: with one (`tls_ca`, or `sslrootcert` in the URL), `sslmode=require` verifies the
/// chain as `verify-ca` does. The CA file is read here, once, so a missing or unreadable file
/// fails the start with its name instead of every connection later.
fn connect_options(url: &str, tls_ca: Option<&Path>) -> Result<PgConnectOptions, StoreError> {
    // Never echo the URL: it may carry a password.
    let mut options = PgConnectOptions::from_str(url).map_err(|_| {
        StoreError::new(
            StoreErrorKind::Internal,
            "store.url is not a valid PostgreSQL URL (or its sslmode is not one of disable, \
             allow, prefer, require, verify-ca, verify-full)",
        )
    })?;
    let mut has_root = url_names_root_cert(url);
    if let Some(ca) = tls_ca {
        let pem = std::fs::read(ca).map_err(|e| {
            StoreError::internal(format!(
                "store.tls_ca: cannot read {} for TLS to PostgreSQL: {e}",
                ca.display()
            ))
        })?;
        use rustls::pki_types::{CertificateDer, pem::PemObject as _};
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        if !certs.is_ok_and(|c| !c.is_empty()) {
            return Err(StoreError::internal(format!(
                "store.tls_ca: {} holds no PEM certificate for TLS to PostgreSQL",
                ca.display()
            )));
        }
        options = options.ssl_root_cert_from_pem(pem);
        has_root = true;
    }
    if has_root && matches!(options.get_ssl_mode(), PgSslMode::Require) {
        options = options.ssl_mode(PgSslMode::VerifyCa);
    }
    Ok(options)
}

/// Whether `url`'s query names a root certificate (`sslrootcert`, or sqlx's spellings).
fn url_names_root_cert(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        form_urlencoded::parse(query.as_bytes())
            .any(|(k, _)| matches!(&*k, "sslrootcert" | "ssl-root-cert" | "ssl-ca"))
    })
}

/// `sslmode=allow` as libpq means it: plain text first, TLS (unverified) when the server
/// refuses plain text. sqlx treats `allow` as `disable`, so the choice is made here, once, by
/// one plain-text attempt; the pool then connects every time the way that worked.
async fn settle_allow(options: PgConnectOptions) -> PgConnectOptions {
    if !matches!(options.get_ssl_mode(), PgSslMode::Allow) {
        return options;
    }
    let plain = options.clone().ssl_mode(PgSslMode::Disable);
    match PgConnection::connect_with(&plain).await {
        Ok(conn) => {
            let _ = conn.close().await;
            plain
        }
        Err(e) if refused_without_tls(&e) => options.ssl_mode(PgSslMode::Require),
        // Anything else is the pool's to report.
        Err(_) => plain,
    }
}

/// A server whose pg_hba.conf admits this client only over TLS (`hostssl`) rejects a
/// plain-text connection with 28000 and "no encryption" ("SSL off" before PostgreSQL 12).
fn refused_without_tls(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    db.code().as_deref() == Some("28000")
        && (db.message().contains("no encryption") || db.message().contains("SSL off"))
}

/// The first connection's failure, saying so when TLS is what failed: a handshake or
/// certificate error (sqlx reports the latter as I/O), a server without TLS under `require`,
/// or a server that wants TLS under `disable`.
fn connect_error(e: sqlx::Error, mode: PgSslMode) -> StoreError {
    let is_tls = match &e {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    };
    let mode = ssl_mode_name(mode);
    let context = if is_tls {
        format!("the TLS connection to PostgreSQL (sslmode={mode})")
    } else if refused_without_tls(&e) {
        format!(
            "connect to PostgreSQL: the server accepts this client only over TLS, and \
             sslmode={mode} does not use it (use sslmode=require or stronger)"
        )
    } else {
        "connect to PostgreSQL".to_owned()
    };
    StoreError::from_sqlx(&context, e)
}

/// `sslmode`'s name as libpq spells it.
fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// A listener on [`CHANNEL`] that reports a lost connection at once (`Ok(None)` from
/// `try_recv`) instead of first trying to reconnect, so the loss is announced when it happens.
async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Re-broadcasts other replicas' events. When the connection drops, other replicas' events
/// are missed from that moment: `NotificationsLost` is published at once, and
/// `NotificationsBack` when a new connection listens again (retried with a backoff).
async fn listen_loop(pool: PgPool, first: PgListener, events: Events) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    let mut listener = Some(first);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(current) = listener.as_mut() else {
            match listen(&pool).await {
                Ok(l) => {
                    tracing::info!("revocation notifications are back; flushing token caches");
                    listener = Some(l);
                    backoff = FIRST_BACKOFF;
                    events.publish(&[StoreEvent::NotificationsBack]);
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "revocation listener cannot reconnect yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };
        match current.try_recv().await {
            Ok(Some(n)) => {
                if let Some(event) = events.decode_remote(n.payload()) {
                    events.publish(&[event]);
                }
            }
            Err(sqlx::Error::PoolClosed) => return,
            lost => {
                match lost {
                    Err(e) => tracing::warn!(error = %e, "revocation listener lost its connection"),
                    Ok(_) => tracing::warn!("revocation listener lost its connection"),
                }
                // A new listener on a new connection, whatever state this one is in.
                listener = None;
                events.publish(&[StoreEvent::NotificationsLost]);
            }
        }
    }
}
