//! Foreign access tokens on bearer routes (SPEC §7.2) through the real listener, with tokens
//! the real provider issues: accepted where the route lists the issuer, refused elsewhere and
//! whenever they do not verify; key rotation and the refresh limit; the issuer down; opaque
//! tokens through introspection; the management API closed to them.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use super::keys::provider_config;
use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{ConfigDir, TestGateway, USERS, metric_value, poll_until};
use crate::helpers::idp::{self, Idp};

const CLIENT: (&str, &str) = ("gatehouse", "gatehouse-secret");

/// The gateway's config: `corp` is the provider; `/corp` takes only its tokens, `/own` only
/// gatehouse's, `/both` either, `/corp-admins` corp tokens of the wiki-admins group.
fn gateway_config(idp: &Idp, up: &Upstream, issuer_extra: &str, extra: &str) -> String {
    let a = up.addr;
    let prefix = if issuer_extra.contains("username_prefix") {
        ""
    } else {
        "username_prefix = \"corp:\""
    };
    format!(
        r#"{USERS}
[auth]
leeway = "1s"

[[issuers]]
name = "corp"
issuer = "{issuer}"
audiences = ["gatehouse"]
username_claim = "preferred_username"
{prefix}
scope_map = {{ "wiki.read" = "READ", "wiki.write" = "WRITE", "wiki.admin" = "ADMIN" }}
max_scope = "WRITE"
introspection_endpoint = "{issuer}/token/introspection"
introspection_client_id = "gatehouse"
introspection_client_secret = "gatehouse-secret"
ca = "{ca}"
{issuer_extra}

[[routes]]
path = "/corp"
upstream = "http://{a}"
scope = "READ"
issuers = ["corp"]

[[routes]]
path = "/own"
upstream = "http://{a}"
scope = "READ"

[[routes]]
path = "/both"
upstream = "http://{a}"
scopes = {{ GET = "READ", "*" = "WRITE" }}
issuers = ["self", "corp"]

[[routes]]
path = "/corp-admins"
upstream = "http://{a}"
scope = "READ"
issuers = ["corp"]
allow_groups = ["wiki-admins"]
{extra}
"#,
        issuer = idp.issuer,
        ca = idp.ca_path.display(),
    )
}

struct Setup {
    idp: Idp,
    up: Upstream,
    gw: TestGateway,
}

async fn setup(what: &str, issuer_extra: &str, extra: &str) -> Option<Setup> {
    let dir = ConfigDir::new();
    let idp = idp::start_or_skip(&dir.pki, provider_config(), what).await?;
    let up = Upstream::start().await;
    let gw = TestGateway::start_in(dir, "", &gateway_config(&idp, &up, issuer_extra, extra)).await;
    Some(Setup { idp, up, gw })
}

impl Setup {
    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.gw
            .client(true)
            .get(self.gw.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn machine_token(&self, resource: &str, scope: &str) -> String {
        let t = self
            .idp
            .client_credentials(CLIENT.0, CLIENT.1, resource, scope)
            .await;
        t["access_token"].as_str().unwrap().to_string()
    }

    async fn alice_token(&self, resource: &str, scope: &str) -> String {
        let t = self
            .idp
            .user_tokens(
                "wiki-app",
                "wiki-secret",
                "https://app.example/callback",
                "alice",
                "alice-pw",
                resource,
                scope,
            )
            .await;
        t["access_token"].as_str().unwrap().to_string()
    }

    async fn metric(&self, name: &str) -> f64 {
        metric_value(&self.gw.metrics().await, name).unwrap_or(0.0)
    }

    async fn introspections(&self) -> u64 {
        self.idp.stats().await["introspections"].as_u64().unwrap()
    }

    async fn jwks_fetches(&self) -> u64 {
        self.idp.stats().await["jwks_requests"].as_u64().unwrap()
    }

    /// Waits for the key set's first background fetch, so that counts start from it (generous:
    /// on a loaded machine the first fetch may time out and be retried).
    async fn keys_loaded(&self) {
        poll_until(Duration::from_secs(30), || async {
            self.metric(r#"gatehouse_jwks_refreshes_total{issuer="corp",result="ok"}"#)
                .await
                >= 1.0
        })
        .await;
    }
}

fn header(r: &Value, name: &str) -> String {
    r[name].as_str().unwrap_or_default().to_string()
}

/// The upstream's view of the last request: the identity headers.
fn identity(up: &Upstream) -> Value {
    let h = up.last().headers;
    let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string());
    json!({
        "user": get("x-auth-user"),
        "scopes": get("x-auth-scopes"),
        "client": get("x-auth-client-id"),
        "groups": get("x-auth-groups"),
    })
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn assert_invalid_token(s: &Setup, path: &str, token: &str, why: &str) {
    let r = s.get(path, token).await;
    assert_eq!(r.status(), 401, "{why}");
    let c = challenge(&r);
    assert!(c.contains("error=\"invalid_token\""), "{why}: {c}");
}

#[tokio::test]
async fn foreign_jwts_reach_the_routes_that_list_their_issuer_with_mapped_identity() {
    let Some(s) = setup("federation::tokens", "", "").await else {
        return;
    };
    let before = s.up.count();
    for resource in [
        "https://rs256.example",
        "https://es256.example",
        "https://eddsa.example",
    ] {
        let token = s.machine_token(resource, "wiki.read").await;
        let r = s.get("/corp/page", &token).await;
        assert_eq!(r.status(), 200, "{resource}");
        let id = identity(&s.up);
        assert_eq!(header(&id, "user"), "corp:svc-reports", "{resource}");
        assert_eq!(header(&id, "scopes"), "READ");
        assert_eq!(header(&id, "client"), "gatehouse");
        assert_eq!(header(&id, "groups"), "robots");
        // A route that lists "self" and corp takes it too; one that lists only "self" does not.
        assert_eq!(s.get("/both/page", &token).await.status(), 200);
        assert_invalid_token(&s, "/own/page", &token, "a route without corp").await;
    }
    assert_eq!(s.up.count(), before + 6);

    // A user's token: scopes mapped (wiki.admin → ADMIN, capped at max_scope WRITE), groups.
    let alice = s
        .alice_token(
            "https://es256.example",
            "openid profile groups wiki.read wiki.write wiki.admin",
        )
        .await;
    let r =
        s.gw.client(true)
            .post(s.gw.url("/both/edit"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200, "WRITE from wiki.write");
    let id = identity(&s.up);
    assert_eq!(header(&id, "user"), "corp:alice");
    assert_eq!(
        header(&id, "scopes"),
        "READ WRITE",
        "ADMIN is beyond max_scope"
    );
    assert_eq!(header(&id, "client"), "wiki-app");
    assert_eq!(header(&id, "groups"), "staff wiki-admins");
    assert_eq!(s.get("/corp-admins/x", &alice).await.status(), 200);

    // Only wiki.read: READ, so POST needs WRITE; the robot is not in wiki-admins.
    let reader = s.machine_token("https://rs256.example", "wiki.read").await;
    let r =
        s.gw.client(true)
            .post(s.gw.url("/both/edit"))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 403);
    assert!(challenge(&r).contains("insufficient_scope"));
    assert_eq!(s.get("/corp-admins/x", &reader).await.status(), 403);
    // A token without any mapped scope holds nothing.
    let none = s.machine_token("https://rs256.example", "").await;
    assert_eq!(s.get("/corp/page", &none).await.status(), 403);
}

#[tokio::test]
async fn foreign_tokens_that_do_not_verify_are_invalid_token() {
    let Some(s) = setup("federation::tokens", "", "").await else {
        return;
    };
    // Another audience.
    let other = s.machine_token("https://other.example", "wiki.read").await;
    assert_invalid_token(&s, "/corp/x", &other, "aud someone-else").await;

    // Another issuer: a second provider the gateway does not know.
    let dir = ConfigDir::new();
    let stranger = Idp::start(&dir.pki, provider_config()).await;
    let t = stranger
        .client_credentials(CLIENT.0, CLIENT.1, "https://es256.example", "wiki.read")
        .await;
    assert_invalid_token(
        &s,
        "/corp/x",
        t["access_token"].as_str().unwrap(),
        "unknown iss",
    )
    .await;

    // Expired: a 1 s token, used after its expiry and the 1 s leeway.
    let short = s.machine_token("https://short.example", "wiki.read").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = s.get("/corp/x", &short).await;
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("expired"), "{}", challenge(&r));

    let good = s.machine_token("https://rs256.example", "wiki.read").await;
    let parts: Vec<&str> = good.split('.').collect();
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();

    // alg none, with the real kid and claims.
    let none_header = json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]});
    let none = format!("{}.{}.", B64.encode(none_header.to_string()), parts[1]);
    assert_invalid_token(&s, "/corp/x", &none, "alg none").await;

    // HS256 keyed with the provider's published RSA key (the classic confusion), in the two
    // forms an attacker would try: the JWK's JSON and its modulus.
    let jwks: Value = s
        .idp
        .http
        .get(s.idp.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap()
        .clone();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(header["kid"].as_str().unwrap().to_string());
    hs.typ = Some("at+jwt".into());
    for secret in [
        rsa.to_string().into_bytes(),
        B64.decode(rsa["n"].as_str().unwrap()).unwrap(),
    ] {
        let forged = jsonwebtoken::encode(
            &hs,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_invalid_token(&s, "/corp/x", &forged, "HS256 with the public key").await;
    }

    // A changed claim breaks the signature.
    let mut tampered = claims.clone();
    tampered["scope"] = json!("wiki.read wiki.write wiki.admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(tampered.to_string()),
        parts[2]
    );
    assert_invalid_token(&s, "/corp/x", &tampered, "tampered payload").await;

    // The untouched token still works: none of the above was its fault.
    assert_eq!(s.get("/corp/x", &good).await.status(), 200);
}

/// A JWT that names the provider as its issuer and a `kid` it never published.
fn made_up_kid(issuer: &str, kid: &str) -> String {
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": kid});
    let claims = json!({"iss": issuer, "aud": "gatehouse", "sub": "x", "exp": 4_000_000_000u64});
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string()),
        B64.encode([7u8; 256])
    )
}

#[tokio::test]
async fn a_rotated_key_is_fetched_at_once_and_made_up_kids_fetch_at_most_once_per_10s() {
    let Some(s) = setup("federation::tokens", "", "").await else {
        return;
    };
    s.keys_loaded().await;
    let first = s.jwks_fetches().await;
    let before = s.machine_token("https://es256.example", "wiki.read").await;
    assert_eq!(s.get("/corp/x", &before).await.status(), 200);
    assert_eq!(s.jwks_fetches().await, first, "known kid: no fetch");

    let new_kids = s.idp.rotate().await;
    let after = s.machine_token("https://es256.example", "wiki.read").await;
    let kid = {
        let h: Value =
            serde_json::from_slice(&B64.decode(after.split('.').next().unwrap()).unwrap()).unwrap();
        h["kid"].as_str().unwrap().to_string()
    };
    assert!(new_kids.contains(&kid), "{kid} signs after the rotation");
    assert_eq!(
        s.get("/corp/x", &after).await.status(),
        200,
        "accepted after one refresh"
    );
    assert_eq!(s.jwks_fetches().await, first + 1);

    // A flood of made-up kids right after: no more fetches within 10 s.
    for i in 0..25 {
        let t = made_up_kid(&s.idp.issuer, &format!("made-up-{i}"));
        assert_invalid_token(&s, "/corp/x", &t, "made-up kid").await;
    }
    assert_eq!(
        s.jwks_fetches().await,
        first + 1,
        "the flood fetched nothing"
    );
    assert_eq!(
        s.metric(r#"gatehouse_jwks_refreshes_total{issuer="corp",result="ok"}"#)
            .await,
        (first + 1) as f64
    );

    // A reload that leaves corp's keys as they are keeps its key set: no fetch, and the tokens
    // (validated afresh, the cache is flushed) still pass.
    let path = s.gw.dir.dir.path().join("gatehouse.toml");
    s.gw.gateway.reload(&path).unwrap();
    assert_eq!(s.get("/corp/x", &after).await.status(), 200);
    assert_eq!(s.get("/corp/x", &before).await.status(), 200);
    assert_eq!(
        s.jwks_fetches().await,
        first + 1,
        "the reload kept the keys"
    );
}

#[tokio::test]
async fn with_the_issuer_down_its_last_keys_still_work_and_an_issuer_without_keys_is_503() {
    let dead = crate::helpers::harness::upstream::dead_address().await;
    let extra = format!(
        "\n[[issuers]]\nname = \"gone\"\nissuer = \"https://gone.example\"\njwks_uri = \"https://{dead}/jwks\"\naudiences = [\"gatehouse\"]\n\n[[routes]]\npath = \"/gone\"\nupstream = \"http://127.0.0.1:9\"\nscope = \"READ\"\nissuers = [\"gone\"]\n"
    );
    let Some(mut s) = setup("federation::tokens", "", &extra).await else {
        return;
    };
    s.keys_loaded().await;
    let used = s.machine_token("https://rs256.example", "wiki.read").await;
    let unused = s.machine_token("https://eddsa.example", "wiki.read").await;
    assert_eq!(s.get("/corp/x", &used).await.status(), 200);
    s.idp.stop().await;
    // A token never seen (a cache miss) verifies with the keys held.
    assert_eq!(s.get("/corp/x", &unused).await.status(), 200);
    // An unknown kid now makes a refresh that fails; the keys stay.
    let t = made_up_kid(&s.idp.issuer, "after-the-outage");
    assert_invalid_token(&s, "/corp/x", &t, "unknown kid, issuer down").await;
    assert!(
        s.metric(r#"gatehouse_jwks_refreshes_total{issuer="corp",result="error"}"#)
            .await
            >= 1.0
    );
    assert_eq!(s.get("/corp/y", &used).await.status(), 200);

    // An issuer whose keys were never fetched: 503, not 401.
    let t = made_up_kid("https://gone.example", "any");
    let r = s.get("/gone/x", &t).await;
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn opaque_tokens_are_introspected_once_and_cached() {
    let Some(s) = setup("federation::tokens", "", "").await else {
        return;
    };
    let opaque = s
        .machine_token("https://opaque.example", "wiki.read wiki.write")
        .await;
    assert_eq!(opaque.split('.').count(), 1, "an opaque token: {opaque}");
    let start = s.introspections().await;
    let r =
        s.gw.client(true)
            .post(s.gw.url("/both/x"))
            .bearer_auth(&opaque)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let id = identity(&s.up);
    assert_eq!(header(&id, "user"), "corp:svc-reports");
    assert_eq!(header(&id, "scopes"), "READ WRITE");
    assert_eq!(header(&id, "client"), "gatehouse");
    assert_eq!(header(&id, "groups"), "robots");
    assert_eq!(s.introspections().await, start + 1);
    assert_eq!(s.get("/corp/x", &opaque).await.status(), 200);
    assert_eq!(
        s.introspections().await,
        start + 1,
        "the second request was answered from the cache"
    );

    // Inactive: refused, and remembered for auth.negative_cache_ttl.
    let unknown = "not-a-token-this-provider-issued-0123456789";
    assert_invalid_token(&s, "/corp/x", unknown, "inactive").await;
    assert_invalid_token(&s, "/corp/x", unknown, "inactive, cached").await;
    assert_eq!(s.introspections().await, start + 2);
    assert_eq!(
        s.metric(r#"gatehouse_introspections_total{issuer="corp",result="active"}"#)
            .await,
        1.0
    );
    assert_eq!(
        s.metric(r#"gatehouse_introspections_total{issuer="corp",result="inactive"}"#)
            .await,
        1.0
    );
    // A route that takes only gatehouse's tokens never asks the issuer.
    assert_invalid_token(&s, "/own/x", "another-opaque-token-0123456789", "self only").await;
    assert_eq!(s.introspections().await, start + 2);
}

#[tokio::test]
async fn foreign_tokens_are_refused_at_the_management_api_unless_allowed() {
    let app = "\n[[apps]]\nclient_id = \"reports\"\nclient_secret = \"reports-secret-0123456789\"\ndisplay_name = \"Reports\"\nallowed_callback_urls = [\"https://reports.example/cb\"]\nscopes = [\"READ\"]\n";
    let Some(s) = setup("federation::tokens", "", app).await else {
        return;
    };
    let alice = s
        .alice_token(
            "https://rs256.example",
            "openid profile groups wiki.read wiki.write",
        )
        .await;
    assert_eq!(s.get("/corp/x", &alice).await.status(), 200);
    for path in ["/v1/oauthApps", "/v1/personalTokens"] {
        let r = s.get(path, &alice).await;
        assert_eq!(r.status(), 401, "{path}");
    }
    let r =
        s.gw.client(true)
            .post(s.gw.url("/v1/personalTokens"))
            .bearer_auth(&alice)
            .json(&json!({"name": "x", "scope": "READ"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 401, "PAT creation");
    let r = s
        .get(
            "/oauth2/authorize?response_type=code&client_id=reports&redirect_uri=https%3A%2F%2Freports.example%2Fcb&scope=READ&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            &alice,
        )
        .await;
    assert_eq!(
        r.status(),
        401,
        "authorize does not take the foreign token as a login"
    );
}

#[tokio::test]
async fn a_foreign_name_equal_to_a_config_users_is_refused() {
    let user = "\n[[users]]\nname = \"svc-reports\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"\nmax_scope = \"READ\"\n";
    let Some(s) = setup("federation::tokens", "username_prefix = \"\"", user).await else {
        return;
    };
    let token = s.machine_token("https://es256.example", "wiki.read").await;
    assert_invalid_token(&s, "/corp/x", &token, "svc-reports is a config user").await;
    // alice is a config user too (USERS); the provider's alice is not let in as her.
    let alice = s
        .alice_token("https://es256.example", "openid wiki.read")
        .await;
    assert_invalid_token(&s, "/corp/x", &alice, "alice is a config user").await;
}
