//! A throwaway PostgreSQL cluster for tests and benches: `initdb` + `pg_ctl` on a free port
//! in a temp dir, one per process, started on first use and stopped by a detached watchdog
//! when the process ends (statics never drop). Runs as the `postgres` user when we are root,
//! since initdb refuses root. Shared with `benches/store.rs` through `#[path]`.
//!
//! A second cluster, [`ssl_cluster`], speaks TLS only (`ssl = on` with a certificate made
//! here, `hostssl` lines only in pg_hba.conf), for the store's TLS tests.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// A running cluster; databases are reached at `127.0.0.1:port` as `postgres`, trust auth.
pub struct Cluster {
    pub port: u16,
    /// Holds the data folder, the socket and the server log (`log`).
    #[allow(dead_code)]
    pub dir: PathBuf,
    pub bin: PathBuf,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// A cluster that accepts TCP clients only over TLS, with a certificate for `localhost`
/// (only: not for 127.0.0.1) signed by [`SslCluster::ca_pem`].
pub struct SslCluster {
    pub cluster: Cluster,
    /// The CA that signed the server's certificate, PEM.
    pub ca_pem: String,
}

static SSL_CLUSTER: OnceLock<Result<SslCluster, String>> = OnceLock::new();

/// The shared TLS-only cluster, or why there is none.
pub fn ssl_cluster() -> Result<&'static SslCluster, String> {
    SSL_CLUSTER
        .get_or_init(|| {
            let pki = ServerPki::new()?;
            let cluster = start_with(Some(&pki))?;
            Ok(SslCluster {
                cluster,
                ca_pem: pki.ca_pem,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The TLS-only cluster; or `None` after a note, unless PostgreSQL is required (then panic).
pub fn ssl_cluster_or_skip(what: &str) -> Option<&'static SslCluster> {
    match ssl_cluster() {
        Ok(c) => Some(c),
        Err(why) if required() => {
            panic!("GATEHOUSE_REQUIRE_PG=1 but the TLS PostgreSQL cluster is unavailable: {why}")
        }
        Err(why) => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "note: skipping {what}: no TLS PostgreSQL cluster: {why}; \
                 set GATEHOUSE_REQUIRE_PG=1 to fail instead"
            );
            None
        }
    }
}

/// A CA and the server certificate it signed for `localhost`, PEM.
struct ServerPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl ServerPki {
    fn new() -> Result<Self, String> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let e = |e: rcgen::Error| e.to_string();
        let ca_key = KeyPair::generate().map_err(e)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "gatehouse test PostgreSQL CA");
        let ca_cert = ca_params.self_signed(&ca_key).map_err(e)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().map_err(e)?;
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .map_err(e)?
            .signed_by(&key, &issuer)
            .map_err(e)?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl SslCluster {
    /// A fresh database; its URL (`localhost`, no `sslmode`) for the caller to complete.
    pub async fn create_database(&self) -> String {
        use sqlx::Connection as _;
        use sqlx::postgres::{PgConnectOptions, PgSslMode};
        let name = format!("t_{}", uuid_like());
        // Over TLS (the only way in), unverified: the tests verify.
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.cluster.port)
            .username("postgres")
            .database("postgres")
            .ssl_mode(PgSslMode::Require);
        let mut conn = sqlx::PgConnection::connect_with(&options)
            .await
            .expect("connect over TLS");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create db");
        conn.close().await.ok();
        format!("postgres://postgres@localhost:{}/{name}", self.cluster.port)
    }
}

/// True when CI demands PostgreSQL (`GATEHOUSE_REQUIRE_PG=1`): missing means failure.
pub fn required() -> bool {
    std::env::var("GATEHOUSE_REQUIRE_PG").is_ok_and(|v| v == "1")
}

/// The shared cluster, or why there is none.
pub fn cluster() -> Result<&'static Cluster, String> {
    CLUSTER.get_or_init(start).as_ref().map_err(Clone::clone)
}

/// The cluster; or `None` after printing a note, unless PostgreSQL is required (then panic).
pub fn cluster_or_skip(what: &str) -> Option<&'static Cluster> {
    match cluster() {
        Ok(c) => Some(c),
        Err(why) if required() => {
            panic!("GATEHOUSE_REQUIRE_PG=1 but PostgreSQL is unavailable: {why}")
        }
        Err(why) => {
            // Straight to stderr (not eprintln!, which the test harness captures), once.
            static NOTED: std::sync::Once = std::sync::Once::new();
            NOTED.call_once(|| {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "note: skipping the PostgreSQL runs ({what} first): {why}; \
                     set GATEHOUSE_REQUIRE_PG=1 to fail instead"
                );
            });
            None
        }
    }
}

impl Cluster {
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database with a fresh name and returns its URL.
    pub async fn create_database(&self) -> String {
        use sqlx::Connection as _;
        let name = format!("t_{}", uuid_like());
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create db");
        conn.close().await.ok();
        self.url(&name)
    }
}

fn uuid_like() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}_{}_{n}", nanos, std::process::id())
}

/// `initdb`/`pg_ctl`: in `$GATEHOUSE_PG_BIN` if set (and nowhere else), else on PATH, else
/// the highest `/usr/lib/postgresql/*/bin` (Debian keeps them off PATH).
pub fn find_bin_dir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("GATEHOUSE_PG_BIN") {
        let dir = PathBuf::from(dir);
        return has(&dir).then_some(dir);
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(d) = std::env::split_paths(&path).find(|d| has(d))
    {
        // Follow symlinks to the real bin folder, which also holds pg_dump.
        let real = std::fs::canonicalize(d.join("initdb")).ok();
        return Some(
            real.and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or(d),
        );
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A command for a PostgreSQL binary, through `runuser -u postgres --` when we are root.
fn pg_command(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn start() -> Result<Cluster, String> {
    start_with(None)
}

/// A cluster of the caller's own (not shared), for a test that stops or pauses it; stop it
/// with [`Cluster::stop`] (the watchdog stops it otherwise when the process ends).
pub fn private_cluster() -> Result<Cluster, String> {
    start_with(None)
}

impl Cluster {
    /// The postmaster and every process it started (backends, background workers).
    pub fn processes(&self) -> Vec<u32> {
        let pid_file = self.dir.join("data/postmaster.pid");
        let Some(postmaster) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
        else {
            return Vec::new();
        };
        let children = Command::new("pgrep")
            .args(["-P", &postmaster.to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        std::iter::once(postmaster)
            .chain(children.lines().filter_map(|l| l.trim().parse().ok()))
            .collect()
    }

    /// Sends `signal` (`STOP`, `CONT`) to the postmaster and its children: STOP makes every
    /// connection, old and new, hang as a server that stopped answering would.
    pub fn signal_all(&self, signal: &str) {
        for pid in self.processes() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status();
        }
    }

    /// Stops the cluster now (a paused one is woken first).
    pub fn stop(&self) {
        self.signal_all("CONT");
        let mut ctl = pg_command(&self.bin, "pg_ctl");
        ctl.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = run(ctl, "pg_ctl stop");
    }
}

/// Writes the server's certificate and key into the data folder, turns `ssl` on and lets TCP
/// clients in only with `hostssl` (the Unix socket stays open to the tools).
fn enable_ssl(data: &Path, pki: &ServerPki) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let write = |name: &str, text: &str, mode: u32| -> Result<(), String> {
        let path = data.join(name);
        std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", path.display()))
    };
    write("server.crt", &pki.cert_pem, 0o644)?;
    write("server.key", &pki.key_pem, 0o600)?;
    write(
        "pg_hba.conf",
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 trust\n\
         hostssl all all ::1/128 trust\n",
        0o600,
    )?;
    let conf = data.join("postgresql.conf");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .map_err(|e| format!("open {}: {e}", conf.display()))?;
    writeln!(
        file,
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
    )
    .map_err(|e| format!("write {}: {e}", conf.display()))?;
    if is_root() {
        let mut chown = Command::new("chown");
        chown
            .arg("postgres:postgres")
            .arg(data.join("server.crt"))
            .arg(data.join("server.key"))
            .arg(data.join("pg_hba.conf"));
        run(chown, "chown the TLS files to postgres")?;
    }
    Ok(())
}

fn start_with(ssl: Option<&ServerPki>) -> Result<Cluster, String> {
    let bin = find_bin_dir()
        .ok_or("initdb/pg_ctl not found ($GATEHOUSE_PG_BIN, PATH, /usr/lib/postgresql/*/bin)")?;
    let dir = std::env::temp_dir().join(format!("gatehouse-pg-{}", uuid_like()));
    std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    if is_root() {
        let mut chown = Command::new("chown");
        chown.arg("postgres:postgres").arg(&dir);
        run(chown, "chown the cluster dir to postgres")?;
    }
    let data = dir.join("data");
    let mut initdb = pg_command(&bin, "initdb");
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
    run(initdb, "initdb")?;
    if let Some(pki) = ssl {
        enable_ssl(&data, pki)?;
    }
    let mut last_err = String::new();
    for _ in 0..3 {
        let port = free_port()?;
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
            dir.display()
        );
        let mut ctl = pg_command(&bin, "pg_ctl");
        ctl.arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-t", "30", "-o", &opts, "start"]);
        match run(ctl, "pg_ctl start") {
            Ok(()) => {
                spawn_watchdog(&bin, &dir);
                return Ok(Cluster { port, dir, bin });
            }
            Err(e) => last_err = e,
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Err(last_err)
}

/// Stops the cluster and removes its folder once this process has exited.
fn spawn_watchdog(bin: &Path, dir: &Path) {
    let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let runas = if is_root() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         {runas}{ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        ctl = q(&bin.join("pg_ctl")),
        data = q(&dir.join("data")),
        dir = q(dir),
    );
    let spawned = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        eprintln!(
            "warning: no watchdog for the test cluster in {}: {e}",
            dir.display()
        );
    }
}
