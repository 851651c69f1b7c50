//! Criterion benchmarks of per-request authentication (SPEC §3.4): a token-cache hit (SHA-256
//! of the token, one moka lookup, the revocation check) and a miss (Ed25519 verification of the
//! RFC 9068 JWT plus the store's liveness query on SQLite), and the scope test after either.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gatehouse::App;
use gatehouse::auth::jwt::AccessClaims;
use gatehouse::store::{NewAuthCode, NewRefreshToken, RedeemOutcome, secret_hash};
use http::HeaderValue;

struct Fixture {
    _dir: tempfile::TempDir,
    app: App,
    header: HeaderValue,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = common::gateway_with_app(&dir).await;
    let g = app.gateway().clone();
    let now = g.clock.now();
    let code = NewAuthCode {
        hash: secret_hash("bench-code"),
        client_id: "bench".into(),
        user: "alice".into(),
        redirect_uri: common::CALLBACK.into(),
        scope: "WRITE".into(),
        code_challenge: None,
        code_challenge_method: None,
        create_time: now,
        expire_time: now + Duration::from_secs(60),
    };
    g.store.create_code(&code).await.unwrap();
    let first = NewRefreshToken {
        hash: secret_hash("gh_rt_bench"),
        expire_time: now + Duration::from_secs(3600),
        access_jti: Some("jti-1".into()),
        access_expire_time: None,
    };
    let RedeemOutcome::Redeemed { grant, .. } = g
        .store
        .redeem_code(&secret_hash("bench-code"), &first, now)
        .await
        .unwrap()
    else {
        panic!()
    };
    let t = g.clock.unix_seconds();
    let claims = AccessClaims {
        iss: "https://localhost".into(),
        sub: "alice".into(),
        aud: "https://localhost".into(),
        client_id: Some("bench".into()),
        scope: "WRITE".into(),
        iat: t,
        exp: t + 7200,
        nbf: None,
        jti: "jti-1".into(),
        gid: Some(grant.id),
    };
    let token = g.keys.sign_access_token(&claims).unwrap();
    let header = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    Fixture {
        _dir: dir,
        app,
        header,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let f = rt.block_on(fixture());
    let g = f.app.gateway().clone();
    let live = g.live.load_full();
    let required = live.directory.scopes.lookup("READ").unwrap();
    let authenticate = || async {
        let p = g
            .auth
            .bearer(
                Some(&f.header),
                &live.directory,
                &g.keys,
                &g.store,
                g.clock.now(),
                gatehouse::auth::foreign::Accept::Management,
            )
            .await
            .unwrap();
        black_box(p.scopes.satisfies(required))
    };
    rt.block_on(authenticate());
    c.bench_function("auth/bearer_cache_hit", |b| {
        b.to_async(&rt).iter(authenticate)
    });
    // While revocations are recent (a busy gateway rotates refresh tokens all the time), a hit
    // also looks the principal's ids up in the recently-revoked sets.
    g.auth.on_event(
        &gatehouse::store::StoreEvent::TokenRevoked {
            jti: "another-jti".into(),
        },
        g.clock.now(),
    );
    c.bench_function("auth/bearer_cache_hit_after_a_revocation", |b| {
        b.to_async(&rt).iter(authenticate)
    });
    // PerIteration: every timed call follows its own flush (a batch would flush once and then
    // time hits).
    c.bench_function("auth/bearer_cache_miss_sqlite", |b| {
        b.to_async(&rt).iter_batched(
            || g.auth.flush(),
            |()| authenticate(),
            BatchSize::PerIteration,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
