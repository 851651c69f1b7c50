//! Test helpers: a database per test on either engine, and the macro that instantiates the
//! store contract suite once per engine.

pub mod pg;

use std::path::PathBuf;

use gatehouse::store::Store;

/// One test's database: a SQLite file in its own temp dir, or a fresh PostgreSQL database in
/// the shared throwaway cluster. `open` may be called many times (restarts, replicas).
pub struct TestDb {
    pub url: String,
    pub base: tempfile::TempDir,
    postgres: bool,
}

impl TestDb {
    /// A SQLite store at `sqlite://store/gatehouse.db`, relative to a temp "config folder".
    pub async fn sqlite() -> Self {
        let base = tempfile::tempdir().expect("tempdir");
        Self {
            url: "sqlite://store/gatehouse.db".to_owned(),
            base,
            postgres: false,
        }
    }

    /// A fresh PostgreSQL database, or `None` (skipped with a note) without PostgreSQL.
    pub async fn postgres(test: &str) -> Option<Self> {
        let test = test.to_owned();
        let cluster = tokio::task::spawn_blocking(move || pg::cluster_or_skip(&test))
            .await
            .expect("cluster start")?;
        let url = cluster.create_database().await;
        Some(Self {
            url,
            base: tempfile::tempdir().expect("tempdir"),
            postgres: true,
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url, self.base.path(), 16)
            .await
            .expect("open store")
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.base.path().join("store/gatehouse.db")
    }

    /// Runs raw SQL on the database, outside the store.
    pub async fn exec(&self, sql: &str) {
        use sqlx::Connection as _;
        if self.postgres {
            let mut c = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect");
            sqlx::raw_sql(sql).execute(&mut c).await.expect("exec");
            c.close().await.ok();
        } else {
            let url = format!("sqlite://{}", self.sqlite_path().display());
            let mut c = sqlx::SqliteConnection::connect(&url)
                .await
                .expect("connect");
            sqlx::raw_sql(sql).execute(&mut c).await.expect("exec");
            c.close().await.ok();
        }
    }

    /// PostgreSQL only: runs `sql` on the cluster's maintenance database, for statements about
    /// this test's database that cannot run inside it (it may be refusing connections).
    async fn exec_on_cluster(&self, sql: &str) {
        use sqlx::Connection as _;
        assert!(self.postgres, "PostgreSQL only");
        let (server, _) = self.url.rsplit_once('/').expect("a database URL");
        let mut c = sqlx::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .expect("connect");
        sqlx::raw_sql(sql).execute(&mut c).await.expect("exec");
        c.close().await.ok();
    }

    /// PostgreSQL only: the database's name.
    fn database_name(&self) -> &str {
        self.url.rsplit_once('/').expect("a database URL").1
    }

    /// PostgreSQL only: refuses (or again accepts) new connections to this database, as one
    /// failing over would; connections already open keep working.
    pub async fn allow_connections(&self, allow: bool) {
        let name = self.database_name().to_owned();
        self.exec_on_cluster(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}"))
            .await;
    }

    /// PostgreSQL only: ends every `LISTEN` connection to this database, as a network blip
    /// would.
    pub async fn terminate_listeners(&self) {
        let name = self.database_name().to_owned();
        self.exec_on_cluster(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND query LIKE 'LISTEN%'"
        ))
        .await;
    }

    /// Everything the database holds, as bytes: the SQLite file with its WAL, or a
    /// `pg_dump` (schema and data) of the database.
    pub async fn dump(&self) -> Vec<u8> {
        if self.postgres {
            let cluster = pg::cluster().expect("cluster");
            let out = std::process::Command::new(cluster.bin.join("pg_dump"))
                .args(["--dbname", &self.url, "--inserts"])
                .output()
                .expect("pg_dump");
            assert!(
                out.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Newer pg_dump brackets its output with `\restrict <random key>` lines.
            let text = String::from_utf8_lossy(&out.stdout);
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
                .collect();
            kept.join("\n").into_bytes()
        } else {
            let mut bytes = std::fs::read(self.sqlite_path()).expect("read db");
            let wal = self.sqlite_path().with_extension("db-wal");
            bytes.extend(std::fs::read(wal).unwrap_or_default());
            bytes
        }
    }
}

/// `contract_tests!(a, b)` defines `sqlite::a`, `postgres::a`, … calling `a(TestDb)` and
/// `b(TestDb)` from the enclosing module; the PostgreSQL ones skip without PostgreSQL
/// unless `GATEHOUSE_REQUIRE_PG=1`.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::helpers::support::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(db) = $crate::helpers::support::TestDb::postgres(stringify!($name)).await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

/// `postgres_tests!(a, b)` defines `postgres::a`, … for what only PostgreSQL promises (other
/// replicas, the notification connection); skipped as `contract_tests!` skips them.
macro_rules! postgres_tests {
    ($($name:ident),* $(,)?) => {
        mod postgres_only {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(db) = $crate::helpers::support::TestDb::postgres(stringify!($name)).await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

pub(crate) use contract_tests;
pub(crate) use postgres_tests;
