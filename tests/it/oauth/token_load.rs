//! A load figure for the token endpoint (SPEC §3.1): N authorization-code exchanges with PKCE
//! by 8 concurrent HTTPS clients against the in-process gateway on SQLite; prints the rate.
//! Ignored by default (it measures, it does not check a rule):
//! `cargo test --test it token_load -- --ignored --nocapture` (add `--release` for release).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::helpers::oauth_fixture::{CALLBACK, CONF, CONF_SECRET, Fx, VERIFIER, form_body};

const EXCHANGES: usize = 1000;
const CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn token_exchanges_per_second_on_sqlite() {
    let fx = Arc::new(Fx::start("").await);
    let mut codes = Vec::with_capacity(EXCHANGES);
    for _ in 0..EXCHANGES {
        codes.push(fx.code(CONF, "WRITE", true).await);
    }
    let codes = Arc::new(codes);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (fx, codes, next) = (fx.clone(), codes.clone(), next.clone());
            tokio::spawn(async move {
                // One client (one kept-alive TLS connection) per worker, as a real app has.
                let client = fx.gw.client(true);
                let url = fx.gw.url("/oauth2/token");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(code) = codes.get(i) else { return };
                    let body = form_body(&[
                        ("grant_type", "authorization_code"),
                        ("code", code),
                        ("redirect_uri", CALLBACK),
                        ("code_verifier", VERIFIER),
                    ]);
                    let r = client
                        .post(&url)
                        .basic_auth(CONF, Some(CONF_SECRET))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    let rate = EXCHANGES as f64 / elapsed.as_secs_f64();
    println!(
        "token exchanges: {EXCHANGES} with {CLIENTS} concurrent clients in {:.2} s = {rate:.0}/s \
         (SQLite, HTTPS, one kept-alive connection per client)",
        elapsed.as_secs_f64()
    );
}

/// Grants of one client before the rotations are timed (the size at which the old
/// `grant_id IN (SELECT … WHERE client_id = …)` rotation cost ~10 ms).
const GRANTS: usize = 7_000;
const ROTATIONS: u32 = 200;

/// Mean time of one refresh-token rotation with many grants of the same client, on each
/// engine: `cargo test --test it rotation_cost -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn rotation_cost_with_many_grants_of_one_client() {
    use crate::store::lifecycle::{at, code, refresh};
    use gatehouse::store::{RedeemOutcome, RotateOutcome, new_id, secret_hash};

    let mut dbs = vec![crate::helpers::support::TestDb::sqlite().await];
    dbs.extend(crate::helpers::support::TestDb::postgres("rotation_cost").await);
    for db in dbs {
        let store = db.open().await;
        store
            .create_app(&crate::store::lifecycle::app("many", "secret"))
            .await
            .unwrap();
        let mut last = None;
        for _ in 0..GRANTS {
            let c = new_id();
            store.create_code(&code("many", &c)).await.unwrap();
            let rt = refresh(&new_id(), &new_id(), at(1));
            let out = store
                .redeem_code(&secret_hash(&c), &rt, at(1))
                .await
                .unwrap();
            assert!(matches!(out, RedeemOutcome::Redeemed { .. }));
            last = Some(rt.hash);
        }
        let mut current = last.unwrap();
        let started = Instant::now();
        for _ in 0..ROTATIONS {
            let next = refresh(&new_id(), &new_id(), at(2));
            match store
                .rotate_refresh_token(&current, "many", &next, at(2))
                .await
                .unwrap()
            {
                RotateOutcome::Rotated { .. } => current = next.hash,
                other => panic!("{other:?}"),
            }
        }
        let mean = started.elapsed() / ROTATIONS;
        println!(
            "rotation with {GRANTS} grants of one client, {}: {:.3} ms per rotation",
            store.engine_name(),
            mean.as_secs_f64() * 1000.0
        );
        store.close().await;
    }
}
