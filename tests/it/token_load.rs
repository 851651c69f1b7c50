//! A load figure for the token endpoint (SPEC §3.1): N authorization-code exchanges with PKCE
//! by 8 concurrent HTTPS clients against the in-process gateway on SQLite; prints the rate.
//! Ignored by default (it measures, it does not check a rule):
//! `cargo test --test it token_load -- --ignored --nocapture` (add `--release` for release).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::oauth_fixture::{CALLBACK, CONF, CONF_SECRET, Fx, VERIFIER, form_body};

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
