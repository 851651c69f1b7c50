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
use crate::helpers::login_support::{location, set_cookies};

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
