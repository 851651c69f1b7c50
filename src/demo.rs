//! `gatehouse demo` (SPEC §1): a zero-setup gateway on 127.0.0.1 with a self-signed
//! certificate, a fresh signing key, a throwaway SQLite store, a demo user and an admin, and
//! the built-in Confluence-style sample backend; it prints the steps to try, ready to paste.

pub mod backend;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::App;
use crate::auth::password::hash_password;
use crate::auth::secret::{new_id, new_personal_access_token};
use crate::config::Config;
use crate::store::{PersonalToken, secret_hash};

/// Where the demo listens.
#[derive(Clone, Copy, Debug)]
pub struct DemoOptions {
    /// Public HTTPS port on 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// Admin port on 127.0.0.1 (0 picks a free one).
    pub admin_port: u16,
}

/// Everything the demo made, for printing and for tests.
pub struct Demo {
    pub app: App,
    pub dir: tempfile::TempDir,
    pub public_url: String,
    pub admin_pat: String,
    pub demo_password: String,
    pub admin_password: String,
    pub backend: SocketAddr,
}

/// A demo failed to start; the message says why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(String);

fn err(what: &str) -> impl Fn(&dyn std::fmt::Display) -> DemoError + '_ {
    move |e| DemoError(format!("{what}: {e}"))
}

fn free_port() -> Result<u16, DemoError> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| err("finding a free port")(&e))?;
    Ok(l.local_addr()
        .map_err(|e| err("finding a free port")(&e))?
        .port())
}

/// Builds the demo: files in a temp folder, the backend started, the gateway bound, a PAT.
pub async fn build(options: DemoOptions) -> Result<Demo, DemoError> {
    let dir = tempfile::tempdir().map_err(|e| err("creating the demo folder")(&e))?;
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| err("making the certificate")(&e))?;
    write(dir.path(), "cert.pem", &cert.cert.pem())?;
    write(dir.path(), "key.pem", &cert.signing_key.serialize_pem())?;
    let signing =
        crate::auth::keys::generate_pem().map_err(|e| err("making the signing key")(&e))?;
    write(dir.path(), "signing.pem", signing.expose())?;
    let demo_password = password()?;
    let admin_password = password()?;
    let demo_hash = hash_password(&demo_password).map_err(|e| err("hashing a password")(&e))?;
    let admin_hash = hash_password(&admin_password).map_err(|e| err("hashing a password")(&e))?;
    let backend = backend::start()
        .await
        .map_err(|e| err("starting the sample backend")(&e))?;
    let port = if options.port == 0 {
        free_port()?
    } else {
        options.port
    };
    let admin_port = if options.admin_port == 0 {
        free_port()?
    } else {
        options.admin_port
    };
    let public_url = format!("https://localhost:{port}");
    let config_text = format!(
        r#"# Written by `gatehouse demo`; deleted when it stops.
[server]
listen = "127.0.0.1:{port}"
public_url = "{public_url}"
shutdown_grace = "5s"
[server.tls]
cert = "cert.pem"
key = "key.pem"
[admin]
listen = "127.0.0.1:{admin_port}"
[store]
url = "sqlite://gatehouse.db"
[oauth]
signing_keys = ["signing.pem"]
[[users]]
name = "demo"
password_hash = "{demo_hash}"
max_scope = "WRITE"
[[users]]
name = "admin"
password_hash = "{admin_hash}"
max_scope = "SYSTEM_ADMIN"
[[routes]]
path = "/rest/api"
upstream = "http://{backend}"
auth = "bearer"
scopes = {{ GET = "READ", HEAD = "READ", "*" = "WRITE" }}
[[routes]]
path = "/rest/admin"
upstream = "http://{backend}"
auth = "bearer"
scope = "ADMIN"
"#
    );
    let config_path = dir.path().join("gatehouse.toml");
    write(dir.path(), "gatehouse.toml", &config_text)?;
    let config =
        Config::load_without_overrides(&config_path).map_err(|e| err("the demo config")(&e))?;
    let app = App::build(config).await.map_err(|e| {
        DemoError(format!(
            "{e} (is another program on port {port} or {admin_port}? try `gatehouse demo --port 0`)"
        ))
    })?;
    let admin_pat = mint_admin_pat(&app).await?;
    Ok(Demo {
        app,
        dir,
        public_url,
        admin_pat,
        demo_password,
        admin_password,
        backend,
    })
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), DemoError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| err(&format!("writing {}", path.display()))(&e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

fn password() -> Result<String, DemoError> {
    let id = new_id().map_err(|e| err("random password")(&e))?;
    Ok(id.chars().take(16).collect())
}

async fn mint_admin_pat(app: &App) -> Result<String, DemoError> {
    let gateway = app.gateway();
    let token = new_personal_access_token().map_err(|e| err("making the admin token")(&e))?;
    let now = gateway.clock.now();
    let pat = PersonalToken {
        id: new_id().map_err(|e| err("making the admin token")(&e))?,
        user: "admin".into(),
        display_name: "gatehouse demo".into(),
        scope: "ADMIN".into(),
        token_hash: secret_hash(token.expose()),
        create_time: now,
        expire_time: now + Duration::from_secs(7 * 86_400),
        last_used_time: None,
    };
    gateway
        .store
        .create_pat(&pat)
        .await
        .map_err(|e| err("storing the admin token")(&e))?;
    Ok(token.expose().to_string())
}

impl Demo {
    /// The walkthrough printed at start: shell lines to paste, in order.
    pub fn instructions(&self) -> String {
        let cert = self.dir.path().join("cert.pem");
        let url = &self.public_url;
        let admin = self.app.admin_addr();
        let callback = "http://127.0.0.1:8976/callback";
        let mut out = String::new();
        let _ = writeln!(
            out,
            "gatehouse demo is running: {url}  (admin: http://{admin}/metrics)"
        );
        let _ = writeln!(
            out,
            "sample backend (Confluence-style content API): http://{}",
            self.backend
        );
        let _ = writeln!(
            out,
            "users: demo / {} (max WRITE), admin / {} (max SYSTEM_ADMIN)",
            self.demo_password, self.admin_password
        );
        let _ = writeln!(
            out,
            "Ctrl-C stops everything and deletes the demo folder.\n"
        );
        let _ = writeln!(
            out,
            "Paste the lines below into a second shell: this one is running the demo.\n"
        );
        let _ = writeln!(
            out,
            "# 0. Shell variables (the admin's personal access token, scope ADMIN):"
        );
        let _ = writeln!(
            out,
            "export GH={url} CACERT={} PAT={}",
            cert.display(),
            self.admin_pat
        );
        let _ = writeln!(
            out,
            "\n# 1. Read content through the gateway with the PAT (the backend shows who it was told about):"
        );
        let _ = writeln!(
            out,
            "curl -s --cacert \"$CACERT\" -H \"Authorization: Bearer $PAT\" \"$GH/rest/api/content\""
        );
        let _ = writeln!(
            out,
            "\n# 2. Register an OAuth app (note clientId and clientSecret in the answer):"
        );
        let body = format!(
            r#"{{"displayName":"Demo app","allowedCallbackUrls":["{callback}"],"scopes":["READ","WRITE"]}}"#
        );
        let _ = writeln!(
            out,
            "curl -s --cacert \"$CACERT\" -H \"Authorization: Bearer $PAT\" -H 'Content-Type: application/json' -d '{body}' \"$GH/v1/oauthApps\""
        );
        let _ = writeln!(
            out,
            "export CLIENT_ID=<clientId> CLIENT_SECRET=<clientSecret>"
        );
        let _ = writeln!(
            out,
            "\n# 3. Authorize. In a browser: open $AUTHZ (accept the self-signed certificate), sign in as"
        );
        let _ = writeln!(
            out,
            "#    demo, approve; the browser lands on {callback}?code=... (nothing listens there: copy the code)."
        );
        let _ = writeln!(
            out,
            "export AUTHZ=\"$GH/oauth2/authorize?response_type=code&client_id=$CLIENT_ID&redirect_uri={}&scope=WRITE&state=xyz\"; echo \"$AUTHZ\"",
            crate::ui::return_to::percent_encode(callback).replace('/', "%2F")
        );
        let _ = writeln!(
            out,
            "#    Or without a browser, as admin with the PAT: fetch the consent page, post Approve, print where it redirects:"
        );
        let _ = writeln!(
            out,
            "PAGE=$(curl -s --cacert \"$CACERT\" -H \"Authorization: Bearer $PAT\" \"$AUTHZ\")"
        );
        let _ = writeln!(
            out,
            "curl -s --cacert \"$CACERT\" -o /dev/null -w '%{{redirect_url}}\\n' -H \"Authorization: Bearer $PAT\" -d decision=approve --data-urlencode \"consent_id=$(printf %s \"$PAGE\" | sed -n 's/.*name=\"consent_id\" value=\"\\([^\"]*\\)\".*/\\1/p')\" --data-urlencode \"csrf_token=$(printf %s \"$PAGE\" | sed -n 's/.*name=\"csrf_token\" value=\"\\([^\"]*\\)\".*/\\1/p')\" \"$GH/oauth2/authorize\""
        );
        let _ = writeln!(
            out,
            "#    A code lives 60 s (oauth.code_ttl) and works once: exchange it (step 4) within the minute."
        );
        let _ = writeln!(out, "export CODE=<code>");
        let _ = writeln!(out, "\n# 4. Exchange the code for tokens:");
        let _ = writeln!(
            out,
            "curl -s --cacert \"$CACERT\" -u \"$CLIENT_ID:$CLIENT_SECRET\" -d grant_type=authorization_code -d \"code=$CODE\" --data-urlencode 'redirect_uri={callback}' \"$GH/oauth2/token\""
        );
        let _ = writeln!(out, "export TOKEN=<access_token>");
        let _ = writeln!(out, "\n# 5. Read and write content with the app's token:");
        let _ = writeln!(
            out,
            "curl -s --cacert \"$CACERT\" -H \"Authorization: Bearer $TOKEN\" \"$GH/rest/api/content\""
        );
        let _ = writeln!(
            out,
            "curl -s --cacert \"$CACERT\" -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{{\"title\":\"Hello\",\"body\":\"from the demo\"}}' \"$GH/rest/api/content\""
        );
        out
    }
}
