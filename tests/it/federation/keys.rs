//! The federation foundation against the real provider: discovery over TLS with the test CA,
//! and `KeySet::verify` accepting the provider's RS256, ES256 and EdDSA access tokens.

use std::time::Duration;

use gatehouse::federation::{Expectations, KeySet, KeySource, Outbound, Trust, discovery};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::helpers::harness::TestPki;
use crate::helpers::idp;

/// A provider with one confidential client, one user and a JWT resource per algorithm.
pub(crate) fn provider_config() -> Value {
    json!({
        "issuer_path": "/realms/test",
        "clients": [{
            "client_id": "gatehouse", "client_secret": "gatehouse-secret",
            "redirect_uris": ["https://localhost/callback"],
            "token_endpoint_auth_method": "client_secret_basic",
            "token_claims": {"groups": ["robots"], "preferred_username": "svc-reports"}
        }, {
            "client_id": "wiki-app", "client_secret": "wiki-secret",
            "redirect_uris": ["https://app.example/callback"],
            "scope": "openid profile groups wiki.read wiki.write wiki.admin"
        }],
        "users": [{"sub": "u-1", "username": "alice", "password": "alice-pw",
                   "groups": ["staff", "wiki-admins"]}],
        "resources": {
            "https://rs256.example": {"audience": "gatehouse", "scope": "wiki.read wiki.write wiki.admin", "alg": "RS256"},
            "https://es256.example": {"audience": "gatehouse", "scope": "wiki.read wiki.write wiki.admin", "alg": "ES256"},
            "https://eddsa.example": {"audience": "gatehouse", "scope": "wiki.read wiki.write wiki.admin", "alg": "EdDSA"},
            "https://short.example": {"audience": "gatehouse", "scope": "wiki.read", "alg": "ES256", "ttl": 1},
            "https://other.example": {"audience": "someone-else", "scope": "wiki.read", "alg": "ES256"},
            "https://opaque.example": {"audience": "gatehouse", "scope": "wiki.read wiki.write", "format": "opaque"}
        }
    })
}

#[tokio::test]
async fn discovery_and_key_set_verify_the_providers_tokens() {
    let pki = TestPki::new();
    let Some(idp) = idp::start_or_skip(&pki, provider_config(), "federation::keys").await else {
        return;
    };
    let client = Outbound::new(
        &Trust::from_ca_path(&idp.ca_path).unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    let metadata = discovery::discover(&client, &idp.issuer).await.unwrap();
    assert_eq!(metadata.issuer, idp.issuer);
    assert!(metadata.jwks_uri.is_some());
    // The system roots do not know the test CA.
    let untrusting = Outbound::new(&Trust::System, Duration::from_secs(5)).unwrap();
    assert!(discovery::discover(&untrusting, &idp.issuer).await.is_err());

    let family = prometheus::IntCounterVec::new(
        prometheus::Opts::new("refreshes", "test"),
        &["issuer", "result"],
    )
    .unwrap();
    let keys = KeySet::new(
        "corp",
        &idp.issuer,
        KeySource::Discover,
        client,
        family.clone(),
    );
    keys.refresh().await.unwrap();
    assert_eq!(keys.len(), 3);
    let audiences = ["gatehouse".to_string()];
    let expect = Expectations {
        issuer: &idp.issuer,
        audiences: &audiences,
        algorithms: &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        leeway: 5,
        now_unix: gatehouse::clock::Clock::system().unix_seconds(),
    };
    for (resource, alg) in [
        ("https://rs256.example", Algorithm::RS256),
        ("https://es256.example", Algorithm::ES256),
        ("https://eddsa.example", Algorithm::EdDSA),
    ] {
        let token = idp
            .client_credentials("gatehouse", "gatehouse-secret", resource, "wiki.read")
            .await;
        let verified = keys
            .verify(token["access_token"].as_str().unwrap(), &expect)
            .await
            .unwrap();
        assert_eq!(verified.header.alg, alg);
        assert_eq!(verified.claims["client_id"], "gatehouse");
        assert_eq!(verified.claims["groups"], json!(["robots"]));
    }
    let other = idp
        .client_credentials(
            "gatehouse",
            "gatehouse-secret",
            "https://other.example",
            "wiki.read",
        )
        .await;
    let err = keys
        .verify(other["access_token"].as_str().unwrap(), &expect)
        .await
        .unwrap_err();
    assert!(!err.is_unavailable(), "{err}");
    assert_eq!(family.with_label_values(&["corp", "ok"]).get(), 1);

    // A user's token through the provider's login form carries their name and groups.
    let tokens = idp
        .user_tokens(
            "wiki-app",
            "wiki-secret",
            "https://app.example/callback",
            "alice",
            "alice-pw",
            "https://es256.example",
            "openid profile groups wiki.read",
        )
        .await;
    let verified = keys
        .verify(tokens["access_token"].as_str().unwrap(), &expect)
        .await
        .unwrap();
    assert_eq!(verified.claims["preferred_username"], "alice");
    assert_eq!(verified.claims["groups"], json!(["staff", "wiki-admins"]));
    assert!(tokens["id_token"].is_string());
}
