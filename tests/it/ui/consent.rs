//! The consent page and `POST /oauth2/authorize` over real HTTPS (SPEC §3.1, SECURITY.md
//! "Browser pages"): what the page shows and the headers it carries, approve and deny, a
//! CSRF token bound to one request and one session (or PAT) and good once, PAT-authenticated
//! flows, and an app deactivated while the page was open.

use gatehouse::store::secret_hash;

use crate::helpers::harness::{TestGateway, tokens};
use crate::helpers::login_support::*;
use crate::oauth::authorize::{get_as, normal, with};

struct Consent {
    id: String,
    csrf: String,
    html: String,
}

async fn open(
    gw: &TestGateway,
    cookie: &str,
    client_id: &str,
    params: &[(String, String)],
) -> Consent {
    let r = get_as(gw, cookie, client_id, params).await;
    assert_eq!(r.status(), 200);
    assert_page_headers(&r);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("form-action 'self' https://client.example.com"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    Consent {
        id: hidden(&html, "consent_id"),
        csrf: hidden(&html, "csrf_token"),
        html,
    }
}

async fn decide(
    gw: &TestGateway,
    cookie: &str,
    id: &str,
    csrf: &str,
    decision: &str,
) -> reqwest::Response {
    gw.client(true)
        .post(gw.url("/oauth2/authorize"))
        .header("cookie", format!("gatehouse_session={cookie}"))
        .form(&[
            ("consent_id", id),
            ("csrf_token", csrf),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap()
}

async fn setup() -> (TestGateway, String) {
    let gw = start("").await;
    create_app(&gw, "webapp", |a| {
        a.display_name = "Reports <b>Pro</b>".into();
        a.description = "Weekly reports & charts".into();
        a.logo_uri = "https://client.example.com/logo.png".into();
    })
    .await;
    let cookie = tokens::session(&gw.gateway, "alice").await;
    (gw, cookie)
}

fn all() -> Vec<(String, String)> {
    normal()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

#[tokio::test]
async fn the_consent_page_names_the_app_the_user_and_each_scope_escaped() {
    let (gw, cookie) = setup().await;
    let c = open(&gw, &cookie, "webapp", &with("scope", Some("ADMIN"))).await;
    let html = &c.html;
    assert!(
        html.contains("Reports &#60;b&#62;Pro&#60;/b&#62;")
            || html.contains("Reports &lt;b&gt;Pro&lt;/b&gt;"),
        "{html}"
    );
    assert!(!html.contains("<b>Pro</b>"), "the app's name is escaped");
    assert!(
        html.contains("Weekly reports &#38; charts")
            || html.contains("Weekly reports &amp; charts")
    );
    assert!(html.contains("src=\"https://client.example.com/logo.png\""));
    assert!(html.contains("<strong>alice</strong>"));
    assert!(html.contains("View content") && html.contains("Create, update, and delete content"));
    assert!(
        !html.contains("Administer the service"),
        "capped at alice's WRITE"
    );
    assert!(html.contains("name=\"viewport\""));
    assert!(
        !html.contains("<script") && !html.contains("<link"),
        "no scripts or external assets"
    );
    assert!(html.contains("value=\"approve\"") && html.contains("value=\"deny\""));
    assert!(html.contains("action=\"/oauth2/authorize\""));
    // The pending consent is in the store, bound to alice.
    let now = gw.gateway.clock.now();
    let pending = gw
        .gateway
        .store
        .get_consent(&c.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.user, "alice");
    assert_eq!(pending.scope, "WRITE");
    assert_eq!(pending.state.as_deref(), Some("xyz-123"));
}

#[tokio::test]
async fn approving_issues_a_code_and_denying_answers_access_denied() {
    let (gw, cookie) = setup().await;
    let c = open(&gw, &cookie, "webapp", &all()).await;
    let r = decide(&gw, &cookie, &c.id, &c.csrf, "approve").await;
    assert_eq!(r.status(), 303);
    let loc = location(&r);
    assert!(loc.starts_with(CALLBACK), "{loc}");
    let q = query(&loc);
    assert_eq!(q["state"], "xyz-123");
    assert_eq!(q["iss"], "https://localhost");
    let stored = gw
        .gateway
        .store
        .get_code(&secret_hash(&q["code"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            stored.user.as_str(),
            stored.client_id.as_str(),
            stored.scope.as_str()
        ),
        ("alice", "webapp", "WRITE")
    );
    assert_eq!(stored.code_challenge_method.as_deref(), Some("S256"));

    let c = open(&gw, &cookie, "webapp", &all()).await;
    let r = decide(&gw, &cookie, &c.id, &c.csrf, "deny").await;
    let q = query(&location(&r));
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "xyz-123");
    assert_eq!(q["iss"], "https://localhost");
    assert!(!q.contains_key("code"));
}

#[tokio::test]
async fn consent_csrf_tokens_are_bound_to_the_session_and_the_request_and_good_once() {
    let (gw, cookie) = setup().await;
    let c = open(&gw, &cookie, "webapp", &all()).await;
    let other = open(&gw, &cookie, "webapp", &all()).await;
    // Another session of the same user (another browser) cannot use this page's token.
    let second = tokens::session(&gw.gateway, "alice").await;
    let r = decide(&gw, &second, &c.id, &c.csrf, "approve").await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    let bob = tokens::session(&gw.gateway, "root").await;
    assert_eq!(
        decide(&gw, &bob, &c.id, &c.csrf, "approve").await.status(),
        400,
        "another user"
    );
    assert_eq!(
        decide(&gw, &cookie, &c.id, "", "approve").await.status(),
        400,
        "no token"
    );
    assert_eq!(
        decide(&gw, &cookie, &c.id, &other.csrf, "approve")
            .await
            .status(),
        400,
        "another request's token"
    );
    let r = gw
        .client(true)
        .post(gw.url("/oauth2/authorize"))
        .form(&[
            ("consent_id", c.id.as_str()),
            ("csrf_token", c.csrf.as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no session at all");
    assert_eq!(
        decide(&gw, &cookie, &c.id, &c.csrf, "maybe").await.status(),
        400
    );
    // None of that consumed it: the real page still works, once.
    let r = decide(&gw, &cookie, &c.id, &c.csrf, "approve").await;
    assert_eq!(r.status(), 303);
    assert!(query(&location(&r)).contains_key("code"));
    let r = decide(&gw, &cookie, &c.id, &c.csrf, "approve").await;
    assert_eq!(r.status(), 400, "a replayed decision");
    assert!(r.headers().get("location").is_none());
    // An expired page.
    gw.gateway
        .clock
        .advance(std::time::Duration::from_secs(601));
    assert_eq!(
        decide(&gw, &cookie, &other.id, &other.csrf, "approve")
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn a_personal_access_token_can_authorize_and_must_decide_too() {
    let (gw, cookie) = setup().await;
    let (pat, _) = tokens::pat(&gw.gateway, "alice", "READ").await;
    let pairs: Vec<(&str, String)> = normal();
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = crate::oauth::authorize::authorize_url(&gw, "webapp", &pairs);
    let r = gw
        .client(true)
        .get(&url)
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        !html.contains("Create, update"),
        "a READ PAT grants at most READ"
    );
    let (id, csrf) = (hidden(&html, "consent_id"), hidden(&html, "csrf_token"));
    assert_eq!(
        decide(&gw, &cookie, &id, &csrf, "approve").await.status(),
        400,
        "the session did not open it"
    );
    let r = gw
        .client(true)
        .post(gw.url("/oauth2/authorize"))
        .bearer_auth(&pat)
        .form(&[
            ("consent_id", id.as_str()),
            ("csrf_token", csrf.as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let code = query(&location(&r))["code"].clone();
    let stored = gw
        .gateway
        .store
        .get_code(&secret_hash(&code))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.scope, "READ");
    // An app's access token cannot act for its user here, nor can a made-up token.
    let t = tokens::access_token(
        &gw.gateway,
        "other-app",
        "alice",
        "WRITE",
        std::time::Duration::from_secs(600),
    )
    .await;
    for bearer in [t.token.as_str(), "gh_pat_forged"] {
        let r = gw
            .client(true)
            .get(&url)
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{bearer}");
        assert!(r.headers().get("location").is_none());
    }
}

#[tokio::test]
async fn an_app_deactivated_while_the_page_is_open_gets_nothing() {
    let (gw, cookie) = setup().await;
    let c = open(&gw, &cookie, "webapp", &all()).await;
    let mut app = gw
        .gateway
        .store
        .get_app_by_client_id("webapp")
        .await
        .unwrap()
        .unwrap();
    app.active = false;
    gw.gateway.store.update_app(&app).await.unwrap();
    let r = decide(&gw, &cookie, &c.id, &c.csrf, "approve").await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
}

#[tokio::test]
async fn confluence_paths_serve_the_same_flow() {
    let (gw, cookie) = setup().await;
    let pairs: Vec<(&str, String)> = normal();
    let mut u = reqwest::Url::parse(&gw.url("/rest/oauth2/latest/authorize")).unwrap();
    u.query_pairs_mut().append_pair("client_id", "webapp");
    for (k, v) in &pairs {
        u.query_pairs_mut().append_pair(k, v);
    }
    let r = gw
        .client(true)
        .get(u.as_str())
        .header("cookie", format!("gatehouse_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("action=\"/rest/oauth2/latest/authorize\""));
    let r = gw
        .client(true)
        .post(gw.url("/rest/oauth2/latest/authorize"))
        .header("cookie", format!("gatehouse_session={cookie}"))
        .form(&[
            ("consent_id", hidden(&html, "consent_id").as_str()),
            ("csrf_token", hidden(&html, "csrf_token").as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(query(&location(&r)).contains_key("code"));
}
