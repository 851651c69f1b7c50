//! The store's shared throttle rows (SPEC §3.2): with PostgreSQL a change is stored under a
//! row lock and read back by every handle, and expired rows are swept; SQLite does not share
//! (one process keeps its throttles in memory).

use std::time::Duration;

use gatehouse::store::ThrottleRow;

use crate::helpers::support::TestDb;
use crate::store::lifecycle::at;

/// A change that counts a failure at `at(from)`, blocked for `until`, expiring after `expires`.
fn blocked_for(
    from: u64,
    until: Duration,
    expires: Duration,
) -> impl Fn(ThrottleRow) -> ThrottleRow + Send + Sync {
    move |row: ThrottleRow| ThrottleRow {
        failures: row.failures + 1,
        first_failure: at(from),
        blocked_until: at(from) + until,
        expires: at(from) + expires,
    }
}

#[tokio::test]
async fn postgresql_shares_throttle_rows_and_sweeps_the_expired_ones() {
    let Some(db) = TestDb::postgres("shared throttle rows").await else {
        return;
    };
    let (one, two) = (db.open().await, db.open().await);
    assert!(one.shares_throttles());
    let a = b"a-key".to_vec();
    let b = b"b-key".to_vec();
    let change = blocked_for(0, Duration::from_secs(10), Duration::from_secs(20));
    one.throttle_update(std::slice::from_ref(&a), at(0), &change)
        .await
        .unwrap();
    one.throttle_update(std::slice::from_ref(&a), at(1), &change)
        .await
        .unwrap();
    assert_eq!(
        two.throttle_blocked_until(&[a.clone(), b.clone()], at(5))
            .await
            .unwrap(),
        Some(at(0) + Duration::from_secs(10)),
        "the other handle sees it"
    );
    assert_eq!(
        two.throttle_blocked_until(std::slice::from_ref(&a), at(15))
            .await
            .unwrap(),
        None
    );
    // Past `expires` a row counts nothing: the change starts from an empty row.
    let seen = std::sync::Mutex::new(None);
    let record = |row: ThrottleRow| {
        *seen.lock().unwrap() = Some(row.failures);
        row
    };
    two.throttle_update(std::slice::from_ref(&a), at(25), &record)
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(0));

    // A handle sweeps expired rows at most once a minute.
    let later = blocked_for(100, Duration::from_secs(10), Duration::from_secs(20));
    one.throttle_update(std::slice::from_ref(&b), at(100), &later)
        .await
        .unwrap();
    let rows = count_rows(&db).await;
    assert_eq!(rows, 1, "the expired row of a is gone, b's stays");
    one.throttle_forget(&b).await.unwrap();
    assert_eq!(count_rows(&db).await, 0);
}

async fn count_rows(db: &TestDb) -> i64 {
    use sqlx::Connection as _;
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM throttle_failures")
        .fetch_one(&mut c)
        .await
        .unwrap();
    c.close().await.ok();
    n
}

#[tokio::test]
async fn sqlite_keeps_throttles_in_memory() {
    let db = TestDb::sqlite().await;
    let store = db.open().await;
    assert!(!store.shares_throttles());
    let change = blocked_for(0, Duration::from_secs(10), Duration::from_secs(20));
    store
        .throttle_update(&[b"k".to_vec()], at(0), &change)
        .await
        .unwrap();
    assert_eq!(
        store
            .throttle_blocked_until(&[b"k".to_vec()], at(1))
            .await
            .unwrap(),
        None
    );
}

/// What sharing the throttles adds to every login and client authentication on PostgreSQL:
/// the mean time of the read that judges an attempt against the replicas' bans, beside the
/// mean time of one `SELECT 1` round trip (the store's health check) in the same run.
/// `cargo test --test it shared_throttle_read_cost -- --ignored --nocapture`
#[tokio::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn shared_throttle_read_cost() {
    const ROUNDS: u32 = 2_000;
    let Some(db) = TestDb::postgres("shared throttle read cost").await else {
        return;
    };
    let store = db.open().await;
    let keys = vec![b"u-measure".to_vec(), b"a-measure".to_vec()];
    for _ in 0..100 {
        store.health().await.unwrap();
        store.throttle_blocked_until(&keys, at(0)).await.unwrap();
    }
    let started = std::time::Instant::now();
    for _ in 0..ROUNDS {
        store.health().await.unwrap();
    }
    let round_trip = started.elapsed() / ROUNDS;
    let started = std::time::Instant::now();
    for _ in 0..ROUNDS {
        store.throttle_blocked_until(&keys, at(0)).await.unwrap();
    }
    let read = started.elapsed() / ROUNDS;
    println!(
        "shared throttle read: {read:?} per attempt; SELECT 1 round trip: {round_trip:?} \
         ({ROUNDS} each, one connection at a time, loopback PostgreSQL)"
    );
}
