//! The whole authorization-code flow as an app and a user run it, across this branch's pages
//! and the token endpoint (RFC 6749 §4.1, RFC 7636): sign in through the form, consent,
//! exchange the code with its PKCE verifier, and call a protected route with the token.

use crate::helpers::harness::TestGateway;
use crate::helpers::harness::upstream::Upstream;
use crate::helpers::login_support::*;
use crate::oauth::authorize::{VERIFIER, authorize_url};

async fn code_for(gw: &TestGateway, client_id: &str, scope: &str) -> String {
    let (client, _) = browser(gw);
    login(gw, &client, "alice", ALICE_PASSWORD, "/").await;
    let challenge = gatehouse::oauth::pkce::s256_challenge(VERIFIER);
    let url = authorize_url(
        gw,
        client_id,
        &[
            ("response_type", "code"),
            ("redirect_uri", CALLBACK),
            ("scope", scope),
            ("state", "st"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let html = client.get(url).send().await.unwrap().text().await.unwrap();
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
    query(&location(&r))["code"].clone()
}

#[tokio::test]
async fn a_user_signs_in_consents_and_the_app_calls_the_api_with_its_token() {
    let up = Upstream::start().await;
    let route = format!(
        "[[routes]]\npath = \"/rest/api\"\nupstream = \"http://{}\"\nauth = \"bearer\"\nscopes = {{ GET = \"READ\", \"*\" = \"WRITE\" }}\n",
        up.addr
    );
    let gw = TestGateway::start("", &format!("{}\n{route}", users())).await;
    create_app(&gw, "webapp", |_| {}).await;
    create_app(&gw, "spa", |a| {
        a.client_type = gatehouse::store::ClientType::Public;
        a.secret_hash = None;
    })
    .await;

    // A confidential app: client_secret_basic.
    let code = code_for(&gw, "webapp", "ADMIN").await;
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
    assert_eq!(body["scope"], "WRITE", "capped at alice's max_scope");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let r = gw
        .client(true)
        .post(gw.url("/rest/api/content"))
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().headers["x-auth-user"], "alice");
    assert_eq!(up.last().headers["x-auth-client-id"], "webapp");

    // A public app: no secret, the verifier is its proof; a wrong one fails.
    let code = code_for(&gw, "spa", "READ").await;
    let exchange = |verifier: &'static str, code: String| {
        let gw = &gw;
        async move {
            gw.client(true)
                .post(gw.url("/oauth2/token"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("client_id", "spa"),
                    ("code", code.as_str()),
                    ("redirect_uri", CALLBACK),
                    ("code_verifier", verifier),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let wrong = "wrong-verifier-wrong-verifier-wrong-verifier-000";
    assert_eq!(exchange(wrong, code.clone()).await.status(), 400);
    let code = code_for(&gw, "spa", "READ").await;
    let r = exchange(VERIFIER, code).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["scope"], "READ");
}
