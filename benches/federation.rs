//! Criterion benchmarks of another issuer's access token on a bearer route (SPEC §7.2): a
//! token-cache hit (SHA-256, one moka lookup, the route's issuer check) and a miss (the
//! unverified `iss` read to pick the issuer, the key by `kid`, jsonwebtoken's signature and
//! claim checks, the claim mapping), for RS256, ES256 and EdDSA tokens signed here with keys
//! published to the issuer's key set as a JWKS document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gatehouse::auth::directory::Directory;
use gatehouse::auth::foreign::{Accept, ForeignIssuers};
use gatehouse::config::Config;
use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

const ISSUER: &str = "https://sso.example.com/realms/corp";

/// A signing key and its public JWK.
fn keys() -> Vec<(Algorithm, EncodingKey, Value)> {
    let rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let rsa_jwk = json!({"kty": "RSA", "kid": "rs", "alg": "RS256", "use": "sig",
        "n": B64.encode(rsa.n().to_bytes_be()), "e": B64.encode(rsa.e().to_bytes_be())});
    let rsa = EncodingKey::from_rsa_der(rsa.to_pkcs1_der().unwrap().as_bytes());
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = ec.public_key_raw();
    let ec_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "es", "alg": "ES256",
        "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])});
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed_jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
        "x": B64.encode(ed.public_key_raw())});
    vec![
        (Algorithm::RS256, rsa, rsa_jwk),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_der(&ec.serialize_der()),
            ec_jwk,
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(&ed.serialize_der()),
            ed_jwk,
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = rt.block_on(common::gateway_with_app(&dir));
    let g = app.gateway().clone();
    // The bench's config plus one issuer whose JWKS is handed over here (its jwks_uri answers
    // nothing, so no fetch replaces it).
    let mut toml = std::fs::read_to_string(dir.path().join("g.toml")).unwrap();
    toml.push_str(&format!(
        "\n[[issuers]]\nname = \"corp\"\nissuer = \"{ISSUER}\"\njwks_uri = \"https://127.0.0.1:9/jwks\"\naudiences = [\"gatehouse\"]\nscope_map = {{ \"wiki.read\" = \"READ\" }}\nusername_prefix = \"corp:\"\n"
    ));
    let config = Config::parse(&toml, &dir.path().join("g.toml"), &|_| None).unwrap();
    let issuers = ForeignIssuers::build(&config, &g.metrics, None).unwrap();
    let keys = keys();
    let jwks = json!({"keys": keys.iter().map(|(_, _, jwk)| jwk.clone()).collect::<Vec<_>>()});
    issuers
        .get("corp")
        .unwrap()
        .keys()
        .load_document(&jwks)
        .unwrap();
    let directory = Directory::from_config(&config)
        .unwrap()
        .with_issuers(Arc::new(issuers));
    let route_issuers = vec!["corp".to_string()];
    let accept = Accept::Route {
        issuers: &route_issuers,
        wait: std::time::Duration::from_secs(30),
    };
    let now = g.clock.unix_seconds();
    for (alg, key, jwk) in &keys {
        let mut header = Header::new(*alg);
        header.kid = jwk["kid"].as_str().map(str::to_string);
        header.typ = Some("at+jwt".into());
        let claims = json!({"iss": ISSUER, "aud": "gatehouse", "sub": "alice", "client_id": "app",
            "scope": "wiki.read", "groups": ["staff"], "iat": now, "exp": now + 3600,
            "jti": "j-1"});
        let token = jsonwebtoken::encode(&header, &claims, key).unwrap();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let required = directory.scopes.lookup("READ").unwrap();
        let authenticate = || async {
            let p = g
                .auth
                .bearer(
                    Some(&value),
                    &directory,
                    &g.keys,
                    &g.store,
                    g.clock.now(),
                    accept,
                )
                .await
                .unwrap();
            black_box(p.scopes.satisfies(required))
        };
        assert!(rt.block_on(authenticate()));
        let name = format!("{alg:?}");
        c.bench_function(&format!("federation/{name}_cache_hit"), |b| {
            b.to_async(&rt).iter(authenticate)
        });
        // PerIteration: every timed call follows its own flush.
        c.bench_function(&format!("federation/{name}_cache_miss"), |b| {
            b.to_async(&rt).iter_batched(
                || g.auth.flush(),
                |()| authenticate(),
                BatchSize::PerIteration,
            )
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
