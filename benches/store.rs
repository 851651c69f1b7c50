//! Criterion benches of the store's hot operations on each engine: looking an app up by
//! client id (every token request), rotating a refresh token and redeeming a code (each one
//! write transaction). PostgreSQL runs on the tests' throwaway cluster (fsync off, loopback),
//! SQLite on a temp file in WAL mode; without PostgreSQL its half is skipped with a note.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../tests/it/helpers/support/pg.rs"]
mod pg;

use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::store::*;
use tokio::runtime::Runtime;

const CLIENT: &str = "bench-client";

fn bench_app(now: SystemTime) -> App {
    App {
        id: new_app_id(),
        client_id: CLIENT.to_owned(),
        display_name: "Bench".to_owned(),
        description: String::new(),
        logo_uri: String::new(),
        allowed_callback_urls: vec!["https://client.example.com/callback".to_owned()],
        allowed_logout_urls: vec![],
        allowed_web_origins: vec![],
        client_type: ClientType::Confidential,
        secret_hash: Some(secret_hash("bench-secret")),
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        scopes: vec!["READ".to_owned()],
        skip_consent: true,
        active: true,
        labels: Default::default(),
        created_by: "users/bench".to_owned(),
        updated_by: "users/bench".to_owned(),
        create_time: now,
        update_time: now,
        managed_by: ManagedBy::Api,
    }
}

fn new_refresh(now: SystemTime) -> NewRefreshToken {
    NewRefreshToken {
        hash: secret_hash(&new_id()),
        expire_time: now + Duration::from_secs(30 * 86_400),
        access_jti: Some(new_id()),
        access_expire_time: Some(now + Duration::from_secs(7_200)),
    }
}

async fn new_code(store: &Store, now: SystemTime) -> SecretHash {
    let hash = secret_hash(&new_id());
    let code = NewAuthCode {
        hash,
        client_id: CLIENT.to_owned(),
        user: "alice".to_owned(),
        redirect_uri: "https://client.example.com/callback".to_owned(),
        scope: "READ".to_owned(),
        code_challenge: None,
        code_challenge_method: None,
        create_time: now,
        expire_time: now + Duration::from_secs(3_600),
    };
    store.create_code(&code).await.unwrap();
    hash
}

fn bench_engine(c: &mut Criterion, rt: &Runtime, engine: &str, store: &Store) {
    let now = SystemTime::now();
    rt.block_on(store.create_app(&bench_app(now))).unwrap();
    let mut group = c.benchmark_group(format!("store/{engine}"));

    group.bench_function("get_app_by_client_id", |b| {
        b.to_async(rt)
            .iter(|| async { store.get_app_by_client_id(CLIENT).await.unwrap().unwrap() })
    });

    group.bench_function("rotate_refresh_token", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let code = new_code(store, now).await;
            let first = new_refresh(now);
            let out = store.redeem_code(&code, &first, now).await.unwrap();
            assert!(matches!(out, RedeemOutcome::Redeemed { .. }));
            let mut current = first.hash;
            let start = Instant::now();
            for _ in 0..iters {
                let next = new_refresh(now);
                match store
                    .rotate_refresh_token(&current, CLIENT, &next, now)
                    .await
                    .unwrap()
                {
                    RotateOutcome::Rotated { .. } => current = next.hash,
                    other => panic!("rotation failed: {other:?}"),
                }
            }
            start.elapsed()
        })
    });

    group.bench_function("redeem_code", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let mut codes = Vec::new();
            for _ in 0..iters {
                codes.push(new_code(store, now).await);
            }
            let start = Instant::now();
            for code in &codes {
                let out = store
                    .redeem_code(code, &new_refresh(now), now)
                    .await
                    .unwrap();
                assert!(matches!(out, RedeemOutcome::Redeemed { .. }));
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn store_benches(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let sqlite = rt
        .block_on(Store::open("sqlite://bench.db", dir.path(), 16))
        .unwrap();
    bench_engine(c, &rt, "sqlite", &sqlite);
    rt.block_on(sqlite.close());

    if let Some(cluster) = pg::cluster_or_skip("the store bench") {
        let url = rt.block_on(cluster.create_database());
        let postgres = rt.block_on(Store::open(&url, dir.path(), 16)).unwrap();
        bench_engine(c, &rt, "postgres", &postgres);
        rt.block_on(postgres.close());
    }
}

criterion_group!(benches, store_benches);
criterion_main!(benches);
