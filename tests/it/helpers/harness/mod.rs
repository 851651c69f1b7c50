//! Test harness: certificates, a recording upstream, the gateway in-process or as the real
//! binary, and raw TLS connections for requests a well-behaved client would never send.

pub mod certs;
pub mod process;
pub mod tokens;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse::App;
use gatehouse::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

pub use certs::TestPki;

/// A config file in a temp dir, with a certificate, key and signing key beside it.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
    pub pki: Arc<TestPki>,
}

impl ConfigDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Arc::new(TestPki::new());
        std::fs::write(dir.path().join("cert.pem"), &pki.server_cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &pki.server_key_pem).unwrap();
        std::fs::write(dir.path().join("signing.pem"), certs::ed25519_pem()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
        Self { dir, pki }
    }

    /// A second config folder with the same signing key, as a second replica would have.
    pub fn sharing_keys_with(other: &ConfigDir) -> Self {
        let dir = Self::new();
        std::fs::copy(
            other.dir.path().join("signing.pem"),
            dir.dir.path().join("signing.pem"),
        )
        .unwrap();
        dir
    }

    /// Writes `gatehouse.toml`: listeners on port 0 plus `extra` (sections, routes). A SQLite
    /// store in the folder unless `extra` has its own `[store]`.
    pub fn write(&self, server_extra: &str, extra: &str) -> PathBuf {
        let store = if extra.contains("[store]") {
            ""
        } else {
            "[store]\nurl = \"sqlite://gatehouse.db\"\n"
        };
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://localhost"
{server_extra}
[server.tls]
cert = "cert.pem"
key = "key.pem"

[admin]
listen = "127.0.0.1:0"

[log]
format = "json"
level = "info"

{store}
[oauth]
signing_keys = ["signing.pem"]

{extra}
"#
        );
        let path = self.dir.path().join("gatehouse.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A route to `upstream` with `auth = "none"`.
pub fn open_route(path: &str, upstream: SocketAddr, extra: &str) -> String {
    format!(
        "[[routes]]\npath = \"{path}\"\nupstream = \"http://{upstream}\"\nauth = \"none\"\n{extra}\n"
    )
}

/// The gateway running in this process.
pub struct TestGateway {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub plain: Option<SocketAddr>,
    pub redirect: Option<SocketAddr>,
    pub dir: ConfigDir,
    pub gateway: Arc<gatehouse::server::Gateway>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    pub async fn start(server_extra: &str, extra: &str) -> Self {
        Self::start_in(ConfigDir::new(), server_extra, extra).await
    }

    /// Starts in a prepared config folder (e.g. one sharing another replica's keys).
    pub async fn start_in(dir: ConfigDir, server_extra: &str, extra: &str) -> Self {
        dir.write(server_extra, extra);
        Self::start_written(dir).await
    }

    /// Starts with the `gatehouse.toml` already written in `dir` (a test that needs a config
    /// [`ConfigDir::write`] cannot make, such as a `public_url` naming the listener's port).
    pub async fn start_written(dir: ConfigDir) -> Self {
        {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            let _ = tracing_subscriber::registry()
                .with(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("gatehouse", tracing::Level::DEBUG),
                )
                .with(tracing_subscriber::fmt::layer().with_test_writer())
                .try_init();
        }
        let path = dir.dir.path().join("gatehouse.toml");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let app = App::build(config).await.unwrap();
        let (public, admin, plain, redirect) = (
            app.public_addr(),
            app.admin_addr(),
            app.plain_addr(),
            app.redirect_addr(),
        );
        let gateway = app.gateway().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        let gw = Self {
            public,
            admin,
            plain,
            redirect,
            dir,
            gateway,
            stop: Some(tx),
            task: Some(task),
        };
        gw.wait_ready().await;
        gw
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        poll_until(Duration::from_secs(10), || async {
            client
                .get(format!("http://{}/readyz", self.admin))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    /// An HTTPS client that trusts the test CA, resolves `localhost` to the gateway, keeps
    /// cookies and never follows redirects. `http1_only` forces HTTP/1.1; otherwise ALPN
    /// picks h2.
    pub fn client(&self, http1_only: bool) -> reqwest::Client {
        self.dir.pki.client(self.public, http1_only)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.public.port())
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops accepting and drains, as SIGTERM would.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Sends raw bytes over TLS and reads until the server closes or `timeout` passes.
    pub async fn raw(&self, request: &[u8], timeout: Duration) -> String {
        let mut stream = self.dir.pki.tls_connect(self.public).await;
        stream.write_all(request).await.unwrap();
        read_until_close(&mut stream, timeout).await
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Reads what arrives until EOF, an error, or `timeout`.
pub async fn read_until_close<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `check` until it holds, panicking after `limit`.
pub async fn poll_until<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the next store event that `wanted` accepts, skipping others, for at most
/// `limit`. A subscriber receives an event after the gateway's own token cache applied it,
/// so a request sent once this returns is decided with the event in force.
pub async fn next_event_where(
    events: &mut tokio::sync::broadcast::Receiver<gatehouse::store::StoreEvent>,
    limit: Duration,
    wanted: impl Fn(&gatehouse::store::StoreEvent) -> bool,
) -> gatehouse::store::StoreEvent {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(e)) if wanted(&e) => return e,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("event bus: {e}"),
            Err(_) => panic!("the awaited store event did not come within {limit:?}"),
        }
    }
}

/// The value of one metric sample line (`name{labels} value`), if present.
pub fn metric_value(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Two users: alice (max WRITE) and root (max SYSTEM_ADMIN). The hashes are never checked by
/// token tests.
pub const USERS: &str = r#"
[[users]]
name = "alice"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
max_scope = "WRITE"

[[users]]
name = "root"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
max_scope = "SYSTEM_ADMIN"
"#;
