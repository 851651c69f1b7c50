//! Shared fixture of the authorization-server tests (`oauth::*`): a gateway
//! with a bearer route in front of a recording upstream, a confidential and a public app in
//! its store, codes minted straight into the store as the authorize step would, and a small
//! form-posting client.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use gatehouse::oauth::pkce::s256_challenge;
use gatehouse::store::{App, ClientType, NewAuthCode, secret_hash};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{ConfigDir, TestGateway, USERS};

pub const CONF: &str = "conf-client";
pub const CONF_SECRET: &str = "conf-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
pub const PUBLIC: &str = "public-client";
pub const OTHER: &str = "other-client";
pub const OTHER_SECRET: &str = "other-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
pub const CALLBACK: &str = "https://client.example.com/callback";
pub const ORIGIN: &str = "https://client.example.com";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mJ0kBmC7r1tzcV0Tc6g8dbW1OXlq9WzQwErTy";

pub struct Fx {
    pub gw: TestGateway,
    pub up: Upstream,
}

/// How a request authenticates its client.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
    Public(&'a str),
    Nothing,
}

/// A response, read whole.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The JSON field `name` as a string (panics with the body when absent).
    pub fn field(&self, name: &str) -> String {
        self.json()[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {} {}", self.status, self.text))
            .to_owned()
    }
}

impl Fx {
    /// A gateway with `oauth_extra` appended to `[oauth]`, the apps, and a bearer route.
    pub async fn start(oauth_extra: &str) -> Self {
        Self::start_with("", oauth_extra).await
    }

    /// [`Fx::start`] with `server_extra` in `[server]` (e.g. `trusted_proxies`).
    pub async fn start_with(server_extra: &str, oauth_extra: &str) -> Self {
        let fx = Self::start_in(ConfigDir::new(), server_extra, oauth_extra).await;
        create_apps(&fx.gw.gateway.store).await;
        fx
    }

    /// A gateway in `dir` without creating the apps (a replica of a shared store).
    async fn start_in(dir: ConfigDir, server_extra: &str, oauth_extra: &str) -> Self {
        let up = Upstream::start().await;
        let extra = format!(
            "{oauth_extra}\n{USERS}\n[[routes]]\npath = \"/rest/api\"\nupstream = \"http://{}\"\nauth = \"bearer\"\nscopes = {{ GET = \"READ\", \"*\" = \"WRITE\" }}\n",
            up.addr
        );
        let gw = TestGateway::start_in(dir, server_extra, &extra).await;
        Self { gw, up }
    }

    /// Two replicas sharing a fresh PostgreSQL database and the signing key; `None` (the
    /// test is skipped with a note) without PostgreSQL.
    pub async fn replicas(test: &str) -> Option<(Self, Self, crate::helpers::support::TestDb)> {
        let db = crate::helpers::support::TestDb::postgres(test).await?;
        let store = format!("[store]\nurl = \"{}\"\n", db.url);
        let first_dir = ConfigDir::new();
        let second_dir = ConfigDir::sharing_keys_with(&first_dir);
        let one = Self::start_in(first_dir, "", &store).await;
        create_apps(&one.gw.gateway.store).await;
        let two = Self::start_in(second_dir, "", &store).await;
        Some((one, two, db))
    }

    pub fn gateway(&self) -> &gatehouse::server::Gateway {
        &self.gw.gateway
    }

    pub fn advance(&self, by: Duration) {
        self.gw.gateway.clock.advance(by);
    }

    /// Stores a code for `client_id` (alice, `scope`), S256-bound to [`VERIFIER`] when
    /// `pkce`; returns the code.
    pub async fn code(&self, client_id: &str, scope: &str, pkce: bool) -> String {
        self.code_with(
            client_id,
            scope,
            pkce.then(|| (s256_challenge(VERIFIER), "S256")),
        )
        .await
    }

    pub async fn code_with(
        &self,
        client_id: &str,
        scope: &str,
        challenge: Option<(String, &str)>,
    ) -> String {
        let code = gatehouse::auth::secret::new_authorization_code().unwrap();
        let now = self.gateway().clock.now();
        let (code_challenge, method) = match challenge {
            Some((c, m)) => (Some(c), Some(m.to_owned())),
            None => (None, None),
        };
        self.gateway()
            .store
            .create_code(&NewAuthCode {
                hash: secret_hash(code.expose()),
                client_id: client_id.into(),
                user: "alice".into(),
                redirect_uri: CALLBACK.into(),
                scope: scope.into(),
                code_challenge,
                code_challenge_method: method,
                create_time: now,
                expire_time: now + Duration::from_secs(60),
            })
            .await
            .unwrap();
        code.expose().to_owned()
    }

    /// POSTs `form` to `path` with `auth`, reading the whole answer.
    pub async fn post(&self, path: &str, form: &[(&str, &str)], auth: Auth<'_>) -> Answer {
        self.post_with(path, "", form, auth, &[]).await
    }

    /// POSTs with a query string and extra headers too.
    pub async fn post_with(
        &self,
        path: &str,
        query: &str,
        form: &[(&str, &str)],
        auth: Auth<'_>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut form: Vec<(&str, &str)> = form.to_vec();
        let url = if query.is_empty() {
            self.gw.url(path)
        } else {
            format!("{}?{query}", self.gw.url(path))
        };
        let mut req = self.gw.client(true).post(url);
        match auth {
            Auth::Basic(id, secret) => req = req.basic_auth(id, Some(secret)),
            Auth::Post(id, secret) => {
                form.push(("client_id", id));
                form.push(("client_secret", secret));
            }
            Auth::Public(id) => form.push(("client_id", id)),
            Auth::Nothing => {}
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = form_body(&form);
        let r = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        Answer {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            text: r.text().await.unwrap(),
        }
    }

    /// Redeems `code` for the confidential app with [`VERIFIER`].
    pub async fn redeem(&self, code: &str) -> Answer {
        self.redeem_with_secret(code, CONF_SECRET).await
    }

    /// [`Self::redeem`] with `secret` as the confidential client's password.
    pub async fn redeem_with_secret(&self, code: &str, secret: &str) -> Answer {
        self.post(
            "/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
            ],
            Auth::Basic(CONF, secret),
        )
        .await
    }

    /// A fresh token pair for the confidential app (`scope` for alice).
    pub async fn tokens(&self, scope: &str) -> Answer {
        let code = self.code(CONF, scope, true).await;
        let a = self.redeem(&code).await;
        assert_eq!(a.status, 200, "{}", a.text);
        a
    }

    /// Refreshes `refresh` for the confidential app, optionally with `scope`.
    pub async fn refresh(&self, refresh: &str, scope: Option<&str>) -> Answer {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh)];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        self.post("/oauth2/token", &form, Auth::Basic(CONF, CONF_SECRET))
            .await
    }

    /// The status of a proxied GET with `token`.
    pub async fn proxied(&self, token: &str) -> u16 {
        self.gw
            .client(true)
            .get(self.gw.url("/rest/api/content"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

async fn create_apps(store: &gatehouse::store::Store) {
    store
        .create_app(&app(CONF, Some(CONF_SECRET)))
        .await
        .unwrap();
    store.create_app(&app(PUBLIC, None)).await.unwrap();
    store
        .create_app(&app(OTHER, Some(OTHER_SECRET)))
        .await
        .unwrap();
}

/// An app for the fixture: confidential with `secret`, or public without.
pub fn app(client_id: &str, secret: Option<&str>) -> App {
    let mut app = crate::store::lifecycle::app(client_id, secret.unwrap_or("unused"));
    app.create_time = std::time::SystemTime::now();
    app.update_time = app.create_time;
    if secret.is_none() {
        app.client_type = ClientType::Public;
        app.secret_hash = None;
    }
    app.scopes = vec!["READ".into(), "WRITE".into(), "ADMIN".into()];
    app
}

/// `application/x-www-form-urlencoded` of `pairs`, in order (repeated names kept, for the tests
/// that need them).
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The claims of a JWT, unverified (tests check them after the gateway verified the token).
pub fn claims(jwt: &str) -> Value {
    serde_json::from_slice(&B64.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}
