//! Sign-in through an OpenID Connect provider (SPEC §7.1) over the real listener, with a
//! browser-like client (a cookie jar, redirects followed one by one): through the real
//! `oidc-provider`, a login that reaches a `session` route as the federated user, consent and
//! tokens for that user, `allowed_groups`; the callback's attacks — a tampered `state`, a
//! replayed callback, a mix-up of issuers — and, through the test's own hostile provider
//! (`hostile.rs`), every ID token a real provider never makes: another audience, another
//! nonce, another issuer, expired, `alg: none`, HS256 keyed with the public key. Each is
//! refused with the one generic message, and the log and the metric say why.

use std::sync::Arc;

use reqwest::cookie::Jar;

use super::hostile::{Forge, Hostile};
use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{ConfigDir, TestGateway, metric_value, poll_until};
use crate::helpers::idp::{self, Idp};
use crate::helpers::login_support::{CALLBACK, create_app, hidden, location, query, set_cookies};
use crate::oauth::authorize::{VERIFIER, authorize_url};

/// The generic message of every failed sign-in (`ui::provider_login::FAILED`).
const FAILED: &str = "Signing in through your identity provider did not work.";

/// A browser: a cookie jar, no automatic redirects, trusting the test CA, `localhost` being the
/// gateway (the provider is reached by its IP address).
fn browser(gw: &TestGateway) -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let ca = reqwest::Certificate::from_pem(gw.dir.pki.ca_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve("localhost", gw.public)
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    (client, jar)
}

/// `url` with the gateway's port when it points at the gateway (`public_url` has none).
fn at_gateway(gw: &TestGateway, url: &str) -> String {
    let mut u = reqwest::Url::parse(url).unwrap();
    if u.host_str() == Some("localhost") && u.port().is_none() {
        u.set_port(Some(gw.public.port())).unwrap();
    }
    u.to_string()
}

/// A gateway with the hostile provider `evil` (trusting the test CA), a `session` route at
/// `/wiki` to a recording upstream, and a config user `alice`.
async fn with_hostile() -> (TestGateway, Hostile, Upstream) {
    let dir = ConfigDir::new();
    let evil = Hostile::start(dir.pki.upstream_tls(), "gatehouse").await;
    let upstream = Upstream::start().await;
    let extra = format!(
        r#"
[[users]]
name = "alice"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
max_scope = "WRITE"

[[identity_providers]]
name = "evil"
display_name = "Evil SSO"
issuer = "{issuer}"
client_id = "gatehouse"
client_secret = "evil-client-secret"
ca = "ca.pem"
group_scopes = {{ "wiki-admins" = "ADMIN" }}

[[routes]]
path = "/wiki"
upstream = "http://{up}"
auth = "session"
scope = "READ"
"#,
        issuer = evil.issuer,
        up = upstream.addr,
    );
    let gw = TestGateway::start_in(dir, "", &extra).await;
    wait_discovered(&gw, "evil").await;
    (gw, evil, upstream)
}

/// Waits until the provider's button leads to the provider (its discovery is done).
async fn wait_discovered(gw: &TestGateway, provider: &str) {
    let client = gw.client(true);
    let url = gw.url(&format!("/login/{provider}"));
    poll_until(std::time::Duration::from_secs(20), || async {
        client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 303)
    })
    .await;
}

/// Clicks "Sign in with …" (to `return_to`) and follows the provider's redirect back: the
/// callback's response, and the callback URL it answered.
async fn hostile_sign_in(
    gw: &TestGateway,
    client: &reqwest::Client,
    return_to: &str,
) -> (reqwest::Response, String) {
    let start = client
        .get(gw.url(&format!("/login/evil?return_to={return_to}")))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303);
    let at_provider = client.get(location(&start)).send().await.unwrap();
    assert_eq!(at_provider.status(), 303);
    let callback = at_gateway(gw, &location(&at_provider));
    (client.get(&callback).send().await.unwrap(), callback)
}

async fn logins(gw: &TestGateway, provider: &str, result: &str) -> f64 {
    let prefix =
        format!("gatehouse_idp_logins_total{{provider=\"{provider}\",result=\"{result}\"}}");
    metric_value(&gw.metrics().await, &prefix).unwrap_or_else(|| panic!("no {prefix}"))
}

/// A refused callback: the login page with the one message, no session, the flow cookie
/// cleared, and `result` counted.
async fn assert_refused(gw: &TestGateway, response: reqwest::Response, result: &str) {
    assert_eq!(response.status(), 401);
    let cookies = set_cookies(&response);
    assert!(
        !cookies.iter().any(|c| c.starts_with("gatehouse_session=")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("gatehouse_idp=;") && c.contains("Max-Age=0")),
        "{cookies:?}"
    );
    let html = response.text().await.unwrap();
    assert!(html.contains(FAILED), "{html}");
    assert!(html.contains("Sign in with Evil SSO"), "{html}");
    assert_eq!(logins(gw, "evil", result).await, 1.0, "{result}");
    assert_eq!(logins(gw, "evil", "success").await, 0.0);
}

/// The control: this provider, answering as a correct one, signs people in — so each refusal
/// below is about the one defect of its token.
#[tokio::test]
async fn an_honest_answer_of_the_test_provider_signs_in() {
    let (gw, _evil, upstream) = with_hostile().await;
    let (client, _) = browser(&gw);
    let (r, _) = hostile_sign_in(&gw, &client, "/wiki/page").await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(location(&r), "/wiki/page");
    let page = client.get(gw.url("/wiki/page")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.headers["x-auth-user"], "mallory");
    assert_eq!(seen.headers["x-auth-scopes"], "READ WRITE ADMIN");
    assert_eq!(logins(&gw, "evil", "success").await, 1.0);
}

async fn refused_with(forge: Forge, result: &str) {
    let (gw, evil, upstream) = with_hostile().await;
    evil.forge(forge);
    let (client, _) = browser(&gw);
    let (r, _) = hostile_sign_in(&gw, &client, "/wiki/page").await;
    assert_refused(&gw, r, result).await;
    let page = client
        .get(gw.url("/wiki/page"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303, "not signed in: sent to /login");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    refused_with(Forge::OtherAudience, "invalid_token").await;
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused() {
    refused_with(Forge::WrongNonce, "invalid_token").await;
}

#[tokio::test]
async fn an_id_token_of_another_issuer_is_refused() {
    refused_with(Forge::OtherIssuer, "invalid_token").await;
}

#[tokio::test]
async fn an_expired_id_token_is_refused() {
    refused_with(Forge::Expired, "invalid_token").await;
}

#[tokio::test]
async fn an_unsigned_alg_none_id_token_is_refused() {
    refused_with(Forge::AlgNone, "invalid_token").await;
}

#[tokio::test]
async fn an_hs256_id_token_keyed_with_the_public_key_is_refused() {
    refused_with(Forge::HmacWithPublicKey, "invalid_token").await;
}

/// RFC 9207: a callback whose `iss` names another issuer than the provider the browser was
/// sent to (the mix-up attack) is refused before the code is used.
#[tokio::test]
async fn a_callback_naming_another_issuer_is_refused_as_a_mix_up() {
    let (gw, evil, _upstream) = with_hostile().await;
    evil.callback_iss(Some("https://sso.example.com/realms/honest"));
    let (client, _) = browser(&gw);
    let (r, _) = hostile_sign_in(&gw, &client, "/wiki").await;
    assert_refused(&gw, r, "mixup").await;
}

/// A `state` changed on the way back is not the browser's: refused, and the login's real
/// state is not spent by it.
#[tokio::test]
async fn a_tampered_state_is_refused() {
    let (gw, _evil, _upstream) = with_hostile().await;
    let (client, _) = browser(&gw);
    let start = client
        .get(gw.url("/login/evil?return_to=/wiki"))
        .send()
        .await
        .unwrap();
    let at_provider = client.get(location(&start)).send().await.unwrap();
    let callback = at_gateway(&gw, &location(&at_provider));
    let mut tampered = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{}x", &v[..v.len() - 1])
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let r = client.get(tampered.as_str()).send().await.unwrap();
    assert_refused(&gw, r, "invalid_state").await;
}

/// A callback answered once cannot be answered again: the browser's cookie is cleared, and
/// even with the cookie put back (a stolen copy) the used `state` is refused.
#[tokio::test]
async fn a_replayed_callback_is_refused() {
    let (gw, _evil, _upstream) = with_hostile().await;
    let (client, jar) = browser(&gw);
    let start = client
        .get(gw.url("/login/evil?return_to=/wiki"))
        .send()
        .await
        .unwrap();
    let flow_cookie = set_cookies(&start)
        .into_iter()
        .find(|c| c.starts_with("gatehouse_idp="))
        .unwrap();
    let at_provider = client.get(location(&start)).send().await.unwrap();
    let callback = at_gateway(&gw, &location(&at_provider));
    let first = client.get(&callback).send().await.unwrap();
    assert_eq!(first.status(), 303);
    // Same browser, same URL: its cookie is gone.
    let again = client.get(&callback).send().await.unwrap();
    assert_eq!(again.status(), 401);
    assert_eq!(logins(&gw, "evil", "invalid_state").await, 1.0);
    // The cookie put back: the state was used.
    let url = reqwest::Url::parse(&gw.url("/")).unwrap();
    jar.add_cookie_str(&flow_cookie, &url);
    let replay = client.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 401);
    assert_eq!(logins(&gw, "evil", "replayed").await, 1.0);
    assert_eq!(logins(&gw, "evil", "success").await, 1.0);
}

/// A provider that is down at the start does not block the gateway: its button answers with
/// the login page and a message, the password form still works, and once the provider
/// answers, its sign-in works without a restart.
#[tokio::test]
async fn a_provider_down_at_the_start_is_found_later() {
    let dir = ConfigDir::new();
    // A port nothing listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        r#"
[[identity_providers]]
name = "late"
issuer = "https://127.0.0.1:{port}"
client_id = "gatehouse"
client_auth = "none"
ca = "ca.pem"
"#
    );
    let gw = TestGateway::start_in(dir, "", &extra).await;
    let (client, _) = browser(&gw);
    let r = client.get(gw.url("/login/late")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let html = r.text().await.unwrap();
    assert!(html.contains("cannot be reached right now"), "{html}");
    assert!(html.contains("Sign in with late"), "{html}");
    assert!(
        !html.contains("name=\"password\""),
        "no [[users]]: no password form"
    );
    assert_eq!(logins(&gw, "late", "unavailable").await, 1.0);
    // The provider comes up on that port; the next click finds it.
    let _late = Hostile::start_on(gw.dir.pki.upstream_tls(), "gatehouse", port).await;
    wait_discovered(&gw, "late").await;
    let r = client.get(gw.url("/login/late")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with(&format!("https://127.0.0.1:{port}/authorize?")));
}

// --- through the real provider (panva's oidc-provider) --------------------------------------

const IDP_SECRET: &str = "gatehouse-client-secret-0123456789";

/// The provider's config: the gateway as a client (`auth_method`), and two people — jane
/// (staff, wiki-admins) and bob (contractors). `conform`: profile and groups claims only at
/// userinfo, not in the ID token.
fn idp_config(auth_method: &str, conform: bool) -> serde_json::Value {
    serde_json::json!({
        "conform_id_token_claims": conform,
        "clients": [{
            "client_id": "gatehouse",
            "client_secret": IDP_SECRET,
            "redirect_uris": ["https://localhost/login/corp/callback"],
            "token_endpoint_auth_method": auth_method,
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "scope": "openid profile groups",
        }],
        "users": [
            { "sub": "u-jane", "username": "jane", "password": "jane-password",
              "name": "Jane", "groups": ["staff", "wiki-admins"] },
            { "sub": "u-bob", "username": "bob", "password": "bob-password",
              "name": "Bob", "groups": ["contractors"] },
        ],
    })
}

/// A gateway with the provider `corp` (`provider_extra` adds keys to it), a `session` route
/// at `/wiki` and a `bearer` route at `/rest/api` to a recording upstream, and `extra`.
async fn with_idp(
    idp_config: serde_json::Value,
    provider_extra: &str,
    extra: &str,
) -> Option<(TestGateway, Idp, Upstream)> {
    let dir = ConfigDir::new();
    let idp = idp::start_or_skip(&dir.pki, idp_config, "federation::login").await?;
    let upstream = Upstream::start().await;
    let config = format!(
        r#"
{extra}

[[identity_providers]]
name = "corp"
display_name = "Corp SSO"
issuer = "{issuer}"
client_id = "gatehouse"
client_secret = "{IDP_SECRET}"
scopes = ["openid", "profile", "groups"]
ca = "{ca}"
group_scopes = {{ "wiki-admins" = "ADMIN" }}
{provider_extra}

[[routes]]
path = "/wiki"
upstream = "http://{up}"
auth = "session"
scope = "READ"

[[routes]]
path = "/rest/api"
upstream = "http://{up}"
auth = "bearer"
scope = "READ"
"#,
        issuer = idp.issuer,
        ca = idp.ca_path.display(),
        up = upstream.addr,
    );
    let gw = TestGateway::start_in(dir, "", &config).await;
    wait_discovered(&gw, "corp").await;
    Some((gw, idp, upstream))
}

/// Clicks "Sign in with Corp SSO", signs in at the provider's own form, and follows it back to
/// the gateway: the callback's response.
async fn provider_sign_in(
    gw: &TestGateway,
    idp: &Idp,
    client: &reqwest::Client,
    user: &str,
    password: &str,
    return_to: &str,
) -> reqwest::Response {
    let start = client
        .get(gw.url(&format!("/login/corp?return_to={return_to}")))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303);
    let authorize = location(&start);
    assert!(authorize.starts_with(&idp.issuer), "{authorize}");
    let back = idp.sign_in(client, &authorize, user, password).await;
    client.get(at_gateway(gw, &back)).send().await.unwrap()
}

#[tokio::test]
async fn signing_in_through_the_provider_reaches_a_session_route_as_the_federated_user() {
    let Some((gw, idp, upstream)) =
        with_idp(idp_config("client_secret_basic", false), "", "").await
    else {
        return;
    };
    let (client, _) = browser(&gw);
    // The login page offers the provider, and no password form without [[users]].
    let page = client
        .get(gw.url("/login?return_to=/wiki/home"))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign in with Corp SSO"), "{html}");
    assert!(
        html.contains("href=\"/login/corp?return_to=/wiki/home\""),
        "{html}"
    );
    assert!(!html.contains("name=\"password\""), "{html}");

    let r = provider_sign_in(&gw, &idp, &client, "jane", "jane-password", "/wiki/home").await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(location(&r), "/wiki/home");
    let session = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("gatehouse_session="))
        .expect("a session cookie");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attr), "{session}");
    }
    let page = client.get(gw.url("/wiki/home")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.headers["x-auth-user"], "jane");
    assert_eq!(
        seen.headers["x-auth-scopes"], "READ WRITE ADMIN",
        "wiki-admins → ADMIN"
    );
    assert_eq!(seen.headers["x-auth-groups"], "staff wiki-admins");
    assert_eq!(logins(&gw, "corp", "success").await, 1.0);
    let stored = gw
        .gateway
        .store
        .get_federated_user("jane")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.provider.as_str(), stored.subject.as_str()),
        ("corp", "u-jane")
    );
    assert_eq!(stored.max_scope, "ADMIN");

    // bob's groups map to nothing: he holds default_scope.
    let (client, _) = browser(&gw);
    let r = provider_sign_in(&gw, &idp, &client, "bob", "bob-password", "/wiki").await;
    assert_eq!(r.status(), 303);
    client.get(gw.url("/wiki")).send().await.unwrap();
    assert_eq!(upstream.last().headers["x-auth-user"], "bob");
    assert_eq!(upstream.last().headers["x-auth-scopes"], "READ");
    assert_eq!(upstream.last().headers["x-auth-groups"], "contractors");
}

/// A federated user consents to an app, which gets tokens for them; they make a PAT; both
/// carry the user's name, scope and groups, as a config user's would.
#[tokio::test]
async fn a_federated_user_consents_gets_tokens_and_makes_a_personal_token() {
    let Some((gw, idp, upstream)) =
        with_idp(idp_config("client_secret_basic", false), "", "").await
    else {
        return;
    };
    create_app(&gw, "webapp", |_| {}).await;
    let (client, _) = browser(&gw);
    let r = provider_sign_in(&gw, &idp, &client, "jane", "jane-password", "/").await;
    assert_eq!(r.status(), 303);
    let challenge = gatehouse::oauth::pkce::s256_challenge(VERIFIER);
    let url = authorize_url(
        &gw,
        "webapp",
        &[
            ("response_type", "code"),
            ("redirect_uri", CALLBACK),
            ("scope", "ADMIN"),
            ("state", "st"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let consent = client.get(url).send().await.unwrap();
    assert_eq!(consent.status(), 200);
    let html = consent.text().await.unwrap();
    assert!(
        html.contains("jane"),
        "the consent page names the user: {html}"
    );
    let r = client
        .post(gw.url("/oauth2/authorize"))
        .form(&[
            ("consent_id", hidden(&html, "consent_id").as_str()),
            ("csrf_token", hidden(&html, "csrf_token").as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let code = query(&location(&r))["code"].clone();
    let r = gw
        .client(true)
        .post(gw.url("/oauth2/token"))
        .basic_auth("webapp", Some("a-client-secret-of-enough-length"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["scope"], "ADMIN", "jane's latest login maps to ADMIN");
    let token = body["access_token"].as_str().unwrap();
    let r = gw
        .client(true)
        .get(gw.url("/rest/api/content"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.last().headers["x-auth-user"], "jane");
    assert_eq!(upstream.last().headers["x-auth-client-id"], "webapp");
    assert_eq!(
        upstream.last().headers["x-auth-groups"],
        "staff wiki-admins"
    );
    // The refresh token works for her too.
    let refresh = body["refresh_token"].as_str().unwrap();
    let r = gw
        .client(true)
        .post(gw.url("/oauth2/token"))
        .basic_auth("webapp", Some("a-client-secret-of-enough-length"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // `gatehouse token create --user jane`: a PAT for a federated user, capped at her scope.
    let config =
        gatehouse::config::Config::load(&gw.dir.dir.path().join("gatehouse.toml")).unwrap();
    let args = |scope: &str| gatehouse::apps::cli::TokenCreate {
        user: "jane".into(),
        scope: scope.into(),
        ttl: None,
        name: Some("ci".into()),
    };
    let now = gw.gateway.clock.now();
    let too_much = gatehouse::apps::cli::token_create(&config, &args("SYSTEM_ADMIN"), now).await;
    assert!(too_much.is_err());
    let (pat, _) = gatehouse::apps::cli::token_create(&config, &args("WRITE"), now)
        .await
        .unwrap();
    let r = gw
        .client(true)
        .get(gw.url("/rest/api/pages"))
        .bearer_auth(pat.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.last().headers["x-auth-user"], "jane");
    assert_eq!(upstream.last().headers["x-auth-scopes"], "READ WRITE");
    assert_eq!(
        upstream.last().headers["x-auth-groups"],
        "staff wiki-admins"
    );
    // Someone who never signed in is nobody.
    let nobody = gatehouse::apps::cli::TokenCreate {
        user: "carol".into(),
        ..args("READ")
    };
    assert!(
        gatehouse::apps::cli::token_create(&config, &nobody, now)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn allowed_groups_turns_away_the_provider_users_outside_them() {
    let Some((gw, idp, upstream)) = with_idp(
        idp_config("client_secret_basic", false),
        "allowed_groups = [\"staff\"]",
        "",
    )
    .await
    else {
        return;
    };
    let (client, _) = browser(&gw);
    let r = provider_sign_in(&gw, &idp, &client, "bob", "bob-password", "/wiki").await;
    assert_eq!(r.status(), 403);
    assert!(
        !set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("gatehouse_session="))
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("may not sign in here"), "{html}");
    assert_eq!(logins(&gw, "corp", "denied").await, 1.0);
    assert!(
        gw.gateway
            .store
            .get_federated_user("bob")
            .await
            .unwrap()
            .is_none()
    );
    let r = client
        .get(gw.url("/wiki"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "not signed in");
    assert_eq!(upstream.count(), 0);
    // A member of staff is let in.
    let (client, _) = browser(&gw);
    let r = provider_sign_in(&gw, &idp, &client, "jane", "jane-password", "/wiki").await;
    assert_eq!(r.status(), 303);
}

/// With `use_userinfo`, claims the ID token does not carry (the name, the groups) come from
/// the userinfo endpoint; the code is exchanged with `client_secret_post`.
#[tokio::test]
async fn userinfo_claims_and_client_secret_post() {
    let Some((gw, idp, upstream)) = with_idp(
        idp_config("client_secret_post", true),
        "use_userinfo = true\nclient_auth = \"client_secret_post\"",
        "",
    )
    .await
    else {
        return;
    };
    let (client, _) = browser(&gw);
    let r = provider_sign_in(&gw, &idp, &client, "jane", "jane-password", "/wiki").await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    client.get(gw.url("/wiki")).send().await.unwrap();
    assert_eq!(upstream.last().headers["x-auth-user"], "jane");
    assert_eq!(
        upstream.last().headers["x-auth-groups"],
        "staff wiki-admins"
    );
    // The same login without userinfo: the ID token alone names only the subject.
    edit_config(&gw, "use_userinfo = true\n", "");
    let (client, _) = browser(&gw);
    let r = provider_sign_in(&gw, &idp, &client, "jane", "jane-password", "/wiki").await;
    assert_eq!(r.status(), 303);
    client.get(gw.url("/wiki")).send().await.unwrap();
    assert_eq!(upstream.last().headers["x-auth-user"], "u-jane");
    assert!(upstream.last().headers.get("x-auth-groups").is_none());
}

/// Rewrites the gateway's config file (`from` → `to`) and reloads it, as SIGHUP would.
fn edit_config(gw: &TestGateway, from: &str, to: &str) {
    let path = gw.dir.dir.path().join("gatehouse.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in the config");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    gw.gateway.reload(&path).unwrap();
}

/// The provider's rules apply to the groups of the latest login at every check: a reload that
/// changes `group_scopes` changes what a signed-in federated user holds at the next request,
/// and one that leaves them out of `allowed_groups` signs them out.
#[tokio::test]
async fn a_reload_applies_the_provider_rules_to_signed_in_users() {
    let Some((gw, idp, upstream)) =
        with_idp(idp_config("client_secret_basic", false), "", "").await
    else {
        return;
    };
    let (client, _) = browser(&gw);
    let r = provider_sign_in(&gw, &idp, &client, "jane", "jane-password", "/wiki").await;
    assert_eq!(r.status(), 303);
    client.get(gw.url("/wiki")).send().await.unwrap();
    assert_eq!(upstream.last().headers["x-auth-scopes"], "READ WRITE ADMIN");
    edit_config(
        &gw,
        "\"wiki-admins\" = \"ADMIN\"",
        "\"wiki-admins\" = \"WRITE\"",
    );
    client.get(gw.url("/wiki")).send().await.unwrap();
    assert_eq!(upstream.last().headers["x-auth-scopes"], "READ WRITE");
    edit_config(
        &gw,
        "display_name = \"Corp SSO\"",
        "allowed_groups = [\"auditors\"]",
    );
    let r = client
        .get(gw.url("/wiki"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "signed out: sent to /login");
    assert_eq!(upstream.count(), 2);
    // The provider kept its discovery across both reloads.
    assert_eq!(
        client
            .get(gw.url("/login/corp"))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
}

/// A provider user whose name is a `[[users]]` entry is refused (the log names the clash):
/// identities from two places never merge.
#[tokio::test]
async fn a_name_that_is_a_config_user_is_refused() {
    let users = "[[users]]\nname = \"jane\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"\nmax_scope = \"READ\"\n";
    let Some((gw, idp, _upstream)) =
        with_idp(idp_config("client_secret_basic", false), "", users).await
    else {
        return;
    };
    let (client, _) = browser(&gw);
    let r = provider_sign_in(&gw, &idp, &client, "jane", "jane-password", "/wiki").await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains(FAILED));
    assert_eq!(logins(&gw, "corp", "clash").await, 1.0);
    assert!(
        gw.gateway
            .store
            .get_federated_user("jane")
            .await
            .unwrap()
            .is_none()
    );
}

/// The provider's `error=access_denied` ends on the login page with the one message.
#[tokio::test]
async fn a_provider_error_ends_on_the_login_page() {
    let Some((gw, idp, _upstream)) =
        with_idp(idp_config("client_secret_basic", false), "", "").await
    else {
        return;
    };
    let (client, _) = browser(&gw);
    let start = client.get(gw.url("/login/corp")).send().await.unwrap();
    let state = query(&location(&start))["state"].clone();
    let mut callback = reqwest::Url::parse(&gw.url("/login/corp/callback")).unwrap();
    callback
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("state", &state)
        .append_pair("iss", &idp.issuer);
    let r = client.get(callback.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains(FAILED));
    assert_eq!(logins(&gw, "corp", "provider_error").await, 1.0);
}

/// A `[[users]]` entry added later with a federated user's name does not inherit that
/// person's sessions, grants and PATs: at the start (and after a reload) of a gateway whose
/// config has the name, the federated user is ended — identities never merge.
#[tokio::test]
async fn a_config_user_added_later_ends_the_federated_user_of_that_name() {
    let Some((gw, idp, _upstream)) =
        with_idp(idp_config("client_secret_basic", false), "", "").await
    else {
        return;
    };
    let (client, _) = browser(&gw);
    let r = provider_sign_in(&gw, &idp, &client, "jane", "jane-password", "/wiki").await;
    let session = set_cookies(&r)
        .into_iter()
        .find_map(|c| {
            c.strip_prefix("gatehouse_session=")
                .map(|v| v.split(';').next().unwrap().to_owned())
        })
        .unwrap();
    let config =
        gatehouse::config::Config::load(&gw.dir.dir.path().join("gatehouse.toml")).unwrap();
    let args = gatehouse::apps::cli::TokenCreate {
        user: "jane".into(),
        scope: "READ".into(),
        ttl: None,
        name: None,
    };
    let (pat, _) = gatehouse::apps::cli::token_create(&config, &args, gw.gateway.clock.now())
        .await
        .unwrap();
    let api = |gw: &TestGateway, bearer: String| {
        let request = gw
            .client(true)
            .get(gw.url("/rest/api/x"))
            .bearer_auth(bearer);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(api(&gw, pat.expose().to_owned()).await, 200);

    // A second gateway on the same store, whose config now has a user "jane".
    let db = gw.dir.dir.path().join("gatehouse.db");
    let upstream = Upstream::start().await;
    let extra = format!(
        r#"
[store]
url = "sqlite://{db}"

[[users]]
name = "jane"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
max_scope = "SYSTEM_ADMIN"

[[identity_providers]]
name = "corp"
issuer = "{issuer}"
client_id = "gatehouse"
client_secret = "{IDP_SECRET}"
ca = "{ca}"

[[routes]]
path = "/wiki"
upstream = "http://{up}"
auth = "session"
scope = "READ"

[[routes]]
path = "/rest/api"
upstream = "http://{up}"
auth = "bearer"
scope = "READ"
"#,
        db = db.display(),
        issuer = idp.issuer,
        ca = idp.ca_path.display(),
        up = upstream.addr,
    );
    let second = TestGateway::start_in(ConfigDir::sharing_keys_with(&gw.dir), "", &extra).await;
    assert!(
        second
            .gateway
            .store
            .get_federated_user("jane")
            .await
            .unwrap()
            .is_none()
    );
    let r = second
        .client(true)
        .get(second.url("/wiki"))
        .header("accept", "text/html")
        .header("cookie", format!("gatehouse_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        303,
        "the federated session is not the config user's"
    );
    assert_eq!(api(&second, pat.expose().to_owned()).await, 401);
    assert_eq!(upstream.count(), 0);
}
