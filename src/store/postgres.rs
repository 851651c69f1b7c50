//! The PostgreSQL engine, for several replicas: a pool of configurable size, revocation
//! events sent with `pg_notify` inside the changing transaction (so only on commit), and a
//! background `PgListener` that re-broadcasts other replicas' events and announces when its
//! connection drops ([`StoreEvent::NotificationsLost`]) and when it listens again
//! ([`StoreEvent::NotificationsBack`]).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::error::SqlxResultExt as _;
use super::events::{CHANNEL, Events};
use super::{StoreError, StoreErrorKind, StoreEvent};

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Serialises migrations of replicas that start at the same time.
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(7254021903)";

pub(crate) struct PostgresEngine {
    pub(crate) pool: PgPool,
    pub(crate) events: Events,
    listen_pool: PgPool,
    listener: Option<tokio::task::AbortHandle>,
}

impl PostgresEngine {
    /// Connects (failing with `Unavailable` when the server cannot be reached), migrates, and
    /// starts the listener on its own connection, outside the main pool.
    pub(crate) async fn open(
        url: &str,
        max_connections: u32,
        events: Events,
    ) -> Result<Self, StoreError> {
        // Never echo the URL: it may carry a password.
        let options = PgConnectOptions::from_str(url).map_err(|_| {
            StoreError::new(
                StoreErrorKind::Internal,
                "store.url is not a valid PostgreSQL URL",
            )
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .ctx("connect to PostgreSQL")?;
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
    super::migrate::migrate_ops!(Postgres);
}

impl Drop for PostgresEngine {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
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
