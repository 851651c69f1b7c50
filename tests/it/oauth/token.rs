//! The token endpoint's authorization-code grant (RFC 6749 §4.1.3, RFC 7636, SPEC §3.1,
//! SECURITY.md "OAuth"): each rule with the request that breaks it — PKCE, replay (which
//! revokes what the code issued, seen on a proxied request), codes of other clients, redirect
//! URI, expiry — and the response's shape, headers and metrics.

use std::time::Duration;

use gatehouse::oauth::pkce::s256_challenge;

use crate::helpers::harness::metric_value;
use crate::helpers::oauth_fixture::{
    Auth, CALLBACK, CONF, CONF_SECRET, Fx, OTHER, OTHER_SECRET, PUBLIC, VERIFIER, claims,
};

fn exchange<'a>(code: &'a str, verifier: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    form
}

#[tokio::test]
async fn a_code_becomes_a_bearer_token_the_proxy_accepts() {
    let fx = Fx::start("").await;
    let code = fx.code(CONF, "WRITE", true).await;
    let a = fx.redeem(&code).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("pragma"), Some("no-cache"));
    let body = a.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "access_token",
            "created_at",
            "expires_in",
            "refresh_token",
            "scope",
            "token_type"
        ]
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 7200);
    assert_eq!(body["scope"], "WRITE");
    let now = fx.gateway().clock.unix_seconds();
    assert!((body["created_at"].as_i64().unwrap() - now).abs() <= 2);
    let access = a.field("access_token");
    let c = claims(&access);
    assert_eq!(c["iss"], "https://localhost");
    assert_eq!(c["aud"], "https://localhost");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["client_id"], CONF);
    assert_eq!(c["scope"], "WRITE");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        7200
    );
    assert!(c["jti"].as_str().unwrap().len() >= 16);
    assert!(a.field("refresh_token").starts_with("gh_rt_"));
    assert_eq!(fx.proxied(&access).await, 200);
    let seen = fx.up.last();
    assert_eq!(seen.headers["x-auth-user"], "alice");
    assert_eq!(seen.headers["x-auth-client-id"], CONF);
    let m = fx.gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_tokens_issued_total{grant_type=\"authorization_code\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn pkce_is_enforced_at_the_token_endpoint() {
    let fx = Fx::start("").await;
    let code = fx.code(CONF, "READ", true).await;
    let basic = Auth::Basic(CONF, CONF_SECRET);
    let wrong = "x".repeat(43);
    let plain_attempt = s256_challenge(VERIFIER); // the challenge itself, as a plain verifier
    for (verifier, why) in [
        (None, "missing code_verifier"),
        (Some(wrong.as_str()), "wrong code_verifier"),
        (
            Some(plain_attempt.as_str()),
            "plain verifier against an S256 challenge",
        ),
        (Some("short"), "malformed code_verifier"),
    ] {
        let a = fx
            .post("/oauth2/token", &exchange(&code, verifier), basic)
            .await;
        assert_eq!(
            (a.status, a.error().as_str()),
            (400, "invalid_grant"),
            "{why}"
        );
    }
    // A verifier for a code issued without a challenge is a downgrade attempt.
    let bare = fx.code(CONF, "READ", false).await;
    let a = fx
        .post("/oauth2/token", &exchange(&bare, Some(VERIFIER)), basic)
        .await;
    assert_eq!(a.error(), "invalid_grant", "verifier without a challenge");
    // A public client must use PKCE (oauth.require_pkce = "public").
    let public_bare = fx.code(PUBLIC, "READ", false).await;
    let a = fx
        .post(
            "/oauth2/token",
            &exchange(&public_bare, None),
            Auth::Public(PUBLIC),
        )
        .await;
    assert_eq!(a.error(), "invalid_grant", "public client without PKCE");
    // None of the failures used the code up: the right verifier still redeems it.
    let a = fx
        .post("/oauth2/token", &exchange(&code, Some(VERIFIER)), basic)
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = fx
        .post("/oauth2/token", &exchange(&bare, None), basic)
        .await;
    assert_eq!(
        a.status, 200,
        "a confidential client may skip PKCE: {}",
        a.text
    );
}

#[tokio::test]
async fn plain_pkce_works_unless_switched_off() {
    let fx = Fx::start("").await;
    let code = fx
        .code_with(CONF, "READ", Some((VERIFIER.to_owned(), "plain")))
        .await;
    let a = fx.redeem(&code).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let fx = Fx::start("allow_plain_pkce = false").await;
    let code = fx
        .code_with(CONF, "READ", Some((VERIFIER.to_owned(), "plain")))
        .await;
    let a = fx.redeem(&code).await;
    assert_eq!(a.error(), "invalid_grant");
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_it_issued() {
    let fx = Fx::start("").await;
    let code = fx.code(CONF, "WRITE", true).await;
    let first = fx.redeem(&code).await;
    assert_eq!(first.status, 200);
    let access = first.field("access_token");
    assert_eq!(fx.proxied(&access).await, 200);
    let replay = fx.redeem(&code).await;
    assert_eq!(
        (replay.status, replay.error().as_str()),
        (400, "invalid_grant")
    );
    assert_eq!(
        fx.proxied(&access).await,
        401,
        "the first access token is revoked"
    );
    let r = fx.refresh(&first.field("refresh_token"), None).await;
    assert_eq!(r.error(), "invalid_grant", "and so is its refresh token");
}

#[tokio::test]
async fn a_replay_by_another_client_or_with_a_wrong_verifier_revokes_nothing() {
    let fx = Fx::start("").await;
    let code = fx.code(CONF, "WRITE", true).await;
    let first = fx.redeem(&code).await;
    let access = first.field("access_token");
    let other = fx
        .post(
            "/oauth2/token",
            &exchange(&code, Some(VERIFIER)),
            Auth::Basic(OTHER, OTHER_SECRET),
        )
        .await;
    assert_eq!(other.error(), "invalid_grant");
    let wrong = "y".repeat(43);
    let bad = fx
        .post(
            "/oauth2/token",
            &exchange(&code, Some(&wrong)),
            Auth::Basic(CONF, CONF_SECRET),
        )
        .await;
    assert_eq!(bad.error(), "invalid_grant");
    assert_eq!(
        fx.proxied(&access).await,
        200,
        "the victim's token still works"
    );
}

#[tokio::test]
async fn codes_are_bound_to_client_and_redirect_uri_and_expire() {
    let fx = Fx::start("").await;
    let code = fx.code(CONF, "READ", true).await;
    let a = fx
        .post(
            "/oauth2/token",
            &exchange(&code, Some(VERIFIER)),
            Auth::Basic(OTHER, OTHER_SECRET),
        )
        .await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (400, "invalid_grant"),
        "code of another client"
    );
    let mut form = exchange(&code, Some(VERIFIER));
    form[2].1 = "https://client.example.com/callback/";
    let a = fx
        .post("/oauth2/token", &form, Auth::Basic(CONF, CONF_SECRET))
        .await;
    assert_eq!(a.error(), "invalid_grant", "redirect_uri differs");
    form.remove(2);
    let a = fx
        .post("/oauth2/token", &form, Auth::Basic(CONF, CONF_SECRET))
        .await;
    assert_eq!(a.error(), "invalid_request", "redirect_uri missing");
    let a = fx
        .post(
            "/oauth2/token",
            &exchange("nonsense", Some(VERIFIER)),
            Auth::Basic(CONF, CONF_SECRET),
        )
        .await;
    assert_eq!(a.error(), "invalid_grant", "unknown code");
    fx.advance(Duration::from_secs(61));
    let a = fx.redeem(&code).await;
    assert_eq!(a.error(), "invalid_grant", "expired code");
    let m = fx.gw.metrics().await;
    assert!(
        metric_value(&m, "gatehouse_token_errors_total{error=\"invalid_grant\"}").unwrap() >= 3.0
    );
}

#[tokio::test]
async fn clients_authenticate_by_basic_post_or_as_public_clients() {
    let fx = Fx::start("").await;
    let code = fx.code(CONF, "READ", true).await;
    let a = fx
        .post(
            "/oauth2/token",
            &exchange(&code, Some(VERIFIER)),
            Auth::Post(CONF, CONF_SECRET),
        )
        .await;
    assert_eq!(a.status, 200, "client_secret_post: {}", a.text);
    let code = fx.code(PUBLIC, "READ", true).await;
    let a = fx
        .post(
            "/oauth2/token",
            &exchange(&code, Some(VERIFIER)),
            Auth::Public(PUBLIC),
        )
        .await;
    assert_eq!(a.status, 200, "none, public client: {}", a.text);
    assert_eq!(claims(&a.field("access_token"))["client_id"], PUBLIC);

    let code = fx.code(CONF, "READ", true).await;
    let form = exchange(&code, Some(VERIFIER));
    let a = fx
        .post("/oauth2/token", &form, Auth::Basic(CONF, "wrong-secret"))
        .await;
    assert_eq!((a.status, a.error().as_str()), (401, "invalid_client"));
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm=")
    );
    let a = fx
        .post("/oauth2/token", &form, Auth::Post(CONF, "wrong-secret"))
        .await;
    assert_eq!((a.status, a.error().as_str()), (401, "invalid_client"));
    assert_eq!(
        a.header("www-authenticate"),
        None,
        "no Basic challenge when Basic was not used"
    );
    let a = fx.post("/oauth2/token", &form, Auth::Public(CONF)).await;
    assert_eq!(
        a.error(),
        "invalid_client",
        "a confidential client without its secret"
    );
    let a = fx
        .post("/oauth2/token", &form, Auth::Post(PUBLIC, "anything"))
        .await;
    assert_eq!(a.error(), "invalid_client", "a public client with a secret");
    let a = fx.post("/oauth2/token", &form, Auth::Nothing).await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (401, "invalid_client"),
        "no client at all"
    );
    let mut both = form.clone();
    both.push(("client_secret", CONF_SECRET));
    let a = fx
        .post("/oauth2/token", &both, Auth::Basic(CONF, CONF_SECRET))
        .await;
    assert_eq!(a.error(), "invalid_request", "two authentication methods");
    let a = fx
        .post("/oauth2/token", &form, Auth::Basic("nobody", "x"))
        .await;
    assert_eq!(a.error(), "invalid_client", "unknown client");
    let a = fx.redeem(&code).await;
    assert_eq!(
        a.status, 200,
        "the failures did not use the code: {}",
        a.text
    );
}

#[tokio::test]
async fn a_rotated_secret_works_during_its_grace_only() {
    let fx = Fx::start("").await;
    let g = fx.gateway();
    let id = g
        .store
        .get_app_by_client_id(CONF)
        .await
        .unwrap()
        .unwrap()
        .id;
    let now = g.clock.now();
    let new_secret = "the-new-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
    g.store
        .rotate_app_secret(
            &id,
            gatehouse::store::secret_hash(new_secret),
            Some(now + Duration::from_secs(3600)),
            "users/root",
            now,
        )
        .await
        .unwrap();
    let code = fx.code(CONF, "READ", true).await;
    let form = exchange(&code, Some(VERIFIER));
    let a = fx
        .post("/oauth2/token", &form, Auth::Basic(CONF, CONF_SECRET))
        .await;
    assert_eq!(a.status, 200, "old secret within the grace: {}", a.text);
    fx.advance(Duration::from_secs(3601));
    let code = fx.code(CONF, "READ", true).await;
    let form = exchange(&code, Some(VERIFIER));
    let a = fx
        .post("/oauth2/token", &form, Auth::Basic(CONF, CONF_SECRET))
        .await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (401, "invalid_client"),
        "old secret after the grace"
    );
    let a = fx
        .post("/oauth2/token", &form, Auth::Basic(CONF, new_secret))
        .await;
    assert_eq!(a.status, 200, "new secret: {}", a.text);
}

/// Client authentication remembers the app it read: a secret replaced without a grace, or an
/// app deactivated, through this gateway's store is refused on the very next request.
#[tokio::test]
async fn a_replaced_secret_or_a_deactivated_app_is_refused_at_once_though_remembered() {
    let fx = Fx::start("").await;
    let g = fx.gateway();
    let code = fx.code(CONF, "READ", true).await;
    assert_eq!(
        fx.redeem(&code).await.status,
        200,
        "the app is now remembered"
    );
    let mut app = g.store.get_app_by_client_id(CONF).await.unwrap().unwrap();
    let new_secret = "the-new-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
    let now = g.clock.now();
    let hash = gatehouse::store::secret_hash(new_secret);
    g.store
        .rotate_app_secret(&app.id, hash, None, "users/root", now)
        .await
        .unwrap();
    let code = fx.code(CONF, "READ", true).await;
    let a = fx.redeem_with_secret(&code, CONF_SECRET).await;
    assert_eq!((a.status, a.error().as_str()), (401, "invalid_client"));
    let a = fx.redeem_with_secret(&code, new_secret).await;
    assert_eq!(a.status, 200, "new secret: {}", a.text);
    app.active = false;
    g.store.update_app(&app).await.unwrap();
    let code = fx.code(CONF, "READ", true).await;
    let a = fx.redeem_with_secret(&code, new_secret).await;
    assert_eq!((a.status, a.error().as_str()), (401, "invalid_client"));
}

/// With replicas sharing PostgreSQL, a secret replaced on one is refused on the other as soon
/// as the change's notification arrives; a change that was never announced (written behind
/// the gateways' backs) within `auth.revocation_propagation` of the other's last read.
#[tokio::test]
async fn a_replaced_secret_is_refused_on_the_other_replica() {
    let Some((one, two, db)) = Fx::replicas("app cache on two replicas").await else {
        return;
    };
    let code = two.code(CONF, "READ", true).await;
    assert_eq!(two.redeem(&code).await.status, 200, "two remembers the app");
    let store = &one.gateway().store;
    let app = store.get_app_by_client_id(CONF).await.unwrap().unwrap();
    let new_secret = "the-new-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
    let now = one.gateway().clock.now();
    let hash = gatehouse::store::secret_hash(new_secret);
    store
        .rotate_app_secret(&app.id, hash, None, "users/root", now)
        .await
        .unwrap();
    let old_secret_refused = async {
        loop {
            let code = two.code(CONF, "READ", true).await;
            let a = two.redeem_with_secret(&code, CONF_SECRET).await;
            if a.status == 401 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), old_secret_refused)
        .await
        .expect("the notification reached the other replica");
    let code = two.code(CONF, "READ", true).await;
    let a = two.redeem_with_secret(&code, new_secret).await;
    assert_eq!(a.status, 200, "new secret: {}", a.text);
    // Behind the gateways' backs: no notification, only the age bound.
    use sqlx::Connection as _;
    let mut raw = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE apps SET active = false WHERE client_id = $1")
        .bind(CONF)
        .execute(&mut raw)
        .await
        .unwrap();
    two.advance(Duration::from_secs(1));
    let code = two.code(CONF, "READ", true).await;
    let a = two.redeem_with_secret(&code, new_secret).await;
    assert_eq!((a.status, a.error().as_str()), (401, "invalid_client"));
}

#[tokio::test]
async fn parameters_come_from_body_and_query_but_secrets_not_from_urls() {
    let fx = Fx::start("").await;
    let code = fx.code(CONF, "READ", true).await;
    let query = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}&client_id={CONF}&client_secret={CONF_SECRET}",
        crate::helpers::oauth_fixture::enc(CALLBACK)
    );
    let a = fx
        .post_with("/oauth2/token", &query, &[], Auth::Nothing, &[])
        .await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (400, "invalid_request"),
        "client_secret in the URL"
    );
    assert!(a.text.contains("URL"));
    // Everything but the secret in the query string, on a Confluence path: accepted.
    let query = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
        crate::helpers::oauth_fixture::enc(CALLBACK)
    );
    let a = fx
        .post_with(
            "/rest/oauth2/latest/token",
            &query,
            &[],
            Auth::Basic(CONF, CONF_SECRET),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    // A parameter twice, in the body or across body and query: refused.
    let code = fx.code(CONF, "READ", true).await;
    let mut twice = exchange(&code, Some(VERIFIER));
    twice.push(("code", &code));
    let a = fx
        .post("/oauth2/token", &twice, Auth::Basic(CONF, CONF_SECRET))
        .await;
    assert_eq!(a.error(), "invalid_request", "repeated in the body");
    let a = fx
        .post_with(
            "/oauth2/token",
            "grant_type=authorization_code",
            &exchange(&code, Some(VERIFIER)),
            Auth::Basic(CONF, CONF_SECRET),
            &[],
        )
        .await;
    assert_eq!(
        a.error(),
        "invalid_request",
        "repeated across query and body"
    );
    let a = fx
        .post(
            "/oauth2/token",
            &[("grant_type", "password")],
            Auth::Basic(CONF, CONF_SECRET),
        )
        .await;
    assert_eq!(a.error(), "unsupported_grant_type");
    let a = fx
        .post("/oauth2/token", &[], Auth::Basic(CONF, CONF_SECRET))
        .await;
    assert_eq!(a.error(), "invalid_request", "no grant_type");
    let r = fx
        .gw
        .client(true)
        .get(fx.gw.url("/oauth2/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn the_query_may_carry_the_secret_when_allowed() {
    let fx = Fx::start("allow_query_credentials = true").await;
    let code = fx.code(CONF, "READ", true).await;
    let query = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}&client_id={CONF}&client_secret={CONF_SECRET}",
        crate::helpers::oauth_fixture::enc(CALLBACK)
    );
    let a = fx
        .post_with("/rest/oauth2/1.0/token", &query, &[], Auth::Nothing, &[])
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
}

#[tokio::test]
async fn inactive_and_deleted_apps_cannot_use_the_token_endpoint() {
    let fx = Fx::start("").await;
    let g = fx.gateway();
    let tokens = fx.tokens("READ").await;
    let code = fx.code(CONF, "READ", true).await;
    let mut app = g.store.get_app_by_client_id(CONF).await.unwrap().unwrap();
    app.active = false;
    g.store.update_app(&app).await.unwrap();
    let a = fx.redeem(&code).await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (401, "invalid_client"),
        "inactive app"
    );
    let a = fx.refresh(&tokens.field("refresh_token"), None).await;
    assert_eq!(a.error(), "invalid_client");
    assert_eq!(fx.proxied(&tokens.field("access_token")).await, 401);
    g.store.delete_app(&app.id).await.unwrap();
    let a = fx.redeem(&code).await;
    assert_eq!(a.error(), "invalid_client", "deleted app");
}

#[tokio::test]
async fn guessing_a_client_secret_is_throttled() {
    let fx = Fx::start("").await;
    let code = fx.code(CONF, "READ", true).await;
    let form = exchange(&code, Some(VERIFIER));
    for i in 0..10 {
        let a = fx
            .post(
                "/oauth2/token",
                &form,
                Auth::Basic(CONF, &format!("guess-{i}")),
            )
            .await;
        assert_eq!(a.status, 401, "guess {i}");
    }
    let a = fx
        .post("/oauth2/token", &form, Auth::Basic(CONF, CONF_SECRET))
        .await;
    assert_eq!(a.status, 429, "even the right secret waits: {}", a.text);
    assert!(a.header("retry-after").unwrap().parse::<u64>().unwrap() <= 60);
    let a = fx
        .post(
            "/oauth2/introspect",
            &[("token", "x")],
            Auth::Post(CONF, CONF_SECRET),
        )
        .await;
    assert_eq!(
        a.status, 429,
        "on every endpoint that authenticates clients"
    );
    let other = fx.code(OTHER, "READ", true).await;
    let a = fx
        .post(
            "/oauth2/token",
            &exchange(&other, Some(VERIFIER)),
            Auth::Basic(OTHER, OTHER_SECRET),
        )
        .await;
    assert_eq!(a.status, 200, "other clients are not affected: {}", a.text);
    fx.advance(Duration::from_secs(61));
    let fresh = fx.code(CONF, "READ", true).await;
    let a = fx.redeem(&fresh).await;
    assert_eq!(a.status, 200, "after the window: {}", a.text);
}

/// Ten wrong secrets for [`CONF`] sent with `headers`; each must be a plain 401.
async fn ten_wrong_secrets(fx: &Fx, form: &[(&str, &str)], headers: &[(&str, &str)]) {
    for i in 0..10 {
        let guess = format!("guess-{i}");
        let a = fx
            .post_with(
                "/oauth2/token",
                "",
                form,
                Auth::Basic(CONF, &guess),
                headers,
            )
            .await;
        assert_eq!(a.status, 401, "guess {i}: {}", a.text);
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_secret_guesses_count_against_the_forwarded_address() {
    // A load balancer at 127.0.0.1: every client's TCP peer is the balancer.
    let fx = Fx::start_with("trusted_proxies = [\"127.0.0.1/32\"]", "").await;
    let code = fx.code(CONF, "READ", true).await;
    let form = exchange(&code, Some(VERIFIER));
    let attacker = [("x-forwarded-for", "203.0.113.7")];
    ten_wrong_secrets(&fx, &form, &attacker).await;
    let right = Auth::Basic(CONF, CONF_SECRET);
    let a = fx
        .post_with("/oauth2/token", "", &form, right, &attacker)
        .await;
    assert_eq!(a.status, 429, "the guessing address waits: {}", a.text);
    // Entries the attacker adds on the left of the balancer's do not change who they are.
    let spoofed = [("x-forwarded-for", "198.51.100.1, 203.0.113.7")];
    let a = fx
        .post_with("/oauth2/token", "", &form, right, &spoofed)
        .await;
    assert_eq!(a.status, 429, "a spoofed left-most entry: {}", a.text);
    let a = fx
        .post_with(
            "/oauth2/introspect",
            "",
            &[("token", "x")],
            right,
            &attacker,
        )
        .await;
    assert_eq!(a.status, 429, "introspection resolves the address too");
    // The app's real backend, behind the same balancer, is not locked out.
    let victim = [("x-forwarded-for", "192.0.2.10")];
    let a = fx
        .post_with("/oauth2/token", "", &form, right, &victim)
        .await;
    assert_eq!(a.status, 200, "another client address: {}", a.text);
    // An RFC 7239 `Forwarded` header from the balancer is understood as well.
    let code = fx.code(CONF, "READ", true).await;
    let form = exchange(&code, Some(VERIFIER));
    let forwarded = [("forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https")];
    let a = fx
        .post_with("/oauth2/token", "", &form, right, &forwarded)
        .await;
    assert_eq!(a.status, 200, "Forwarded: for=: {}", a.text);
    let attacker_forwarded = [("forwarded", "for=203.0.113.7")];
    let a = fx
        .post_with(
            "/oauth2/revoke",
            "",
            &[("token", "x")],
            right,
            &attacker_forwarded,
        )
        .await;
    assert_eq!(a.status, 429, "the same address through Forwarded");
}

#[tokio::test]
async fn an_untrusted_peers_forwarded_for_is_ignored_by_the_client_throttle() {
    let fx = Fx::start("").await;
    let code = fx.code(CONF, "READ", true).await;
    let form = exchange(&code, Some(VERIFIER));
    ten_wrong_secrets(&fx, &form, &[("x-forwarded-for", "203.0.113.7")]).await;
    let right = Auth::Basic(CONF, CONF_SECRET);
    for headers in [
        [("x-forwarded-for", "192.0.2.10")],
        [("forwarded", "for=192.0.2.10")],
    ] {
        let a = fx
            .post_with("/oauth2/token", "", &form, right, &headers)
            .await;
        assert_eq!(
            a.status, 429,
            "{headers:?}: the peer is the client: {}",
            a.text
        );
    }
}

#[tokio::test]
async fn parallel_secret_guesses_get_no_more_tries_than_sequential_ones() {
    let fx = Fx::start("").await;
    let code = fx.code(CONF, "READ", true).await;
    let form = exchange(&code, Some(VERIFIER));
    let guesses: Vec<String> = (0..40).map(|i| format!("guess-{i}")).collect();
    let answers = futures_util::future::join_all(
        guesses
            .iter()
            .map(|guess| fx.post("/oauth2/token", &form, Auth::Basic(CONF, guess))),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(checked <= 10, "{checked} secrets checked: {statuses:?}");
    assert_eq!(checked + throttled, 40, "{statuses:?}");
}
