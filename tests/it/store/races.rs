//! Store contract suite, part 4: 50 concurrent tasks racing for one code, one refresh token
//! and one consent. Exactly one may win each race, on either engine.

use std::sync::Arc;

use gatehouse::store::*;
use tokio::sync::Barrier;

use crate::helpers::support::{TestDb, contract_tests};
use crate::store::lifecycle::{app, at, code, grant_for, refresh, t0};

const RACERS: usize = 50;

contract_tests!(
    fifty_concurrent_redemptions_one_winner,
    fifty_concurrent_rotations_one_winner,
    fifty_concurrent_consent_decisions_one_winner,
);

/// Runs `f(i)` in `RACERS` tasks released together; returns their results in task order.
async fn race<T, F, Fut>(f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut handles = Vec::with_capacity(RACERS);
    for i in 0..RACERS {
        let barrier = barrier.clone();
        let fut = f(i);
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            fut.await
        }));
    }
    let mut out = Vec::with_capacity(RACERS);
    for h in handles {
        out.push(h.await.expect("racer panicked"));
    }
    out
}

async fn fifty_concurrent_redemptions_one_winner(db: TestDb) {
    let store = db.open().await;
    store.create_app(&app("racer", "s")).await.unwrap();
    let c = code("racer", "contested-code");
    store.create_code(&c).await.unwrap();
    let results = race(|i| {
        let store = store.clone();
        async move {
            let rt = refresh(&format!("race-rt-{i}"), &format!("race-jti-{i}"), at(2));
            store
                .redeem_code(&secret_hash("contested-code"), &rt, at(2))
                .await
        }
    })
    .await;
    let mut winner = None;
    let mut losers = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r.unwrap() {
            RedeemOutcome::Redeemed { grant, .. } => {
                assert!(
                    winner.replace((i, grant.id)).is_none(),
                    "two redemptions won"
                );
            }
            RedeemOutcome::AlreadyUsed { grant_id, used_at } => {
                assert_eq!(used_at, at(2));
                losers.push(grant_id);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    let (wi, grant_id) = winner.expect("nobody won");
    assert_eq!(losers.len(), RACERS - 1);
    assert!(
        losers
            .iter()
            .all(|g| g.as_deref() == Some(grant_id.as_str())),
        "losers see the grant"
    );
    // Exactly one refresh token was issued: the winner's.
    for i in 0..RACERS {
        let t = store
            .get_refresh_token(&secret_hash(&format!("race-rt-{i}")))
            .await
            .unwrap();
        assert_eq!(t.is_some(), i == wi, "racer {i}");
    }
    store.close().await;
}

async fn fifty_concurrent_rotations_one_winner(db: TestDb) {
    let store = db.open().await;
    let (grant, rt1) = grant_for(&store, "rotor-race").await;
    let old = rt1.hash;
    let results = race(|i| {
        let store = store.clone();
        async move {
            let new = refresh(&format!("rot-rt-{i}"), &format!("rot-jti-{i}"), at(3));
            store
                .rotate_refresh_token(&old, "rotor-race", &new, at(3))
                .await
        }
    })
    .await;
    let mut winners = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r.unwrap() {
            RotateOutcome::Rotated { refresh_token, .. } => {
                assert_eq!(refresh_token.generation, 2);
                winners.push(i);
            }
            RotateOutcome::AlreadyRotated {
                grant_id,
                rotated_at,
                is_immediate_predecessor_of_current,
            } => {
                assert_eq!(grant_id, grant.id);
                assert_eq!(rotated_at, at(3), "losers see when it was rotated");
                assert!(
                    is_immediate_predecessor_of_current,
                    "grace applies to the losers"
                );
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation wins: {winners:?}");
    let stored = store.get_refresh_token(&old).await.unwrap().unwrap();
    let winner_hash = secret_hash(&format!("rot-rt-{}", winners[0]));
    assert_eq!(stored.successor_hash, Some(winner_hash));
    let mut live = 0;
    for i in 0..RACERS {
        let t = store
            .get_refresh_token(&secret_hash(&format!("rot-rt-{i}")))
            .await
            .unwrap();
        live += usize::from(t.is_some());
    }
    assert_eq!(live, 1, "only one new refresh token exists");
    store.close().await;
}

async fn fifty_concurrent_consent_decisions_one_winner(db: TestDb) {
    let store = db.open().await;
    store.create_app(&app("consent-race", "s")).await.unwrap();
    let p = PendingConsent {
        id: new_id(),
        csrf_hash: secret_hash("race-csrf"),
        user: "alice".to_owned(),
        client_id: "consent-race".to_owned(),
        redirect_uri: "https://client.example.com/callback".to_owned(),
        scope: "READ".to_owned(),
        state: None,
        code_challenge: None,
        code_challenge_method: None,
        create_time: t0(),
        expire_time: at(600),
    };
    store.create_consent(&p).await.unwrap();
    let id = p.id.clone();
    let results = race(|_| {
        let store = store.clone();
        let id = id.clone();
        async move {
            store
                .take_consent(&id, &secret_hash("race-csrf"), "alice", at(1))
                .await
        }
    })
    .await;
    let taken = results
        .into_iter()
        .filter(|r| r.as_ref().unwrap().is_some())
        .count();
    assert_eq!(taken, 1);
    store.close().await;
}
