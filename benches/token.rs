//! Criterion benchmarks of the token endpoint's grants (RFC 6749 §4.1.3, §6) through the
//! functions the endpoint calls, on SQLite: redeeming an authorization code with PKCE (code
//! lookup, checks, one redemption transaction, one Ed25519 signature) and rotating a refresh
//! token (two reads, one rotation transaction, one signature).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::CALLBACK;
use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::App;
use gatehouse::oauth::client_auth::SharedCheck;
use gatehouse::oauth::grant::exchange_code;
use gatehouse::oauth::grant_refresh::{Refreshed, refresh};
use gatehouse::oauth::params::Params;
use gatehouse::oauth::pkce::s256_challenge;
use gatehouse::store::{NewAuthCode, secret_hash};

const VERIFIER: &str = "bench-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

async fn new_code(app: &App, n: u64) -> String {
    let g = app.gateway();
    let now = g.clock.now();
    let code = format!("bench-code-{n}-{}", gatehouse::store::new_id());
    g.store
        .create_code(&NewAuthCode {
            hash: secret_hash(&code),
            client_id: "bench".into(),
            user: "alice".into(),
            redirect_uri: CALLBACK.into(),
            scope: "WRITE".into(),
            code_challenge: Some(s256_challenge(VERIFIER)),
            code_challenge_method: Some("S256".into()),
            create_time: now,
            expire_time: now + Duration::from_secs(60),
        })
        .await
        .unwrap();
    code
}

fn exchange_params(code: &str) -> Params {
    Params::parse(&format!(
        "grant_type=authorization_code&code={code}&redirect_uri=https%3A%2F%2Fbench.example%2Fcb&code_verifier={VERIFIER}"
    ))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, record) = rt.block_on(common::gateway_with_app(&dir));
    let g = app.gateway().clone();
    let live = g.live.load_full();
    let request_id = http::HeaderValue::from_static("bench");
    let peer: std::net::SocketAddr = ([127, 0, 0, 1], 1).into();

    c.bench_function("token/redeem_code_pkce_sqlite", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (app, g, live, record) = (&app, g.clone(), live.clone(), record.clone());
            let request_id = request_id.clone();
            async move {
                let ctx = g.ctx(&live, peer, &request_id);
                let mut spent = Duration::ZERO;
                for n in 0..iters {
                    let params = exchange_params(&new_code(app, n).await);
                    let started = Instant::now();
                    let r =
                        exchange_code(&ctx, &record, &SharedCheck::none(), &params, g.clock.now())
                            .await;
                    spent += started.elapsed();
                    black_box(r.unwrap());
                }
                spent
            }
        })
    });

    let first = rt.block_on(async {
        let params = exchange_params(&new_code(&app, u64::MAX).await);
        exchange_code(
            &g.ctx(&live, peer, &request_id),
            &record,
            &SharedCheck::none(),
            &params,
            g.clock.now(),
        )
        .await
        .unwrap()
        .refresh_token
    });
    let current = std::sync::Mutex::new(first);
    c.bench_function("token/refresh_rotation_sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            let token = current.lock().unwrap().clone();
            let params =
                Params::parse(&format!("grant_type=refresh_token&refresh_token={token}")).unwrap();
            let ctx = g.ctx(&live, peer, &request_id);
            let none = SharedCheck::none();
            let next = match refresh(&ctx, &g.oauth, &record, &none, &params, g.clock.now())
                .await
                .unwrap()
            {
                Refreshed::New(r) => r.refresh_token,
                Refreshed::Rotated(json) => {
                    let body: serde_json::Value = serde_json::from_str(&json).unwrap();
                    body["refresh_token"].as_str().unwrap().to_owned()
                }
                Refreshed::Repeat(_) => panic!("every rotation uses the newest token"),
            };
            *current.lock().unwrap() = next;
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
