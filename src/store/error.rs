//! Store errors: a small set of kinds, with a cause for the log that never carries a secret.
//! The store knows no HTTP: each surface maps a kind to its own answer in one place
//! (`apps::http::ApiError::store`, `oauth::reply::store_failure`, `ui::page::store_failure`).

use std::error::Error as StdError;
use std::fmt;

/// What went wrong, as far as a caller needs to decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The database cannot be reached or is overloaded (pool timeout, connection refused or
    /// lost, SQLite busy past its timeout). Callers answer 503; never treat it as "allowed".
    Unavailable,
    /// The entity addressed by the call does not exist.
    NotFound,
    /// A uniqueness or reference rule was broken (duplicate id or client id, a config-managed
    /// app colliding with an API-managed one, a row pointing at a missing app).
    Conflict,
    /// The database's schema is newer than this binary (or otherwise unusable); nothing was
    /// changed. Fatal at start.
    Incompatible,
    /// Anything else (a bug, corrupt data). Callers answer 500 with a request id.
    Internal,
}

/// A store failure. `Display` is safe to log: it names the operation and the database's
/// error, never a bound value (sqlx does not print parameters), and the store only ever
/// holds hashes of secrets anyway. Clients must never see it: each surface maps [`StoreError::kind`].
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl StoreError {
    pub(crate) fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Internal, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::NotFound, message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Conflict, message)
    }

    /// The kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// True when the store could not be reached (answer 503, retry later).
    pub fn is_unavailable(&self) -> bool {
        self.kind == StoreErrorKind::Unavailable
    }

    /// Classifies a sqlx error; `context` names the operation (e.g. "redeem code").
    pub(crate) fn from_sqlx(context: &str, err: sqlx::Error) -> Self {
        let kind = classify(&err);
        let message = match kind {
            StoreErrorKind::Unavailable => format!("store unavailable during {context}"),
            StoreErrorKind::Conflict => format!("{context}: conflicts with an existing row"),
            StoreErrorKind::NotFound => format!("{context}: not found"),
            _ => format!("store failure during {context}"),
        };
        Self {
            kind,
            message,
            source: Some(Box::new(err)),
        }
    }
}

fn classify(err: &sqlx::Error) -> StoreErrorKind {
    use sqlx::Error as E;
    match err {
        E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
            StoreErrorKind::Unavailable
        }
        E::Protocol(_) => StoreErrorKind::Unavailable,
        E::RowNotFound => StoreErrorKind::NotFound,
        E::Database(db) => {
            if db.is_unique_violation() || db.is_foreign_key_violation() {
                return StoreErrorKind::Conflict;
            }
            let code = db.code().unwrap_or_default();
            // SQLite: 5 SQLITE_BUSY, 6 SQLITE_LOCKED, 517 BUSY_SNAPSHOT, 261 BUSY_RECOVERY.
            // PostgreSQL: class 08 connection, 53 resources, 57P0x shutdown, 40001/40P01 retry.
            let unavailable = matches!(&*code, "5" | "6" | "261" | "517" | "40001" | "40P01")
                || code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P");
            if unavailable {
                StoreErrorKind::Unavailable
            } else {
                StoreErrorKind::Internal
            }
        }
        _ => StoreErrorKind::Internal,
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(src) => write!(f, "{}: {src}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// `?` on a sqlx call inside engine code: the operation name comes from the call site.
pub(crate) trait SqlxResultExt<T> {
    fn ctx(self, context: &str) -> Result<T, StoreError>;
}

impl<T> SqlxResultExt<T> for Result<T, sqlx::Error> {
    fn ctx(self, context: &str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::from_sqlx(context, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_unavailable() {
        let e = StoreError::from_sqlx("get app", sqlx::Error::PoolTimedOut);
        assert!(e.is_unavailable());
        assert!(e.to_string().contains("get app"));
    }

    #[test]
    fn decode_errors_are_internal() {
        let e = StoreError::from_sqlx("x", sqlx::Error::ColumnNotFound("c".into()));
        assert_eq!(e.kind(), StoreErrorKind::Internal);
    }
}
