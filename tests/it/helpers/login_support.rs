//! Shared pieces of the login, authorize and browser tests: users with real argon2id hashes,
//! a browser-like client whose cookie jar a test can plant cookies in, apps in the store,
//! and reading hidden form fields and redirect parameters.

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse::auth::password::{HashParams, hash_password_with};
use gatehouse::store::App;
use reqwest::cookie::Jar;

use crate::helpers::harness::TestGateway;

pub const ALICE_PASSWORD: &str = "correct horse battery staple";
pub const ROOT_PASSWORD: &str = "root-password-1";
pub const CALLBACK: &str = "https://client.example.com/callback";

/// Cheap argon2id parameters: the tests count verifications instead of timing them.
const CHEAP: HashParams = HashParams {
    m_cost: 256,
    t_cost: 1,
    p_cost: 1,
};

/// alice (max WRITE) and root (max SYSTEM_ADMIN) with real password hashes.
pub fn users() -> String {
    let alice = hash_password_with(ALICE_PASSWORD, CHEAP).unwrap();
    let root = hash_password_with(ROOT_PASSWORD, CHEAP).unwrap();
    format!(
        "[[users]]\nname = \"alice\"\npassword_hash = \"{alice}\"\nmax_scope = \"WRITE\"\n\n\
         [[users]]\nname = \"root\"\npassword_hash = \"{root}\"\nmax_scope = \"SYSTEM_ADMIN\"\n"
    )
}

/// A gateway with [`users`] and `extra` config (bare keys at its start land in `[oauth]`).
pub async fn start(extra: &str) -> TestGateway {
    TestGateway::start("", &format!("{extra}\n{}", users())).await
}

/// A client like `gw.client`, whose cookie jar the test holds.
pub fn browser(gw: &TestGateway) -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let ca = reqwest::Certificate::from_pem(gw.dir.pki.ca_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve("localhost", gw.public)
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .http1_only()
        .build()
        .unwrap();
    (client, jar)
}

/// The value of hidden input `name` in a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// Opens the login page (optionally with `return_to`) and returns its CSRF token.
pub async fn login_form(gw: &TestGateway, client: &reqwest::Client, return_to: &str) -> String {
    let url = if return_to.is_empty() {
        gw.url("/login")
    } else {
        let mut u = reqwest::Url::parse(&gw.url("/login")).unwrap();
        u.query_pairs_mut().append_pair("return_to", return_to);
        u.to_string()
    };
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    hidden(&r.text().await.unwrap(), "csrf_token")
}

/// Posts the login form.
pub async fn post_login(
    gw: &TestGateway,
    client: &reqwest::Client,
    csrf: &str,
    user: &str,
    password: &str,
    return_to: &str,
) -> reqwest::Response {
    client
        .post(gw.url("/login"))
        .form(&[
            ("csrf_token", csrf),
            ("username", user),
            ("password", password),
            ("return_to", return_to),
        ])
        .send()
        .await
        .unwrap()
}

/// Opens the form and signs in; the response is the POST's.
pub async fn login(
    gw: &TestGateway,
    client: &reqwest::Client,
    user: &str,
    password: &str,
    return_to: &str,
) -> reqwest::Response {
    let csrf = login_form(gw, client, return_to).await;
    post_login(gw, client, &csrf, user, password, return_to).await
}

/// Creates an app in the store (as the management API would), after `edit`.
pub async fn create_app(gw: &TestGateway, client_id: &str, edit: impl FnOnce(&mut App)) -> App {
    let mut app = crate::store::lifecycle::app(client_id, "a-client-secret-of-enough-length");
    app.scopes = vec!["READ".into(), "WRITE".into(), "ADMIN".into()];
    app.allowed_callback_urls = vec![CALLBACK.into(), "http://127.0.0.1/native".into()];
    edit(&mut app);
    gw.gateway.store.create_app(&app).await.unwrap();
    app
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location ({})", r.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The query parameters of a URL.
pub fn query(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The `Set-Cookie` headers of a response.
pub fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The value a `Set-Cookie` list gives cookie `name`.
pub fn cookie_value(set: &[String], name: &str) -> Option<String> {
    set.iter()
        .filter_map(|c| c.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

/// Checks the headers every gatehouse page carries.
pub fn assert_page_headers(r: &reqwest::Response) {
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("form-action 'self'"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
}
