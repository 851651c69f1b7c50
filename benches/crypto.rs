//! Micro-benchmarks of the security primitives on the proxy's and token endpoint's paths:
//! access-token verification and signing (RFC 9068), SHA-256 of a token (the cache key),
//! PKCE S256 verification (RFC 7636) and the scope check (SPEC §2).

// A benchmark is a test harness: a failed setup should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::auth::jwt::{AccessClaims, AssertionClaims, VerifyPolicy};
use gatehouse::auth::keys::SigningKeys;
use gatehouse::auth::scope::ScopeSet;
use gatehouse::auth::secret::sha256;
use gatehouse::oauth::pkce::{self, CodeChallengeMethod};

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://gateway.example.com";

fn claims() -> AccessClaims {
    AccessClaims {
        iss: ISS.into(),
        sub: "alice".into(),
        aud: ISS.into(),
        client_id: Some("Q2xpZW50SWRDbGllbnRJZA".into()),
        scope: "WRITE".into(),
        iat: NOW,
        exp: NOW + 7200,
        nbf: None,
        jti: "dGhpcyBpcyBhIGp0aSB2YWx1ZQ".into(),
        gid: Some("Z3JhbnQtaWQtZ3JhbnQtaWQ".into()),
    }
}

fn tokens(c: &mut Criterion) {
    let keys = SigningKeys::generate().unwrap();
    let policy = VerifyPolicy {
        issuer: ISS.into(),
        audience: ISS.into(),
        leeway: 5,
    };
    let claims = claims();
    let token = keys.sign_access_token(&claims).unwrap();
    c.bench_function("jwt/verify_access_token", |b| {
        b.iter(|| {
            keys.verify_access_token(black_box(&token), NOW, &policy)
                .unwrap()
        })
    });
    c.bench_function("jwt/sign_access_token", |b| {
        b.iter(|| keys.sign_access_token(black_box(&claims)).unwrap())
    });
    let assertion = AssertionClaims::new(
        ISS,
        "alice",
        "http://127.0.0.1:8090",
        "READ WRITE",
        None,
        NOW,
        "jti".into(),
    );
    c.bench_function("jwt/sign_assertion", |b| {
        b.iter(|| keys.sign_assertion(black_box(&assertion)).unwrap())
    });
    c.bench_function("sha256/token_hash", |b| {
        b.iter(|| sha256(black_box(token.as_bytes())))
    });
}

fn pkce_and_scopes(c: &mut Criterion) {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = pkce::s256_challenge(verifier);
    c.bench_function("pkce/verify_s256", |b| {
        b.iter(|| {
            pkce::verify(
                black_box(&challenge),
                CodeChallengeMethod::S256,
                black_box(verifier),
            )
        })
    });
    let set = ScopeSet::default_confluence();
    let granted = set.expand(set.parse("WRITE").unwrap());
    let required = set.parse("READ").unwrap();
    c.bench_function("scopes/satisfies", |b| {
        b.iter(|| black_box(granted).satisfies(black_box(required)))
    });
    c.bench_function("scopes/set_satisfies_expanding", |b| {
        b.iter(|| set.satisfies(black_box(granted), black_box(required)))
    });
}

criterion_group!(benches, tokens, pkce_and_scopes);
criterion_main!(benches);
