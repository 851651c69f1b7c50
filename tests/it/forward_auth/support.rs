//! What the forward-auth tests share, none of it a test: the gateway configured as the auth
//! service of an ingress (its `public_url` naming its own port, `app.localhost` allowed as a
//! `return_to` host, the session cookie widened to `localhost`), and Debian's nginx and Caddy
//! started on a free port with configs written here, talking to the gateway over TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{ConfigDir, TestGateway};
use crate::helpers::login_support;

/// The application's host behind the ingress, and the gateway's own host.
pub const APP_HOST: &str = "app.localhost";
pub const GW_HOST: &str = "gw.localhost";

/// A port nothing listens on right now (the ingress must be told its port before it starts,
/// and the gateway's `allowed_hosts` must name it).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The routes every forward-auth test uses: none has an upstream, the ingress has it.
pub const ROUTES: &str = r#"
[[routes]]
path = "/app"
upstream = ""
auth = "session"
scopes = { GET = "READ", HEAD = "READ", "*" = "WRITE" }

[[routes]]
path = "/admin"
upstream = ""
auth = "bearer"
scope = "ADMIN"

[[routes]]
path = "/public"
upstream = ""
auth = "none"

[[routes]]
path = "/editors"
upstream = ""
auth = "bearer"
scope = "READ"
allow_groups = ["wiki-editors"]
"#;

/// The gateway as an ingress's auth service: listening on `gw_port` with `public_url`
/// `https://gw.localhost:{gw_port}`, trusting 127.0.0.1 as a proxy, allowing `return_to` URLs
/// on `app.localhost:{app_port}`, the session cookie's `Domain` `localhost`; the users of
/// `login_support` (real password hashes; alice in the groups `staff` and `wiki-editors`) and
/// `routes`.
pub async fn gateway(gw_port: u16, app_port: u16, routes: &str) -> TestGateway {
    let dir = ConfigDir::new();
    // alice is in two groups; root in none.
    let users = login_support::users().replacen(
        "max_scope = \"WRITE\"",
        "max_scope = \"WRITE\"\ngroups = [\"staff\", \"wiki-editors\"]",
        1,
    );
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{gw_port}"
public_url = "https://{GW_HOST}:{gw_port}"
trusted_proxies = ["127.0.0.1/32"]
[server.tls]
cert = "cert.pem"
key = "key.pem"

[admin]
listen = "127.0.0.1:0"

[log]
format = "json"
level = "info"

[store]
url = "sqlite://gatehouse.db"

[oauth]
signing_keys = ["signing.pem"]

[forward_auth]
allowed_hosts = ["{APP_HOST}:{app_port}"]
cookie_domain = "localhost"

{users}
{routes}
"#
    );
    std::fs::write(dir.dir.path().join("gatehouse.toml"), text).unwrap();
    TestGateway::start_written(dir).await
}

/// A browser: trusts the test CA, resolves both hosts to their listeners, keeps cookies and
/// follows no redirect; `local` is the address it connects from.
pub fn browser(gw: &TestGateway, app: SocketAddr, local: Option<&str>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(gw.dir.pki.ca_pem.as_bytes()).unwrap();
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve(APP_HOST, app)
        .resolve(GW_HOST, gw.public)
        .resolve("localhost", gw.public)
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .http1_only()
        .timeout(Duration::from_secs(20));
    if let Some(ip) = local {
        builder = builder.local_address(Some(ip.parse().unwrap()));
    }
    builder.build().unwrap()
}

/// The binary at `path`, or `None` after saying on stderr why the test is skipped; with
/// `GATEHOUSE_REQUIRE_INGRESS` set (CI sets it) a missing binary fails the test instead.
pub fn ingress_binary(path: &str, package: &str) -> Option<PathBuf> {
    let binary = PathBuf::from(path);
    if binary.is_file() {
        return Some(binary);
    }
    assert!(
        std::env::var_os("GATEHOUSE_REQUIRE_INGRESS").is_none(),
        "GATEHOUSE_REQUIRE_INGRESS is set but {path} is missing (Debian: apt-get install {package})"
    );
    // Straight to stderr (eprintln! is captured by the test harness and never shown).
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "note: skipping a forward-auth ingress test: it needs {path} (Debian: apt-get install \
         {package}); set GATEHOUSE_REQUIRE_INGRESS=1 to fail instead"
    );
    None
}

/// An ingress process in its own folder, stopped when dropped.
pub struct Ingress {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Ingress {
    /// Starts `command` (run in `dir`) and waits until `port` accepts connections.
    fn start(mut command: Command, dir: tempfile::TempDir, port: u16, log: PathBuf) -> Self {
        let child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut ingress = Self {
            child,
            addr,
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = ingress.child.try_wait() {
                panic!("the ingress exited ({status}):\n{}", ingress.log());
            }
            assert!(
                Instant::now() < deadline,
                "the ingress did not listen:\n{}",
                ingress.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ingress
    }

    /// What the ingress wrote to its log and stderr.
    pub fn log(&self) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Ok(error_log) = std::fs::read_to_string(self.dir.path().join("error.log")) {
            text.push_str(&error_log);
        }
        text
    }

    /// The application's URL through the ingress.
    pub fn url(&self, path: &str) -> String {
        format!("https://{APP_HOST}:{}{path}", self.addr.port())
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The certificate, key and CA files the ingress uses, copied from the gateway's folder: the
/// ingress serves `app.localhost` with the test certificate and checks the gateway's against
/// the test CA.
fn tls_files(gw: &TestGateway, dir: &Path) {
    for name in ["cert.pem", "key.pem", "ca.pem"] {
        std::fs::copy(gw.dir.dir.path().join(name), dir.join(name)).unwrap();
    }
}

/// nginx with `auth_request` to the gateway's `/auth/verify` over TLS, as
/// `deploy/nginx/gatehouse-forward-auth.conf` shows, in front of `upstream`.
pub fn nginx(binary: &Path, port: u16, gw: &TestGateway, upstream: &Upstream) -> Ingress {
    let dir = tempfile::tempdir().unwrap();
    tls_files(gw, dir.path());
    let d = dir.path().display();
    let gw_port = gw.public.port();
    let up = upstream.addr;
    let config = format!(
        r#"
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    upstream gatehouse {{
        server 127.0.0.1:{gw_port};
        keepalive 8;
    }}

    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {APP_HOST};
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;

        location / {{
{snippet}
            proxy_pass http://{up};
        }}
{internal}
    }}
}}
"#,
        snippet = NGINX_PROTECT.replace("/etc/nginx/gatehouse-ca.pem", &format!("{d}/ca.pem")),
        internal = NGINX_LOCATIONS
            .replace("/etc/nginx/gatehouse-ca.pem", &format!("{d}/ca.pem"))
            .replace("gateway.example.com", "localhost"),
    );
    std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
    let mut command = Command::new(binary);
    command
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .arg("-e")
        .arg(dir.path().join("error.log"));
    let log = dir.path().join("stderr.log");
    Ingress::start(command, dir, port, log)
}

/// The lines of `deploy/nginx/gatehouse-forward-auth.conf` that go into each protected
/// `location`, and the two locations that go into the `server` block: the test runs the file
/// that users copy, not a copy of it.
fn deploy_part(marker: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/gatehouse-forward-auth.conf"),
    )
    .unwrap();
    let begin = format!("# BEGIN {marker}");
    let end = format!("# END {marker}");
    let start = text.find(&begin).unwrap_or_else(|| panic!("no {begin}")) + begin.len();
    let stop = text.find(&end).unwrap_or_else(|| panic!("no {end}"));
    text[start..stop].to_string()
}

static NGINX_PROTECT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| deploy_part("protect"));
static NGINX_LOCATIONS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| deploy_part("locations"));

/// Caddy with `forward_auth` to the gateway over TLS, as `deploy/caddy/Caddyfile` shows, in
/// front of `upstream`; the admin endpoint off and every state folder in the temp dir.
pub fn caddy(binary: &Path, port: u16, gw: &TestGateway, upstream: &Upstream) -> Ingress {
    let dir = tempfile::tempdir().unwrap();
    tls_files(gw, dir.path());
    let d = dir.path().display();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/caddy/Caddyfile"),
    )
    .unwrap();
    let config = text
        .replace(
            "# TEST-GLOBAL",
            &format!("admin off\n\tauto_https off\n\tstorage file_system {d}/data"),
        )
        .replace(
            "https://app.example.com",
            &format!("https://{APP_HOST}:{port}"),
        )
        .replace(
            "# TEST-SITE",
            &format!("bind 127.0.0.1\n\ttls {d}/cert.pem {d}/key.pem"),
        )
        .replace(
            "gateway.example.com:443",
            &format!("127.0.0.1:{}", gw.public.port()),
        )
        .replace(
            "tls_server_name gateway.example.com",
            "tls_server_name localhost",
        )
        .replace("/etc/caddy/gatehouse-ca.pem", &format!("{d}/ca.pem"))
        .replace("127.0.0.1:8090", &upstream.addr.to_string());
    std::fs::write(dir.path().join("Caddyfile"), config).unwrap();
    let mut command = Command::new(binary);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.path().join("Caddyfile"))
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"));
    let log = dir.path().join("stderr.log");
    Ingress::start(command, dir, port, log)
}
