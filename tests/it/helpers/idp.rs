//! The identity provider the federation tests meet: panva's oidc-provider run by node from
//! `tests/oidc-provider/provider.mjs` (installed with `npm ci` there), serving HTTPS on port 0
//! with a certificate of the test's own CA. Without node or node_modules the tests print a note
//! and skip, unless `GATEHOUSE_REQUIRE_IDP=1` (CI) makes that a failure.
//!
//! Config: the JSON described at the top of provider.mjs (`cert`/`key` are filled in here).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::harness::TestPki;

/// True when CI demands the provider (`GATEHOUSE_REQUIRE_IDP=1`): missing means failure.
pub fn required() -> bool {
    std::env::var("GATEHOUSE_REQUIRE_IDP").is_ok_and(|v| v == "1")
}

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// Why the provider cannot run here, if it cannot.
fn missing() -> Option<String> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("node is not installed".into());
    }
    if !provider_dir()
        .join("node_modules/oidc-provider/package.json")
        .exists()
    {
        return Some("tests/oidc-provider/node_modules is missing (run `npm ci` there)".into());
    }
    None
}

/// A running provider; killed when dropped.
#[allow(dead_code)] // each test module uses part of it
pub struct Idp {
    child: Option<tokio::process::Child>,
    pub issuer: String,
    pub port: u16,
    /// The PEM of the CA that signed the provider's certificate (the gateway's `ca`).
    pub ca_path: PathBuf,
    /// An HTTP client that trusts the provider, keeps cookies and follows no redirects.
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Starts a provider with `config`, or prints why it cannot and returns `None` (panics
/// instead when `GATEHOUSE_REQUIRE_IDP=1`).
pub async fn start_or_skip(pki: &TestPki, config: Value, what: &str) -> Option<Idp> {
    if let Some(why) = missing() {
        if required() {
            panic!("GATEHOUSE_REQUIRE_IDP=1 but the test identity provider cannot run: {why}");
        }
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "note: skipping {what}: {why}; set GATEHOUSE_REQUIRE_IDP=1 to fail instead"
        );
        return None;
    }
    Some(Idp::start(pki, config).await)
}

#[allow(dead_code)] // each test module uses part of it
impl Idp {
    /// Starts the provider with `config` and a certificate for 127.0.0.1 from `pki`'s CA.
    pub async fn start(pki: &TestPki, mut config: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("idp-cert.pem");
        let key = dir.path().join("idp-key.pem");
        let ca_path = dir.path().join("idp-ca.pem");
        std::fs::write(&cert, &pki.server_cert_pem).unwrap();
        std::fs::write(&key, &pki.server_key_pem).unwrap();
        std::fs::write(&ca_path, &pki.ca_pem).unwrap();
        config["cert"] = json!(cert);
        config["key"] = json!(key);
        let config_path = dir.path().join("idp.json");
        std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
        // A node start that prints nothing for 30 s is killed and tried again: on a loaded
        // 2-core machine a start was seen to hang (never reproduced alone), and a second
        // process starts in well under a second.
        let mut attempt = 0;
        let (child, mut lines, first) = loop {
            attempt += 1;
            let mut child = tokio::process::Command::new("node")
                .arg(provider_dir().join("provider.mjs"))
                .arg(&config_path)
                .current_dir(provider_dir())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("start node");
            let stdout = child.stdout.take().unwrap();
            let mut lines = BufReader::new(stdout).lines();
            match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
                Ok(first) => {
                    let first = first
                        .unwrap()
                        .expect("the provider exited before listening");
                    break (child, lines, first);
                }
                Err(_) if attempt < 3 => {
                    let state = child.try_wait();
                    let _ = child.kill().await;
                    eprintln!(
                        "note: the test identity provider printed nothing in 30 s ({state:?}); starting it again"
                    );
                }
                Err(_) => panic!("the provider did not start in 3 attempts of 30 s"),
            }
        };
        let ready: Value = serde_json::from_str(&first).unwrap();
        // Keep reading: a closed pipe would kill the provider at its next write.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            child: Some(child),
            issuer: ready["issuer"].as_str().unwrap().to_string(),
            port: u16::try_from(ready["port"].as_u64().unwrap()).unwrap(),
            ca_path,
            http,
            _dir: dir,
        }
    }

    /// Stops the provider now (the "issuer is down" case); its port stays closed.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// A client-credentials token response for `resource` (RFC 8707) and `scope`.
    pub async fn client_credentials(
        &self,
        client_id: &str,
        secret: &str,
        resource: &str,
        scope: &str,
    ) -> Value {
        let response = self
            .http
            .post(self.url("/token"))
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "client_credentials: {status} {body}");
        body
    }

    /// Signs `user` in at the provider's login form, starting from an authorization URL (the
    /// provider's, as a relying party redirected to it), and returns the URL the provider
    /// redirects back to (`redirect_uri?code=…&state=…&iss=…`).
    pub async fn sign_in(
        &self,
        http: &reqwest::Client,
        authorize_url: &str,
        user: &str,
        password: &str,
    ) -> String {
        let to_login = location(http.get(authorize_url).send().await.unwrap());
        let page = http.get(&to_login).send().await.unwrap();
        assert_eq!(page.status(), 200, "login page {to_login}");
        let after_login = location(
            http.post(format!("{to_login}/login"))
                .form(&[("login", user), ("password", password)])
                .send()
                .await
                .unwrap(),
        );
        location(http.get(&after_login).send().await.unwrap())
    }

    /// The authorization-code flow with PKCE for `user` through the provider's own login form;
    /// returns the token response (access token for `resource`, ID token, …).
    #[allow(clippy::too_many_arguments)]
    pub async fn user_tokens(
        &self,
        client_id: &str,
        secret: &str,
        redirect_uri: &str,
        user: &str,
        password: &str,
        resource: &str,
        scope: &str,
    ) -> Value {
        let verifier = format!("v{}", uuid::Uuid::new_v4().simple()).repeat(2);
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        let mut authorize = url::Url::parse(&self.url("/auth")).unwrap();
        authorize
            .query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scope)
            .append_pair("resource", resource)
            .append_pair("state", "test-state")
            .append_pair("nonce", "test-nonce")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let back = self
            .sign_in(&self.http, authorize.as_str(), user, password)
            .await;
        let back = url::Url::parse(&back).unwrap();
        let code = back
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {back}"));
        let response = self
            .http
            .post(self.url("/token"))
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", &verifier),
                ("resource", resource),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "authorization_code: {status} {body}");
        body
    }

    /// New signing keys (new kids) sign from now on; the old ones stay published.
    pub async fn rotate(&self) -> Vec<String> {
        let body: Value = self
            .http
            .post(self.url("/__test/rotate"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["kids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }

    /// Requests the provider has served: `jwks_requests`, `introspections`, `token_requests`.
    pub async fn stats(&self) -> Value {
        self.http
            .get(self.url("/__test/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The redirect's target, made absolute against the request's URL.
fn location(response: reqwest::Response) -> String {
    let status = response.status();
    assert!(
        status.is_redirection(),
        "expected a redirect from {}, got {status}",
        response.url()
    );
    let target = response.headers()["location"].to_str().unwrap();
    response.url().join(target).unwrap().to_string()
}
