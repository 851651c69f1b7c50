//! The token-enforcing proxy (SPEC §3.4, RFC 6750, SECURITY.md "Tokens on proxied routes"):
//! every decision with its status and `WWW-Authenticate`, identity headers the upstream can
//! trust, the validation cache, and revocation reaching the next request (across replicas:
//! `auth_replicas`).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use gatehouse::auth::jwt::VerifyPolicy;
use gatehouse::store::secret_hash;

use crate::helpers::harness::tokens::{self, Minted};
use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{TestGateway, USERS, metric_value};

const HOUR: Duration = Duration::from_secs(3600);

pub(crate) fn routes(up: &Upstream, extra_route: &str) -> String {
    format!(
        "{USERS}\n[[routes]]\npath = \"/rest/api\"\nupstream = \"http://{a}\"\nauth = \"bearer\"\nscopes = {{ GET = \"READ\", HEAD = \"READ\", \"*\" = \"WRITE\" }}\n\n[[routes]]\npath = \"/rest/admin\"\nupstream = \"http://{a}\"\nauth = \"bearer\"\nscope = \"ADMIN\"\n\n[[routes]]\npath = \"/wiki\"\nupstream = \"http://{a}\"\nauth = \"session\"\nscope = \"READ\"\n{extra_route}",
        a = up.addr
    )
}

async fn setup(extra_route: &str) -> (Upstream, TestGateway) {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &routes(&up, extra_route)).await;
    (up, gw)
}

async fn get(gw: &TestGateway, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = gw.client(true).get(gw.url(path));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send().await.unwrap()
}

pub(crate) fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn assert_invalid(gw: &TestGateway, token: &str, why: &str) {
    let r = get(gw, "/rest/api/content", Some(token)).await;
    assert_eq!(r.status(), 401, "{why}");
    let c = challenge(&r);
    assert!(
        c.starts_with("Bearer realm=\"gatehouse\", error=\"invalid_token\""),
        "{why}: {c}"
    );
}

fn forge(header: serde_json::Value, claims: &serde_json::Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string()),
        B64.encode(signature)
    )
}

#[tokio::test]
async fn missing_malformed_and_forged_tokens_are_refused_with_rfc_6750_answers() {
    let (up, gw) = setup("").await;
    let g = &gw.gateway;
    let r = get(&gw, "/rest/api/content", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        challenge(&r),
        "Bearer realm=\"gatehouse\"",
        "no error code without credentials"
    );
    let r = gw
        .client(true)
        .get(gw.url("/rest/api/x"))
        .header("authorization", "Basic YWxpY2U6cHc=")
        .send()
        .await
        .unwrap();
    assert_eq!(challenge(&r), "Bearer realm=\"gatehouse\"");
    for bad in ["Bearer", "Bearer a b", "Bearer ä"] {
        let r = gw
            .client(true)
            .get(gw.url("/rest/api/x"))
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{bad}");
        assert!(challenge(&r).contains("invalid_token"), "{bad}");
    }
    let good = tokens::access_token(g, "app1", "alice", "WRITE", HOUR).await;
    let claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(good.token.split('.').nth(1).unwrap()).unwrap())
            .unwrap();
    let kid = g.keys.current_kid().to_string();

    let mut tampered = good.token.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    assert_invalid(&gw, &tampered, "bad signature").await;
    let none = forge(
        serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
        &claims,
        b"",
    );
    assert_invalid(&gw, &none, "alg none").await;
    let x = B64.decode(&g.keys.jwks().keys[0].x).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&x),
    )
    .unwrap();
    assert_invalid(&gw, &hs256, "HS256 keyed with the public key").await;
    let other = gatehouse::auth::keys::SigningKeys::generate().unwrap();
    let claims_struct = tokens::claims(
        g,
        "alice",
        "WRITE",
        Some("app1"),
        &good.jti,
        Some(&good.grant_id),
        HOUR,
    );
    assert_invalid(
        &gw,
        &other.sign_access_token(&claims_struct).unwrap(),
        "unknown kid",
    )
    .await;
    let mut wrong_iss = claims_struct.clone();
    wrong_iss.iss = "https://evil.example".into();
    assert_invalid(
        &gw,
        &g.keys.sign_access_token(&wrong_iss).unwrap(),
        "wrong issuer",
    )
    .await;
    let mut wrong_aud = claims_struct.clone();
    wrong_aud.aud = "https://other.example".into();
    assert_invalid(
        &gw,
        &g.keys.sign_access_token(&wrong_aud).unwrap(),
        "wrong audience",
    )
    .await;
    let mut later = claims_struct.clone();
    later.nbf = Some(g.clock.unix_seconds() + 600);
    assert_invalid(
        &gw,
        &g.keys.sign_access_token(&later).unwrap(),
        "not yet valid",
    )
    .await;
    assert_invalid(
        &gw,
        "gh_pat_unknownunknownunknownunknownunknown",
        "unknown PAT",
    )
    .await;
    assert_eq!(up.count(), 0, "nothing reached the upstream");

    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_auth_decisions_total{result=\"missing\",route=\"/rest/api\"}"
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_auth_decisions_total{result=\"bad_signature\",route=\"/rest/api\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_auth_decisions_total{result=\"unknown_kid\",route=\"/rest/api\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_auth_decisions_total{result=\"wrong_issuer\",route=\"/rest/api\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn allowed_requests_carry_identity_and_never_the_token_or_forged_headers() {
    let (up, gw) = setup("").await;
    let t = tokens::access_token(&gw.gateway, "reporting", "alice", "WRITE", HOUR).await;
    let r = gw
        .client(true)
        .post(gw.url("/rest/api/content"))
        .header("authorization", format!("Bearer {}", t.token))
        .header("x-auth-user", "root")
        .header("x_auth_user", "root")
        .header("X.Auth.Scopes", "SYSTEM_ADMIN")
        .header("x-auth-client-id", "evil")
        .header("x-auth-assertion", "forged")
        .header("connection", "x-auth-user")
        .header("cookie", "gatehouse_session=abc; theme=dark")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last().headers;
    assert_eq!(seen["x-auth-user"], "alice");
    assert_eq!(seen["x-auth-scopes"], "READ WRITE");
    assert_eq!(seen["x-auth-client-id"], "reporting");
    assert_eq!(seen.get_all("x-auth-user").iter().count(), 1);
    for gone in [
        "authorization",
        "x_auth_user",
        "x.auth.scopes",
        "x-auth-assertion",
    ] {
        assert!(seen.get(gone).is_none(), "{gone} reached the upstream");
    }
    assert_eq!(
        seen["cookie"], "theme=dark",
        "the session cookie stays with the gateway"
    );
}

/// RFC 6750 §2.3 is not offered: a token is read from the `Authorization` header only, never
/// from the query string or a form body, and one in the URL does not reach the upstream's
/// decision either.
#[tokio::test]
async fn a_token_outside_the_authorization_header_is_not_accepted() {
    let (up, gw) = setup("").await;
    let t = tokens::access_token(&gw.gateway, "reporting", "alice", "WRITE", HOUR).await;
    let before = up.count();
    let r = get(
        &gw,
        &format!("/rest/api/content?access_token={}", t.token),
        None,
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        challenge(&r),
        "Bearer realm=\"gatehouse\"",
        "no error code: no token was presented"
    );
    let r = gw
        .client(true)
        .post(gw.url("/rest/api/content"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={}", t.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(up.count(), before, "nothing reached the upstream");
    assert_eq!(
        get(&gw, "/rest/api/content", Some(&t.token)).await.status(),
        200
    );
}

#[tokio::test]
async fn scopes_per_method_and_insufficient_scope() {
    let (up, gw) = setup("").await;
    let read = tokens::access_token(&gw.gateway, "app1", "alice", "READ", HOUR).await;
    assert_eq!(
        get(&gw, "/rest/api/content", Some(&read.token))
            .await
            .status(),
        200
    );
    let r = gw
        .client(true)
        .delete(gw.url("/rest/api/content/1"))
        .bearer_auth(&read.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        challenge(&r),
        "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"WRITE\""
    );
    let r = get(&gw, "/rest/admin/settings", Some(&read.token)).await;
    assert_eq!(r.status(), 403);
    assert!(challenge(&r).ends_with("scope=\"ADMIN\""));
    // alice's max is WRITE: a token claiming ADMIN is capped at WRITE.
    let capped = tokens::access_token(&gw.gateway, "app1", "alice", "ADMIN", HOUR).await;
    assert_eq!(
        get(&gw, "/rest/admin/x", Some(&capped.token))
            .await
            .status(),
        403
    );
    let root = tokens::access_token(&gw.gateway, "app1", "root", "ADMIN", HOUR).await;
    assert_eq!(
        get(&gw, "/rest/admin/x", Some(&root.token)).await.status(),
        200
    );
    assert_eq!(up.last().headers["x-auth-scopes"], "READ WRITE ADMIN");
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn expiry_follows_the_clock_with_a_small_leeway() {
    let (_up, gw) = setup("").await;
    let t = tokens::access_token(
        &gw.gateway,
        "app1",
        "alice",
        "READ",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(get(&gw, "/rest/api/x", Some(&t.token)).await.status(), 200);
    gw.gateway.clock.advance(Duration::from_secs(61));
    assert_eq!(
        get(&gw, "/rest/api/x", Some(&t.token)).await.status(),
        200,
        "within the 5 s leeway"
    );
    gw.gateway.clock.advance(Duration::from_secs(10));
    let r = get(&gw, "/rest/api/x", Some(&t.token)).await;
    assert_eq!(
        r.status(),
        401,
        "a cached validation does not outlive the token"
    );
    assert!(challenge(&r).contains("expired"), "{}", challenge(&r));
}

async fn assert_revoked_next(
    gw: &TestGateway,
    t: &Minted,
    revoke: impl std::future::Future<Output = ()>,
) {
    assert_eq!(
        get(gw, "/rest/api/x", Some(&t.token)).await.status(),
        200,
        "valid before (and cached)"
    );
    revoke.await;
    let r = get(gw, "/rest/api/x", Some(&t.token)).await;
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("invalid_token"));
}

#[tokio::test]
async fn revocation_takes_effect_on_the_very_next_request() {
    let (_up, gw) = setup("").await;
    let g = &gw.gateway;
    let now = g.clock.now();
    let t = tokens::access_token(g, "app1", "alice", "READ", HOUR).await;
    assert_revoked_next(&gw, &t, async {
        g.store
            .revoke_access_token(&t.jti, Some(&t.grant_id), now + HOUR, now)
            .await
            .unwrap()
    })
    .await;

    let t = tokens::access_token(g, "app1", "alice", "READ", HOUR).await;
    assert_revoked_next(&gw, &t, async {
        assert!(g.store.revoke_grant(&t.grant_id, now).await.unwrap())
    })
    .await;

    let t = tokens::access_token(g, "app2", "alice", "READ", HOUR).await;
    let sibling = tokens::access_token(g, "app2", "alice", "READ", HOUR).await;
    assert_revoked_next(&gw, &t, async {
        let mut app = g.store.get_app(&t.app_id).await.unwrap().unwrap();
        app.active = false;
        g.store.update_app(&app).await.unwrap();
    })
    .await;
    assert_eq!(
        get(&gw, "/rest/api/x", Some(&sibling.token)).await.status(),
        401,
        "every token of a deactivated app"
    );

    let t = tokens::access_token(g, "app3", "alice", "READ", HOUR).await;
    assert_revoked_next(&gw, &t, async {
        g.store.delete_app(&t.app_id).await.unwrap()
    })
    .await;

    let t = tokens::access_token(g, "app4", "alice", "READ", HOUR).await;
    assert_revoked_next(&gw, &t, async {
        let next = gatehouse::store::NewRefreshToken {
            hash: secret_hash("gh_rt_next-generation"),
            expire_time: now + HOUR,
            access_jti: Some("next-jti".into()),
            access_expire_time: Some(now + HOUR),
        };
        let outcome = g
            .store
            .rotate_refresh_token(&secret_hash(&t.refresh), "app4", &next, now)
            .await
            .unwrap();
        assert!(matches!(
            outcome,
            gatehouse::store::RotateOutcome::Rotated { .. }
        ));
    })
    .await;

    let (pat, pat_id) = tokens::pat(g, "alice", "READ").await;
    assert_eq!(get(&gw, "/rest/api/x", Some(&pat)).await.status(), 200);
    g.store.delete_pat("alice", &pat_id).await.unwrap();
    assert_eq!(
        get(&gw, "/rest/api/x", Some(&pat)).await.status(),
        401,
        "a deleted PAT fails at once"
    );
}

#[tokio::test]
async fn the_cache_makes_repeats_cheap_including_bad_tokens() {
    let (_up, gw) = setup("").await;
    let t = tokens::access_token(&gw.gateway, "app1", "alice", "READ", HOUR).await;
    for _ in 0..5 {
        assert_eq!(get(&gw, "/rest/api/x", Some(&t.token)).await.status(), 200);
    }
    let bogus = format!("{}x", t.token);
    for _ in 0..5 {
        assert_eq!(get(&gw, "/rest/api/x", Some(&bogus)).await.status(), 401);
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "gatehouse_token_cache_requests_total{result=\"miss\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "gatehouse_token_cache_requests_total{result=\"hit\"}"),
        Some(8.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "gatehouse_token_cache_entries"),
        Some(2.0),
        "{m}"
    );
}

#[tokio::test]
async fn sessions_send_browsers_to_login_and_serve_logged_in_users() {
    let (up, gw) = setup("").await;
    let browser = gw.client(true);
    let r = browser
        .get(gw.url("/wiki/page?id=7&x=a b"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/login?return_to=/wiki/page%3Fid%3D7%26x%3Da%2520b"
    );
    let r = browser
        .get(gw.url("/wiki/page"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let cookie = tokens::session(&gw.gateway, "alice").await;
    let r = browser
        .get(gw.url("/wiki/page"))
        .header("cookie", format!("gatehouse_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().headers["x-auth-user"], "alice");
    assert_eq!(
        up.last().headers["x-auth-scopes"],
        "READ WRITE",
        "a session carries the user's max_scope"
    );
    assert!(up.last().headers.get("cookie").is_none());
    let t = tokens::access_token(&gw.gateway, "app1", "alice", "READ", HOUR).await;
    assert_eq!(
        get(&gw, "/wiki/page", Some(&t.token)).await.status(),
        200,
        "bearer tokens work on session routes"
    );
    let r = browser
        .get(gw.url("/wiki/page"))
        .header("cookie", "gatehouse_session=forged")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "an unknown session is no session");
    // A second session cookie (one tossed in by a sibling domain): neither is trusted, the
    // same reading as the login pages'.
    let r = browser
        .get(gw.url("/wiki/page"))
        .header(
            "cookie",
            format!("gatehouse_session={cookie}; gatehouse_session=tossed"),
        )
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "two session cookies are no session");
}

#[tokio::test]
async fn forward_authorization_and_signed_assertions() {
    let up = Upstream::start().await;
    let extra = format!(
        "\n[[routes]]\npath = \"/raw\"\nupstream = \"http://{a}\"\nauth = \"bearer\"\nscope = \"READ\"\nforward_authorization = true\n\n[[routes]]\npath = \"/signed\"\nupstream = \"http://{a}/base\"\nauth = \"bearer\"\nscope = \"READ\"\nassertion = true\n",
        a = up.addr
    );
    let gw = TestGateway::start("", &routes(&up, &extra)).await;
    let g = &gw.gateway;
    let t = tokens::access_token(g, "app1", "alice", "READ", HOUR).await;
    assert_eq!(get(&gw, "/raw/x", Some(&t.token)).await.status(), 200);
    assert_eq!(
        up.last().headers["authorization"],
        format!("Bearer {}", t.token)
    );
    assert_eq!(get(&gw, "/signed/x", Some(&t.token)).await.status(), 200);
    let seen = up.last();
    assert_eq!(seen.uri, "/base/signed/x");
    let assertion = seen.headers["x-auth-assertion"].to_str().unwrap();
    let policy = VerifyPolicy {
        issuer: "https://localhost".into(),
        audience: format!("http://{}/base", up.addr),
        leeway: 5,
    };
    let claims = g
        .keys
        .verify_assertion(assertion, g.clock.unix_seconds(), &policy)
        .unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.exp - claims.iat, 60);
    assert!(
        g.keys
            .verify_access_token(assertion, g.clock.unix_seconds(), &policy)
            .is_err(),
        "an assertion is no access token"
    );
}
