//! `GET /oauth2/authorize` over real HTTPS (RFC 6749 §4.1, RFC 7636, RFC 8252 §7.3,
//! RFC 9207, SPEC §3.1): the error page that never redirects, exact redirect URI matching,
//! `state` and `iss` on every redirect, PKCE rules, scope capping, and the trip through
//! `/login` back to the same request.

use gatehouse::oauth::pkce::s256_challenge;
use gatehouse::store::secret_hash;

use crate::helpers::harness::{TestGateway, tokens};
use crate::helpers::login_support::*;

pub const VERIFIER: &str = "dBjftJeZ4CQP-mJ1OcgXWpl0mbt8zhqdqVJf6A7jQbx0123456789abc";

/// The query of an authorization request for `client_id` with `extra` parameters.
pub fn authorize_url(gw: &TestGateway, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut u = reqwest::Url::parse(&gw.url("/oauth2/authorize")).unwrap();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("client_id", client_id);
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// A normal request's parameters: code, the callback, WRITE, a state and an S256 challenge.
pub fn normal() -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("redirect_uri", CALLBACK.into()),
        ("scope", "WRITE".into()),
        ("state", "xyz-123".into()),
        ("code_challenge", s256_challenge(VERIFIER)),
        ("code_challenge_method", "S256".into()),
    ]
}

/// `normal()` with `name` replaced by `value` (or removed when `None`).
pub fn with(name: &str, value: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = normal()
        .into_iter()
        .filter(|(k, _)| *k != name)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    if let Some(v) = value {
        out.push((name.to_owned(), v.to_owned()));
    }
    out
}

/// GET the authorize endpoint as alice's browser session.
pub async fn get_as(
    gw: &TestGateway,
    cookie: &str,
    client_id: &str,
    params: &[(String, String)],
) -> reqwest::Response {
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    gw.client(true)
        .get(authorize_url(gw, client_id, &pairs))
        .header("cookie", format!("gatehouse_session={cookie}"))
        .send()
        .await
        .unwrap()
}

async fn setup(extra: &str) -> (TestGateway, String) {
    let gw = start(extra).await;
    create_app(&gw, "webapp", |_| {}).await;
    let cookie = tokens::session(&gw.gateway, "alice").await;
    (gw, cookie)
}

async fn assert_error_page(r: reqwest::Response, why: &str) -> String {
    assert_eq!(r.status(), 400, "{why}");
    assert!(
        r.headers().get("location").is_none(),
        "{why}: never redirects"
    );
    assert_page_headers(&r);
    let html = r.text().await.unwrap();
    assert!(html.contains("Authorization failed"), "{why}");
    html
}

/// The error an error redirect to the callback carries, after checking `state` and `iss`.
fn redirected_error(r: &reqwest::Response, state: Option<&str>) -> String {
    assert_eq!(r.status(), 303);
    let loc = location(r);
    assert!(loc.starts_with(CALLBACK), "{loc}");
    let q = query(&loc);
    assert_eq!(q.get("state").map(String::as_str), state, "{loc}");
    assert_eq!(q["iss"], "https://localhost", "{loc}");
    assert!(!q.contains_key("code"));
    q["error"].clone()
}

#[tokio::test]
async fn unknown_clients_and_unregistered_redirect_uris_get_an_error_page_never_a_redirect() {
    let (gw, cookie) = setup("").await;
    create_app(&gw, "dormant", |a| a.active = false).await;
    let html = assert_error_page(
        get_as(&gw, &cookie, "nobody", &with("x", None)).await,
        "unknown client",
    )
    .await;
    assert!(html.contains("<code>invalid_client</code>"), "{html}");
    let html = assert_error_page(
        get_as(&gw, &cookie, "dormant", &with("x", None)).await,
        "inactive client",
    )
    .await;
    assert!(html.contains("<code>invalid_client</code>"));
    let r = gw
        .client(true)
        .get(gw.url("/oauth2/authorize?response_type=code&redirect_uri=https%3A%2F%2Fclient.example.com%2Fcallback"))
        .send()
        .await
        .unwrap();
    assert_error_page(r, "missing client_id").await;
    for bad in [
        "https://client.example.com/callback/",
        "https://client.example.com/callbackx",
        "https://client.example.com/callback/../callback",
        "https://client.example.com/callback?x=1",
        "https://client.example.com/Callback",
        "https://CLIENT.example.com/callback",
        "https://client.example.com/callback#frag",
        "https://client.example.com:443/callback",
        "https://client.example.com.evil.com/callback",
        "https://evil.com/callback",
        "http://client.example.com/callback",
        "http://127.0.0.1.evil.com/native",
        "http://localhost/native",
    ] {
        let r = get_as(&gw, &cookie, "webapp", &with("redirect_uri", Some(bad))).await;
        assert_error_page(r, bad).await;
    }
    assert_error_page(
        get_as(&gw, &cookie, "webapp", &with("redirect_uri", None)).await,
        "no redirect_uri",
    )
    .await;
    // A repeated parameter cannot be trusted either.
    let mut repeated = with("x", None);
    repeated.push(("client_id".into(), "webapp".into()));
    assert_error_page(
        get_as(&gw, &cookie, "webapp", &repeated).await,
        "repeated client_id",
    )
    .await;
}

#[tokio::test]
async fn loopback_redirect_uris_may_use_any_port() {
    let (gw, cookie) = setup("").await;
    create_app(&gw, "native", |a| a.skip_consent = true).await;
    let r = get_as(
        &gw,
        &cookie,
        "native",
        &with("redirect_uri", Some("http://127.0.0.1:53127/native")),
    )
    .await;
    assert_eq!(r.status(), 303);
    let loc = location(&r);
    assert!(
        loc.starts_with("http://127.0.0.1:53127/native?code="),
        "{loc}"
    );
    let r = get_as(
        &gw,
        &cookie,
        "native",
        &with("redirect_uri", Some("http://127.0.0.1:53127/other")),
    )
    .await;
    assert_error_page(r, "another path on loopback").await;
}

#[tokio::test]
async fn every_redirect_carries_iss_and_the_state_when_one_was_sent() {
    let (gw, cookie) = setup("").await;
    create_app(&gw, "trusted", |a| a.skip_consent = true).await;
    let r = get_as(&gw, &cookie, "trusted", &with("x", None)).await;
    assert_eq!(r.status(), 303);
    let q = query(&location(&r));
    assert_eq!(q["state"], "xyz-123");
    assert_eq!(q["iss"], "https://localhost");
    let code = &q["code"];
    // ≥ 128 bits, stored only as its hash, bound to everything the request said.
    assert!(code.len() >= 43, "{code}");
    let stored = gw
        .gateway
        .store
        .get_code(&secret_hash(code))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.client_id, "trusted");
    assert_eq!(stored.user, "alice");
    assert_eq!(stored.redirect_uri, CALLBACK);
    assert_eq!(stored.scope, "WRITE");
    assert_eq!(
        stored.code_challenge.as_deref(),
        Some(s256_challenge(VERIFIER).as_str())
    );
    assert_eq!(stored.code_challenge_method.as_deref(), Some("S256"));
    assert_eq!(
        stored
            .expire_time
            .duration_since(stored.create_time)
            .unwrap()
            .as_secs(),
        60
    );
    // No state: still works, and none is invented.
    let r = get_as(&gw, &cookie, "trusted", &with("state", None)).await;
    let q = query(&location(&r));
    assert!(q.contains_key("code") && !q.contains_key("state"));
    assert_eq!(q["iss"], "https://localhost");
    // Errors too.
    let r = get_as(
        &gw,
        &cookie,
        "trusted",
        &with("response_type", Some("token")),
    )
    .await;
    assert_eq!(
        redirected_error(&r, Some("xyz-123")),
        "unsupported_response_type"
    );
    let r = get_as(&gw, &cookie, "trusted", &with("response_type", None)).await;
    assert_eq!(redirected_error(&r, Some("xyz-123")), "invalid_request");
    let mut no_state = with("response_type", Some("id_token"));
    no_state.retain(|(k, _)| k != "state");
    assert_eq!(
        redirected_error(&get_as(&gw, &cookie, "trusted", &no_state).await, None),
        "unsupported_response_type"
    );
}

#[tokio::test]
async fn pkce_rules_follow_the_config_and_the_client_type() {
    let (gw, cookie) = setup("").await;
    create_app(&gw, "spa", |a| {
        a.client_type = gatehouse::store::ClientType::Public;
        a.secret_hash = None;
        a.skip_consent = true;
    })
    .await;
    create_app(&gw, "backend", |a| a.skip_consent = true).await;
    let mut bare = with("code_challenge", None);
    bare.retain(|(k, _)| k != "code_challenge_method");
    let r = get_as(&gw, &cookie, "spa", &bare).await;
    assert_eq!(
        redirected_error(&r, Some("xyz-123")),
        "invalid_request",
        "public client without a challenge"
    );
    let r = get_as(&gw, &cookie, "backend", &bare).await;
    assert_eq!(r.status(), 303);
    assert!(
        query(&location(&r)).contains_key("code"),
        "PKCE is optional for confidential clients by default"
    );
    // plain (allowed by default), and the sha256 alias stored as S256.
    let mut plain = with("code_challenge", Some(VERIFIER));
    plain.retain(|(k, _)| k != "code_challenge_method");
    let r = get_as(&gw, &cookie, "spa", &plain).await;
    let code = query(&location(&r))["code"].clone();
    let stored = gw
        .gateway
        .store
        .get_code(&secret_hash(&code))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.code_challenge_method.as_deref(),
        Some("plain"),
        "no method means plain"
    );
    let r = get_as(
        &gw,
        &cookie,
        "spa",
        &with("code_challenge_method", Some("sha256")),
    )
    .await;
    let code = query(&location(&r))["code"].clone();
    let stored = gw
        .gateway
        .store
        .get_code(&secret_hash(&code))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.code_challenge_method.as_deref(), Some("S256"));
    for (name, value) in [
        ("code_challenge_method", "S512"),
        ("code_challenge", "too-short"),
        (
            "code_challenge",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA!",
        ),
    ] {
        let r = get_as(&gw, &cookie, "spa", &with(name, Some(value))).await;
        assert_eq!(
            redirected_error(&r, Some("xyz-123")),
            "invalid_request",
            "{name}={value}"
        );
    }
    let r = get_as(&gw, &cookie, "spa", &with("code_challenge", None)).await;
    assert_eq!(
        redirected_error(&r, Some("xyz-123")),
        "invalid_request",
        "a method without a challenge"
    );

    let (strict, cookie) = setup("allow_plain_pkce = false\nrequire_pkce = \"all\"\n").await;
    create_app(&strict, "backend", |a| a.skip_consent = true).await;
    let r = get_as(&strict, &cookie, "backend", &plain).await;
    assert_eq!(
        redirected_error(&r, Some("xyz-123")),
        "invalid_request",
        "plain refused"
    );
    let r = get_as(&strict, &cookie, "backend", &bare).await;
    assert_eq!(
        redirected_error(&r, Some("xyz-123")),
        "invalid_request",
        "require_pkce = all"
    );
    let r = get_as(&strict, &cookie, "backend", &with("x", None)).await;
    assert!(
        query(&location(&r)).contains_key("code"),
        "S256 still works"
    );
}

#[tokio::test]
async fn scopes_are_capped_by_user_and_app_and_unknown_ones_refused() {
    let (gw, cookie) = setup("").await;
    create_app(&gw, "trusted", |a| a.skip_consent = true).await;
    create_app(&gw, "reader", |a| {
        a.skip_consent = true;
        a.scopes = vec!["READ".into()];
    })
    .await;
    let scope_of = |r: &reqwest::Response| {
        let code = query(&location(r))["code"].clone();
        let gw = gw.gateway.clone();
        async move {
            gw.store
                .get_code(&secret_hash(&code))
                .await
                .unwrap()
                .unwrap()
                .scope
        }
    };
    let r = get_as(&gw, &cookie, "trusted", &with("scope", Some("ADMIN"))).await;
    assert_eq!(
        scope_of(&r).await,
        "WRITE",
        "alice (max WRITE) asking ADMIN gets WRITE"
    );
    let r = get_as(&gw, &cookie, "reader", &with("scope", Some("WRITE"))).await;
    assert_eq!(scope_of(&r).await, "READ", "the app may only ask READ");
    let root = tokens::session(&gw.gateway, "root").await;
    let r = get_as(&gw, &root, "trusted", &with("scope", Some("SYSTEM_ADMIN"))).await;
    assert_eq!(
        scope_of(&r).await,
        "ADMIN",
        "root is capped by the app's ADMIN"
    );
    for bad in ["READ BOGUS", "read", " "] {
        let r = get_as(&gw, &cookie, "trusted", &with("scope", Some(bad))).await;
        assert_eq!(
            redirected_error(&r, Some("xyz-123")),
            "invalid_scope",
            "{bad:?}"
        );
    }
    let r = get_as(&gw, &cookie, "trusted", &with("scope", None)).await;
    assert_eq!(
        redirected_error(&r, Some("xyz-123")),
        "invalid_scope",
        "a missing scope"
    );
    let custom = "[[scopes]]\nname = \"READ\"\ndescription = \"r\"\nimplies = []\n\n[[scopes]]\nname = \"AUDIT\"\ndescription = \"a\"\nimplies = []\n";
    let gw2 = TestGateway::start(
        "",
        &format!("{custom}\n[[users]]\nname = \"alice\"\npassword_hash = \"$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"\nmax_scope = \"READ\"\n"),
    )
    .await;
    create_app(&gw2, "auditor", |a| {
        a.skip_consent = true;
        a.scopes = vec!["AUDIT".into()];
    })
    .await;
    let c2 = tokens::session(&gw2.gateway, "alice").await;
    let r = get_as(&gw2, &c2, "auditor", &with("scope", Some("READ"))).await;
    assert_eq!(
        redirected_error(&r, Some("xyz-123")),
        "invalid_scope",
        "an empty intersection"
    );
}

#[tokio::test]
async fn without_a_session_the_browser_logs_in_and_comes_back_to_the_same_request() {
    let gw = start("").await;
    create_app(&gw, "webapp", |_| {}).await;
    let (client, _) = browser(&gw);
    let pairs: Vec<(&str, String)> = normal();
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = authorize_url(&gw, "webapp", &pairs);
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let to_login = location(&r);
    assert!(
        to_login.starts_with("/login?return_to=%2Foauth2%2Fauthorize")
            || to_login.starts_with("/login?return_to=/oauth2/authorize"),
        "{to_login}"
    );
    let return_to = query(&gw.url(&to_login))["return_to"].clone();
    let here = reqwest::Url::parse(&url).unwrap();
    assert_eq!(
        return_to,
        format!("{}?{}", here.path(), here.query().unwrap())
    );
    let r = login(&gw, &client, "alice", ALICE_PASSWORD, &return_to).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), return_to, "back to the very same request");
    let r = client.get(gw.url(&return_to)).send().await.unwrap();
    assert_eq!(r.status(), 200, "the consent page");
    let html = r.text().await.unwrap();
    assert!(html.contains("App webapp") && html.contains("alice"));
}
