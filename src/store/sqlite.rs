//! The SQLite engine, the embedded default: one file in WAL mode with a busy timeout,
//! foreign keys on and `synchronous=FULL`: a commit returns once the WAL is flushed to disk, so
//! an answer sent after it survives a power cut, not only a crash of the process (`NORMAL`
//! flushes only at checkpoints). The token grants share that flush (`store/group_commit.rs`). Every write transaction starts with
//! `BEGIN IMMEDIATE`, so writers queue on the busy timeout instead of failing with
//! `SQLITE_BUSY_SNAPSHOT`. Revocation events stay in this process.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::error::SqlxResultExt as _;
use super::events::Events;
use super::{StoreError, StoreErrorKind, StoreEvent};

/// How long a statement waits for another connection's write lock before giving up (503).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct SqliteEngine {
    pub(crate) pool: SqlitePool,
    pub(crate) events: Events,
}

impl SqliteEngine {
    /// Opens (creating if missing, with its folder) and migrates the file at `path`.
    pub(crate) async fn open(
        path: &Path,
        max_connections: u32,
        events: Events,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Unavailable,
                    format!("cannot create the store folder {}: {e}", dir.display()),
                )
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = connect_retrying_busy(options, max_connections)
            .await
            .ctx("open the SQLite store")?;
        let engine = Self { pool, events };
        engine.migrate(super::migrate::SQLITE, None).await?;
        Ok(engine)
    }

    /// A write transaction that holds SQLite's write lock from its first statement.
    async fn begin_write(&self, context: &str) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.ctx(context)
    }

    /// Nothing to send: SQLite's events are published in-process after commit.
    async fn notify(
        &self,
        _tx: &mut Transaction<'static, Sqlite>,
        _events: &[StoreEvent],
    ) -> Result<(), StoreError> {
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    super::ops_apps::apps_ops!(Sqlite);
    /// See `ops_tokens::SQLITE_REDEEM` and `ops_tokens::SQLITE_ROTATE`.
    const REDEEM_ONE: &str = super::ops_tokens::SQLITE_REDEEM;
    const ROTATE_ONE: &str = super::ops_tokens::SQLITE_ROTATE;

    super::ops_tokens::tokens_ops!(Sqlite);
    super::ops_users::user_ops!(Sqlite);
    super::ops_federation::federation_ops!(Sqlite);
    super::migrate::migrate_ops!(Sqlite);
}

/// Connects, retrying while another process holds the lock. Switching a fresh file to WAL
/// needs an exclusive lock and SQLite answers `SQLITE_BUSY` there without consulting the busy
/// timeout, so replicas that start together must retry (bounded by `BUSY_TIMEOUT`).
async fn connect_retrying_busy(
    options: SqliteConnectOptions,
    max_connections: u32,
) -> Result<SqlitePool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(10);
    loop {
        let attempt = SqlitePoolOptions::new()
            // No ping (a round trip to the connection's worker thread) before each statement:
            // a connection to a local file has no far end to lose, and sqlx tests each one as
            // it is released anyway (docs/performance-notes.md, the token grants).
            .test_before_acquire(false)
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await;
        match attempt {
            Err(sqlx::Error::Database(e))
                if is_busy(e.as_ref()) && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// `SQLITE_BUSY` and its extended codes (`BUSY_RECOVERY` 261, `BUSY_SNAPSHOT` 517, ...).
fn is_busy(e: &dyn sqlx::error::DatabaseError) -> bool {
    e.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}
