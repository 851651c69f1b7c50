//! Versioned schema migrations, paired per engine with the same numbers and names
//! (`migrations/{sqlite,postgres}/NNNN_name.sql`), embedded in the binary and applied at open
//! in one transaction. A database whose version is newer than the binary knows is refused
//! untouched.

use super::{StoreError, StoreErrorKind};

/// One embedded migration.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "shared_throttles",
        sql: include_str!("../../migrations/sqlite/0002_shared_throttles.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "shared_throttles",
        sql: include_str!("../../migrations/postgres/0002_shared_throttles.sql"),
    },
];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i64 = 2;

pub(crate) const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS gatehouse_schema (\
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// Refuses a store written by a newer gatehouse.
pub(crate) fn check_not_newer(found: Option<i64>) -> Result<(), StoreError> {
    match found {
        Some(v) if v > SCHEMA_VERSION => Err(StoreError::new(
            StoreErrorKind::Incompatible,
            format!(
                "the store's schema version is {v}, newer than the {SCHEMA_VERSION} this \
                 gatehouse binary knows: it was written by a newer release. Run that release \
                 (or newer) against it; the store was left untouched"
            ),
        )),
        _ => Ok(()),
    }
}

/// Instantiated inside each engine's `impl`; `$db` is the sqlx database type.
macro_rules! migrate_ops {
    ($db:ty) => {
        /// Applies pending migrations; `lock` (if any) runs first inside the transaction to
        /// serialise replicas starting at once.
        async fn migrate(
            &self,
            list: &[$crate::store::migrate::Migration],
            lock: Option<&str>,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let c = "migrate store schema";
            let mut tx = self.begin_write(c).await?;
            if let Some(lock) = lock {
                sqlx::query(lock).execute(&mut *tx).await.ctx(c)?;
            }
            sqlx::raw_sql($crate::store::migrate::VERSION_TABLE)
                .execute(&mut *tx)
                .await
                .ctx(c)?;
            let found: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM gatehouse_schema")
                    .fetch_one(&mut *tx)
                    .await
                    .ctx(c)?;
            if let Err(e) = $crate::store::migrate::check_not_newer(found) {
                tx.rollback().await.ctx(c)?;
                return Err(e);
            }
            let now = $crate::store::codec::micros(std::time::SystemTime::now());
            for m in list.iter().filter(|m| m.version > found.unwrap_or(0)) {
                tracing::info!(
                    version = m.version,
                    name = m.name,
                    "applying store migration"
                );
                sqlx::raw_sql(m.sql).execute(&mut *tx).await.ctx(c)?;
                sqlx::query(
                    "INSERT INTO gatehouse_schema (version, name, applied_at) VALUES ($1, $2, $3)",
                )
                .bind(m.version)
                .bind(m.name)
                .bind(now)
                .execute(&mut *tx)
                .await
                .ctx(c)?;
            }
            tx.commit().await.ctx(c)?;
            Ok(())
        }
    };
}

pub(crate) use migrate_ops;

#[cfg(test)]
mod tests {
    use super::*;

    fn on_disk(engine: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(engine);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        names.sort();
        names
    }

    fn embedded(list: &[Migration]) -> Vec<String> {
        list.iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect()
    }

    #[test]
    fn migrations_are_paired_embedded_and_numbered_in_order() {
        assert_eq!(on_disk("sqlite"), on_disk("postgres"));
        assert_eq!(embedded(SQLITE), on_disk("sqlite"));
        assert_eq!(embedded(POSTGRES), on_disk("postgres"));
        for (i, m) in SQLITE.iter().enumerate() {
            assert_eq!(m.version, i64::try_from(i).unwrap() + 1);
        }
        assert_eq!(SQLITE.last().unwrap().version, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused_with_a_clear_message() {
        assert!(check_not_newer(None).is_ok());
        assert!(check_not_newer(Some(SCHEMA_VERSION)).is_ok());
        let e = check_not_newer(Some(SCHEMA_VERSION + 1)).unwrap_err();
        assert_eq!(e.kind(), StoreErrorKind::Incompatible);
        assert!(e.to_string().contains("newer"));
    }
}
