//! The authorization server's other endpoints: revocation (RFC 7009), introspection
//! (RFC 7662), metadata (RFC 8414) and JWKS (RFC 7517), CORS for apps' web origins, and
//! `/oauth2/logout` (SPEC §3.1: a confirmation page, then a CSRF-checked POST) — each rule
//! with the request that breaks it.

use std::time::Duration;

use crate::helpers::harness::tokens;
use crate::helpers::oauth_fixture::{
    Auth, CONF, CONF_SECRET, Fx, ORIGIN, OTHER, OTHER_SECRET, PUBLIC, VERIFIER,
};

const BASIC: Auth<'static> = Auth::Basic(CONF, CONF_SECRET);

/// The answer of a revoking call means the revocation is in force: a token the proxy has
/// cached as valid is refused on the very next request (no wait for the event bus).
#[tokio::test]
async fn a_cached_token_is_refused_right_after_its_revocation_answers() {
    let fx = Fx::start("").await;
    for round in 0..20 {
        let t = fx.tokens("WRITE").await;
        let access = t.field("access_token");
        assert_eq!(
            fx.proxied(&access).await,
            200,
            "round {round}: cached as valid"
        );
        let a = fx
            .post("/oauth2/revoke", &[("token", &access)], BASIC)
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(
            fx.proxied(&access).await,
            401,
            "round {round}: revoked access token"
        );

        let t = fx.tokens("WRITE").await;
        let access = t.field("access_token");
        assert_eq!(
            fx.proxied(&access).await,
            200,
            "round {round}: cached as valid"
        );
        let r = fx.refresh(&t.field("refresh_token"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            fx.proxied(&access).await,
            401,
            "round {round}: rotated generation"
        );
        assert_eq!(fx.proxied(&r.field("access_token")).await, 200);
    }
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_grant_and_an_access_token_only_itself() {
    let fx = Fx::start("").await;
    // Access token: only that token ends.
    let t = fx.tokens("WRITE").await;
    let a = fx
        .post(
            "/oauth2/revoke",
            &[("token", &t.field("access_token"))],
            BASIC,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(fx.proxied(&t.field("access_token")).await, 401);
    let r = fx.refresh(&t.field("refresh_token"), None).await;
    assert_eq!(r.status, 200, "the grant lives on: {}", r.text);
    // Refresh token: the whole grant ends, its current access token too.
    let a = fx
        .post(
            "/oauth2/revoke",
            &[
                ("token", &r.field("refresh_token")),
                ("token_type_hint", "refresh_token"),
            ],
            BASIC,
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(fx.proxied(&r.field("access_token")).await, 401);
    assert_eq!(
        fx.refresh(&r.field("refresh_token"), None).await.error(),
        "invalid_grant"
    );
    // Unknown tokens: 200 anyway.
    for unknown in ["gh_rt_nothing", "not-a-token", "a.b.c"] {
        let a = fx
            .post("/oauth2/revoke", &[("token", unknown)], BASIC)
            .await;
        assert_eq!(a.status, 200, "{unknown}");
    }
    let a = fx.post("/oauth2/revoke", &[], BASIC).await;
    assert_eq!(a.error(), "invalid_request", "no token");
    let a = fx
        .post(
            "/oauth2/revoke",
            &[("token", "x")],
            Auth::Basic(CONF, "wrong"),
        )
        .await;
    assert_eq!((a.status, a.error().as_str()), (401, "invalid_client"));
}

#[tokio::test]
async fn another_clients_tokens_are_not_revoked() {
    let fx = Fx::start("").await;
    let t = fx.tokens("WRITE").await;
    let other = Auth::Basic(OTHER, OTHER_SECRET);
    for token in [t.field("access_token"), t.field("refresh_token")] {
        let a = fx.post("/oauth2/revoke", &[("token", &token)], other).await;
        assert_eq!(a.status, 200);
    }
    assert_eq!(fx.proxied(&t.field("access_token")).await, 200);
    assert_eq!(
        fx.refresh(&t.field("refresh_token"), None).await.status,
        200
    );
}

#[tokio::test]
async fn a_public_client_revokes_with_its_client_id() {
    let fx = Fx::start("").await;
    let code = fx.code(PUBLIC, "READ", true).await;
    let t = fx
        .post(
            "/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", crate::helpers::oauth_fixture::CALLBACK),
                ("code_verifier", VERIFIER),
            ],
            Auth::Public(PUBLIC),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    let a = fx
        .post(
            "/oauth2/revoke",
            &[("token", &t.field("refresh_token"))],
            Auth::Public(PUBLIC),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(fx.proxied(&t.field("access_token")).await, 401);
}

async fn introspect(fx: &Fx, token: &str, auth: Auth<'_>) -> crate::helpers::oauth_fixture::Answer {
    fx.post("/oauth2/introspect", &[("token", token)], auth)
        .await
}

#[tokio::test]
async fn introspection_describes_active_tokens_and_nothing_else() {
    let fx = Fx::start("").await;
    let t = fx.tokens("WRITE").await;
    let a = introspect(&fx, &t.field("access_token"), BASIC).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let v = a.json();
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "READ WRITE", "expanded");
    assert_eq!(v["client_id"], CONF);
    assert_eq!(v["username"], "alice");
    assert_eq!(v["sub"], "alice");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["iss"], "https://localhost");
    assert_eq!(v["aud"], "https://localhost");
    assert!(v["exp"].as_i64().unwrap() > v["iat"].as_i64().unwrap());
    let r = introspect(
        &fx,
        &t.field("refresh_token"),
        Auth::Post(OTHER, OTHER_SECRET),
    )
    .await;
    assert_eq!(
        r.json()["active"],
        true,
        "a resource server may introspect any token"
    );
    assert_eq!(r.json()["token_type"], "refresh_token");
    for junk in ["junk", "gh_rt_junk", "a.b.c"] {
        assert_eq!(
            introspect(&fx, junk, BASIC).await.text,
            r#"{"active":false}"#,
            "{junk}"
        );
    }
    // Revoked.
    fx.post(
        "/oauth2/revoke",
        &[("token", &t.field("access_token"))],
        BASIC,
    )
    .await;
    assert_eq!(
        introspect(&fx, &t.field("access_token"), BASIC).await.text,
        r#"{"active":false}"#
    );
    // Rotated refresh token.
    let next = fx.refresh(&t.field("refresh_token"), None).await;
    assert_eq!(
        introspect(&fx, &t.field("refresh_token"), BASIC).await.text,
        r#"{"active":false}"#
    );
    assert_eq!(
        introspect(&fx, &next.field("access_token"), BASIC)
            .await
            .json()["active"],
        true
    );
    // Expired.
    fx.advance(Duration::from_secs(7201));
    assert_eq!(
        introspect(&fx, &next.field("access_token"), BASIC)
            .await
            .text,
        r#"{"active":false}"#
    );
}

#[tokio::test]
async fn introspection_of_a_deleted_apps_tokens_is_inactive() {
    let fx = Fx::start("").await;
    let g = fx.gateway();
    let minted =
        tokens::access_token(g, "doomed", "alice", "READ", Duration::from_secs(3600)).await;
    let a = introspect(&fx, &minted.token, BASIC).await;
    assert_eq!(a.json()["active"], true, "{}", a.text);
    g.store.delete_app(&minted.app_id).await.unwrap();
    let a = introspect(&fx, &minted.token, BASIC).await;
    assert_eq!(a.text, r#"{"active":false}"#);
    let a = introspect(&fx, &minted.refresh, BASIC).await;
    assert_eq!(a.text, r#"{"active":false}"#);
}

#[tokio::test]
async fn introspection_is_for_confidential_clients_only() {
    let fx = Fx::start("").await;
    let t = fx.tokens("READ").await;
    let a = introspect(&fx, &t.field("access_token"), Auth::Public(PUBLIC)).await;
    assert_eq!((a.status, a.error().as_str()), (401, "invalid_client"));
    assert!(!a.text.contains("active"));
    let a = introspect(&fx, &t.field("access_token"), Auth::Basic(PUBLIC, "")).await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (401, "invalid_client"),
        "a public client by Basic with an empty password"
    );
    let a = introspect(&fx, &t.field("access_token"), Auth::Nothing).await;
    assert_eq!((a.status, a.error().as_str()), (401, "invalid_client"));
    let a = introspect(&fx, &t.field("access_token"), Auth::Basic(CONF, "wrong")).await;
    assert_eq!(a.status, 401);
    assert!(a.header("www-authenticate").unwrap().starts_with("Basic"));
}

#[tokio::test]
async fn metadata_lists_exactly_the_specified_fields() {
    let fx = Fx::start("").await;
    let r = fx
        .gw
        .client(true)
        .get(fx.gw.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let auth = serde_json::json!(["client_secret_basic", "client_secret_post", "none"]);
    let expected = serde_json::json!({
        "issuer": "https://localhost",
        "authorization_endpoint": "https://localhost/oauth2/authorize",
        "token_endpoint": "https://localhost/oauth2/token",
        "revocation_endpoint": "https://localhost/oauth2/revoke",
        "introspection_endpoint": "https://localhost/oauth2/introspect",
        "jwks_uri": "https://localhost/oauth2/jwks",
        "scopes_supported": ["READ", "WRITE", "ADMIN", "SYSTEM_ADMIN"],
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "token_endpoint_auth_methods_supported": auth,
        "revocation_endpoint_auth_methods_supported": auth,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
    });
    assert_eq!(v, expected);
    let fx = Fx::start("allow_plain_pkce = false").await;
    let v: serde_json::Value = fx
        .gw
        .client(true)
        .get(fx.gw.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
}

#[tokio::test]
async fn jwks_publishes_the_key_that_verifies_issued_tokens() {
    let fx = Fx::start("").await;
    let r = fx
        .gw
        .client(true)
        .get(fx.gw.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert!(keys[0].get("d").is_none(), "never the private half");
    let t = fx.tokens("READ").await;
    let header = t.field("access_token");
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            header.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], keys[0]["kid"]);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
}

#[tokio::test]
async fn cors_answers_the_apps_web_origins_only() {
    let fx = Fx::start("").await;
    let foreign = "https://evil.example";
    for path in ["/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"] {
        for (origin, allowed) in [(ORIGIN, true), (foreign, false)] {
            let r = fx
                .gw
                .client(true)
                .request(reqwest::Method::OPTIONS, fx.gw.url(path))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204, "{path} {origin}");
            let acao = r
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(
                acao.as_deref(),
                allowed.then_some(origin),
                "preflight {path} {origin}"
            );
            assert_eq!(r.headers()["vary"], "Origin");
            if allowed {
                assert_eq!(r.headers()["access-control-allow-methods"], "POST");
            }
        }
    }
    let t = fx.tokens("READ").await;
    for (origin, allowed) in [(ORIGIN, true), (foreign, false)] {
        let a = fx
            .post_with(
                "/oauth2/token",
                "",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", "gh_rt_x"),
                ],
                BASIC,
                &[("origin", origin)],
            )
            .await;
        assert_eq!(
            a.header("access-control-allow-origin"),
            allowed.then_some(origin),
            "token {origin}"
        );
        assert_eq!(a.header("vary"), Some("Origin"));
        let a = fx
            .post_with(
                "/oauth2/introspect",
                "",
                &[("token", &t.field("access_token"))],
                BASIC,
                &[("origin", origin)],
            )
            .await;
        assert_eq!(
            a.header("access-control-allow-origin"),
            allowed.then_some(origin),
            "introspect {origin}"
        );
    }
    // Another app's origin is not this app's: the answer to CONF's request is not shared.
    let mut other = fx
        .gateway()
        .store
        .get_app_by_client_id(OTHER)
        .await
        .unwrap()
        .unwrap();
    other.allowed_web_origins = vec!["https://other.example".into()];
    fx.gateway().store.update_app(&other).await.unwrap();
    let a = fx
        .post_with(
            "/oauth2/revoke",
            "",
            &[("token", "x")],
            BASIC,
            &[("origin", "https://other.example")],
        )
        .await;
    assert_eq!(a.header("access-control-allow-origin"), None);
}

/// SPEC §3.1: a cross-site link to `GET /oauth2/logout` only shows a confirmation page; the
/// confirmed POST (its CSRF token bound to the session) ends the session and redirects, only
/// to a registered `post_logout_redirect_uri`, with `state`.
#[tokio::test]
async fn logout_ends_the_session_and_redirects_only_to_registered_urls() {
    let fx = Fx::start("").await;
    let g = fx.gateway();
    let cookie = tokens::session(g, "alice").await;
    let hash = gatehouse::store::secret_hash(&cookie);
    let client = fx.gw.client(true);
    let with_cookie = |r: reqwest::RequestBuilder, value: &str| {
        r.header("cookie", format!("gatehouse_session={value}"))
    };
    let get = |query: String| {
        with_cookie(
            client.get(format!("{}?{query}", fx.gw.url("/oauth2/logout"))),
            &cookie,
        )
        .send()
    };
    let live = || async { g.store.get_session(&hash, g.clock.now()).await.unwrap() };
    let evil = crate::helpers::oauth_fixture::enc("https://evil.example/");
    let r = get(format!(
        "client_id={CONF}&post_logout_redirect_uri={evil}&state=s"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(live().await.is_some(), "session intact");
    let r = get(format!(
        "client_id=nobody&post_logout_redirect_uri={}",
        crate::helpers::oauth_fixture::enc("https://client.example.com/")
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 400, "unknown client");

    // The cross-site link: a confirmation page, and the session lives on.
    let ok = crate::helpers::oauth_fixture::enc("https://client.example.com/");
    let r = get(format!(
        "client_id={CONF}&post_logout_redirect_uri={ok}&state=a%20b%26c"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "a GET never ends the session");
    crate::helpers::login_support::assert_page_headers(&r);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.headers().get("location").is_none());
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("form-action 'self' https://client.example.com"),
        "the redirect after the POST is allowed: {csp}"
    );
    let html = r.text().await.unwrap();
    assert!(live().await.is_some(), "session intact after the GET");
    assert!(html.contains(r#"action="/oauth2/logout""#), "{html}");
    assert!(html.contains("alice"), "{html}");
    assert_eq!(
        crate::helpers::login_support::hidden(&html, "state"),
        "a b&#38;c",
        "escaped"
    );
    assert_eq!(
        crate::helpers::login_support::hidden(&html, "client_id"),
        CONF
    );
    let token = crate::helpers::login_support::hidden(&html, "csrf_token");

    // A POST without the token, or with another session's, ends nothing.
    let other = tokens::session(g, "alice").await;
    let other_page = with_cookie(
        client.get(format!(
            "{}?client_id={CONF}&post_logout_redirect_uri={ok}",
            fx.gw.url("/oauth2/logout")
        )),
        &other,
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let other_token = crate::helpers::login_support::hidden(&other_page, "csrf_token");
    assert_ne!(other_token, token);
    let post = |form: Vec<(&'static str, String)>| {
        with_cookie(client.post(fx.gw.url("/oauth2/logout")), &cookie)
            .form(&form)
            .send()
    };
    let form = |csrf: &str, target: &str| {
        vec![
            ("client_id", CONF.to_owned()),
            ("post_logout_redirect_uri", target.to_owned()),
            ("state", "a b&c".to_owned()),
            ("csrf_token", csrf.to_owned()),
        ]
    };
    let target = "https://client.example.com/";
    for bad in ["", other_token.as_str()] {
        let r = post(form(bad, target)).await.unwrap();
        assert_eq!(r.status(), 400, "csrf_token {bad:?}");
        assert!(r.headers().get("location").is_none());
        assert!(r.headers().get("set-cookie").is_none());
        assert!(live().await.is_some(), "session intact");
    }
    // The right token does not make an unregistered URL acceptable.
    let r = post(form(&token, "https://evil.example/")).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(live().await.is_some(), "session intact");

    // The confirmed POST ends it and goes back to the app with state.
    let r = post(form(&token, target)).await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://client.example.com/?state="),
        "{location}"
    );
    let back: Vec<(String, String)> = reqwest::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(back, [("state".to_owned(), "a b&c".to_owned())]);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.starts_with("gatehouse_session=;") && set_cookie.contains("Max-Age=0"));
    assert!(live().await.is_none(), "session ended");
    let other_hash = gatehouse::store::secret_hash(&other);
    let now = g.clock.now();
    assert!(
        g.store
            .get_session(&other_hash, now)
            .await
            .unwrap()
            .is_some(),
        "only that session"
    );

    // Without a session there is nothing to confirm: straight back to the app.
    let r = client
        .get(format!(
            "{}?client_id={CONF}&post_logout_redirect_uri={ok}&state=z",
            fx.gw.url("/oauth2/logout")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "https://client.example.com/?state=z"
    );
}

#[tokio::test]
async fn a_store_outage_is_503_without_detail_and_never_active() {
    let fx = Fx::start("").await;
    let t = fx.tokens("READ").await;
    fx.gateway().store.close().await;
    let a = fx.refresh(&t.field("refresh_token"), None).await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (503, "temporarily_unavailable")
    );
    assert!(
        !a.text.contains("sqlite") && !a.text.contains("pool"),
        "{}",
        a.text
    );
    assert!(a.header("x-request-id").is_some());
    let a = introspect(&fx, &t.field("access_token"), BASIC).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert!(!a.text.contains("active"));
    let a = fx
        .post(
            "/oauth2/revoke",
            &[("token", &t.field("access_token"))],
            BASIC,
        )
        .await;
    assert_eq!(a.status, 503);
}
