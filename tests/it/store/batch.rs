//! Store contract suite, part 5: the group commit of grants (SPEC §3.1, §6). Writes are held
//! back behind a lock taken outside the store until all of them wait for the writer, so they
//! land in one batch (checked with `Store::grant_batches`); inside it the rules hold as if each
//! had its own transaction: one winner among rotations of one token, a code redeemed once, the
//! grace and reuse verdicts, and one failing write leaves the others of its batch committed.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use gatehouse::store::*;
use sqlx::Connection as _;

use crate::helpers::support::{TestDb, contract_tests};
use crate::store::lifecycle::{app, at, code, grant_for, refresh};

contract_tests!(
    rotations_of_one_token_in_one_batch_have_one_winner,
    a_code_redeemed_twice_in_one_batch_is_redeemed_once,
    grace_and_reuse_are_decided_in_batch_order,
    a_failing_write_leaves_the_rest_of_its_batch_committed,
);

/// A connection outside the store holding what the grant writer needs next: SQLite's write
/// lock, or PostgreSQL table locks on the codes and refresh tokens.
enum Held {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Held {
    async fn take(db: &TestDb) -> Self {
        if db.is_postgres() {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::raw_sql("BEGIN; LOCK TABLE auth_codes, refresh_tokens IN EXCLUSIVE MODE")
                .execute(&mut c)
                .await
                .unwrap();
            Self::Postgres(c)
        } else {
            let url = format!("sqlite://{}", db.sqlite_path().display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            Self::Sqlite(c)
        }
    }

    async fn release(self) {
        match self {
            Self::Sqlite(mut c) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
            Self::Postgres(mut c) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
        }
    }
}

/// Runs `writes` (queued in order) as one batch of the store's grant writers: decoy writes
/// first occupy every writer, blocked on a held lock, while the others queue behind them; once
/// the lock goes, the first writer back takes the whole queue.
async fn in_one_batch<T, Fut>(db: &TestDb, store: &Store, writes: Vec<Fut>) -> Vec<T>
where
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let held = Held::take(db).await;
    let before = store.grant_batches();
    let writers = store.grant_writers() as u64;
    let mut decoys = Vec::new();
    // One at a time, so that each goes to a writer of its own.
    for i in 0..writers {
        let decoy = store.clone();
        decoys.push(tokio::spawn(async move {
            let new = refresh(&format!("decoy-new-{i}"), "decoy-jti", at(1));
            decoy
                .rotate_refresh_token(&secret_hash("decoy"), "nobody", &new, at(1))
                .await
        }));
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.grant_batches() < before + i + 1 {
            assert!(Instant::now() < deadline, "no writer took decoy {i}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // join_all polls each write once in order, which queues it; then they all wait.
    let all = tokio::spawn(join_all(writes));
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.release().await;
    for decoy in decoys {
        assert_eq!(decoy.await.unwrap().unwrap(), RotateOutcome::Unknown);
    }
    let results = all.await.unwrap();
    assert_eq!(
        store.grant_batches(),
        before + writers + 1,
        "the writes shared one batch after the decoys'"
    );
    results
}

async fn rotations_of_one_token_in_one_batch_have_one_winner(db: TestDb) {
    let store = db.open().await;
    let (grant, rt1) = grant_for(&store, "batch-rotor").await;
    let writes = (0..20)
        .map(|i| {
            let store = store.clone();
            let new = refresh(&format!("batch-rt-{i}"), &format!("batch-jti-{i}"), at(3));
            async move {
                store
                    .rotate_refresh_token(&rt1.hash, "batch-rotor", &new, at(3))
                    .await
                    .unwrap()
            }
        })
        .collect();
    let results = in_one_batch(&db, &store, writes).await;
    let mut winners = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
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
                assert_eq!(rotated_at, at(3));
                assert!(is_immediate_predecessor_of_current, "the grace applies");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners, vec![0], "the first queued rotation wins, alone");
    for i in 0..20 {
        let t = store
            .get_refresh_token(&secret_hash(&format!("batch-rt-{i}")))
            .await
            .unwrap();
        assert_eq!(t.is_some(), i == 0, "only the winner's token exists ({i})");
    }
    assert_eq!(
        store
            .get_refresh_token(&rt1.hash)
            .await
            .unwrap()
            .unwrap()
            .successor_hash,
        Some(secret_hash("batch-rt-0"))
    );
    store.close().await;
}

async fn a_code_redeemed_twice_in_one_batch_is_redeemed_once(db: TestDb) {
    let store = db.open().await;
    store.create_app(&app("batch-codes", "s")).await.unwrap();
    store
        .create_code(&code("batch-codes", "twice"))
        .await
        .unwrap();
    store
        .create_code(&code("batch-codes", "once"))
        .await
        .unwrap();
    let redeem = |c: &'static str, rt: &'static str| {
        let store = store.clone();
        async move {
            store
                .redeem_code(&secret_hash(c), &refresh(rt, rt, at(2)), at(2))
                .await
                .unwrap()
        }
    };
    let results = in_one_batch(
        &db,
        &store,
        vec![
            redeem("twice", "rt-a"),
            redeem("once", "rt-b"),
            redeem("twice", "rt-c"),
        ],
    )
    .await;
    let RedeemOutcome::Redeemed { grant, .. } = &results[0] else {
        panic!("the first redemption wins: {:?}", results[0]);
    };
    assert!(matches!(results[1], RedeemOutcome::Redeemed { .. }));
    match &results[2] {
        RedeemOutcome::AlreadyUsed { used_at, grant_id } => {
            assert_eq!(*used_at, at(2));
            assert_eq!(grant_id.as_deref(), Some(grant.id.as_str()));
        }
        other => panic!("the second redemption of one code loses: {other:?}"),
    }
    assert!(
        store
            .get_refresh_token(&secret_hash("rt-a"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get_refresh_token(&secret_hash("rt-b"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get_refresh_token(&secret_hash("rt-c"))
            .await
            .unwrap()
            .is_none()
    );
    store.close().await;
}

async fn grace_and_reuse_are_decided_in_batch_order(db: TestDb) {
    let store = db.open().await;
    let (grant, rt1) = grant_for(&store, "batch-grace").await;
    let rotate = |old: SecretHash, new: &'static str| {
        let store = store.clone();
        async move {
            store
                .rotate_refresh_token(&old, "batch-grace", &refresh(new, new, at(5)), at(5))
                .await
                .unwrap()
        }
    };
    let rt2 = secret_hash("grace-rt-2");
    // rt1 → rt2; rt1 again (the immediate predecessor: grace); rt2 → rt3; rt1 again (no
    // longer the immediate predecessor of the live token: reuse).
    let results = in_one_batch(
        &db,
        &store,
        vec![
            rotate(rt1.hash, "grace-rt-2"),
            rotate(rt1.hash, "grace-x"),
            rotate(rt2, "grace-rt-3"),
            rotate(rt1.hash, "grace-y"),
        ],
    )
    .await;
    assert!(
        matches!(&results[0], RotateOutcome::Rotated { refresh_token, .. } if refresh_token.generation == 2)
    );
    let grace = |r: &RotateOutcome| match r {
        RotateOutcome::AlreadyRotated {
            grant_id,
            is_immediate_predecessor_of_current,
            ..
        } => {
            assert_eq!(grant_id, &grant.id);
            *is_immediate_predecessor_of_current
        }
        other => panic!("expected AlreadyRotated, got {other:?}"),
    };
    assert!(
        grace(&results[1]),
        "a repeat right after its rotation: grace"
    );
    assert!(
        matches!(&results[2], RotateOutcome::Rotated { refresh_token, .. } if refresh_token.generation == 3)
    );
    assert!(!grace(&results[3]), "two generations back: reuse");
    store.close().await;
}

async fn a_failing_write_leaves_the_rest_of_its_batch_committed(db: TestDb) {
    let store = db.open().await;
    store.create_app(&app("batch-fail", "s")).await.unwrap();
    for c in ["fail-1", "fail-2", "fail-3"] {
        store.create_code(&code("batch-fail", c)).await.unwrap();
    }
    let (_, existing) = grant_for(&store, "batch-fail-other").await;
    let redeem = |c: &'static str, rt: NewRefreshToken| {
        let store = store.clone();
        async move { store.redeem_code(&secret_hash(c), &rt, at(2)).await }
    };
    // The second redemption would store a refresh token whose hash exists: a unique violation
    // that fails its statement, and with it the batch's transaction.
    let mut clash = refresh("unused", "clash-jti", at(2));
    clash.hash = existing.hash;
    let results = in_one_batch(
        &db,
        &store,
        vec![
            redeem("fail-1", refresh("fail-rt-1", "j1", at(2))),
            redeem("fail-2", clash),
            redeem("fail-3", refresh("fail-rt-3", "j3", at(2))),
        ],
    )
    .await;
    assert!(matches!(results[0], Ok(RedeemOutcome::Redeemed { .. })));
    assert_eq!(
        results[1].as_ref().unwrap_err().kind(),
        StoreErrorKind::Conflict
    );
    assert!(matches!(results[2], Ok(RedeemOutcome::Redeemed { .. })));
    for (c, used) in [("fail-1", true), ("fail-2", false), ("fail-3", true)] {
        let stored = store.get_code(&secret_hash(c)).await.unwrap().unwrap();
        assert_eq!(stored.used_at.is_some(), used, "{c}");
    }
    assert!(
        store
            .get_refresh_token(&secret_hash("fail-rt-1"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get_refresh_token(&secret_hash("fail-rt-3"))
            .await
            .unwrap()
            .is_some()
    );
    store.close().await;
}
