//! Store contract suite, part 5: revocation events — delivered once per change to this
//! handle's subscribers on both engines. PostgreSQL alone (SQLite's events never leave the
//! one process, which the tests above cover) also delivers them to another handle (a second
//! replica), exactly once, and announces when its notification connection drops and when it
//! listens again.

use std::time::Duration;

use gatehouse::store::*;
use tokio::sync::broadcast::Receiver;

use crate::helpers::support::{TestDb, contract_tests, postgres_tests};
use crate::store::lifecycle::{at, grant_for, refresh};

const DEADLINE: Duration = Duration::from_secs(10);

contract_tests!(
    sync_hooks_see_a_change_before_its_call_returns,
    events_reach_local_subscribers_once_per_change,
);
postgres_tests!(
    events_reach_other_replicas,
    a_lost_listener_connection_is_announced_and_comes_back
);

/// The next event, waiting at most `DEADLINE`.
async fn next(rx: &mut Receiver<StoreEvent>) -> StoreEvent {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("no event before the deadline")
        .expect("recv")
}

/// The token cache hooks in here: once a revoking call has returned, its events have been
/// applied, whatever the broadcast subscribers' tasks are doing.
async fn sync_hooks_see_a_change_before_its_call_returns(db: TestDb) {
    let store = db.open().await;
    let (grant, rt) = grant_for(&store, "hook-a").await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<StoreEvent>::new()));
    let sink = std::sync::Arc::clone(&seen);
    store.on_event_sync(std::sync::Arc::new(move |e: &StoreEvent| {
        sink.lock().unwrap().push(e.clone())
    }));
    let out = store
        .rotate_refresh_token(
            &rt.hash,
            "hook-a",
            &refresh("hook-rt-2", "hook-jti-2", at(5)),
            at(5),
        )
        .await
        .unwrap();
    assert!(matches!(out, RotateOutcome::Rotated { .. }));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![StoreEvent::TokenRevoked {
            jti: rt.access_jti.clone().unwrap()
        }]
    );
    store.revoke_grant(&grant.id, at(6)).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().last(),
        Some(&StoreEvent::GrantRevoked {
            grant_id: grant.id.clone()
        })
    );
    store
        .revoke_access_token("hook-jti-x", None, at(100), at(7))
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().last(),
        Some(&StoreEvent::TokenRevoked {
            jti: "hook-jti-x".into()
        })
    );
    store.close().await;
}

async fn events_reach_local_subscribers_once_per_change(db: TestDb) {
    let store = db.open().await;
    let (g1, rt) = grant_for(&store, "ev-a").await;
    let (g2, _) = grant_for(&store, "ev-b").await;
    let mut rx = store.subscribe();
    let mut rx2 = store.subscribe();

    let out = store
        .rotate_refresh_token(
            &rt.hash,
            "ev-a",
            &refresh("ev-rt-2", "ev-jti-2", at(5)),
            at(5),
        )
        .await;
    assert!(matches!(out.unwrap(), RotateOutcome::Rotated { .. }));
    store.revoke_grant(&g1.id, at(6)).await.unwrap();
    let b = store.get_app_by_client_id("ev-b").await.unwrap().unwrap();
    store.delete_app(&b.id).await.unwrap();
    store
        .revoke_access_token("ev-jti-x", Some(&g2.id), at(100), at(7))
        .await
        .unwrap();

    let expected = vec![
        StoreEvent::TokenRevoked {
            jti: rt.access_jti.clone().unwrap(),
        },
        StoreEvent::GrantRevoked {
            grant_id: g1.id.clone(),
        },
        StoreEvent::AppRevoked {
            client_id: "ev-b".to_owned(),
        },
        StoreEvent::TokenRevoked {
            jti: "ev-jti-x".to_owned(),
        },
    ];
    for rx in [&mut rx, &mut rx2] {
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            got.push(next(rx).await);
        }
        assert_eq!(got, expected);
    }
    // A final marker proves nothing else (no echo of our own notifications) came in between.
    store
        .revoke_access_token("ev-marker", None, at(100), at(8))
        .await
        .unwrap();
    assert_eq!(
        next(&mut rx).await,
        StoreEvent::TokenRevoked {
            jti: "ev-marker".to_owned()
        }
    );
    if db.is_postgres() {
        // Our own NOTIFYs have made the round trip by now (a second handle saw the marker).
        let other = db.open().await;
        let mut orx = other.subscribe();
        other
            .revoke_access_token("ev-marker-2", None, at(100), at(9))
            .await
            .unwrap();
        assert_eq!(
            next(&mut orx).await,
            StoreEvent::TokenRevoked {
                jti: "ev-marker-2".to_owned()
            }
        );
        assert_eq!(
            next(&mut rx).await,
            StoreEvent::TokenRevoked {
                jti: "ev-marker-2".to_owned()
            }
        );
        other.close().await;
    }
    assert!(
        rx.try_recv().is_err(),
        "each change is announced exactly once"
    );
    store.close().await;
}

async fn events_reach_other_replicas(db: TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    let mut arx = a.subscribe();
    let mut brx = b.subscribe();
    let (g1, _) = grant_for(&a, "replica-a").await;
    let (g2, _) = grant_for(&a, "replica-b").await;
    a.revoke_grant(&g1.id, at(5)).await.unwrap();
    a.revoke_grant(&g2.id, at(6)).await.unwrap();
    let from_a = [
        StoreEvent::GrantRevoked {
            grant_id: g1.id.clone(),
        },
        StoreEvent::GrantRevoked {
            grant_id: g2.id.clone(),
        },
    ];
    // b hears a's changes through NOTIFY, in commit order; a heard them at once.
    for rx in [&mut arx, &mut brx] {
        assert_eq!([next(rx).await, next(rx).await], from_a);
    }
    b.revoke_access_token("from-b", None, at(100), at(7))
        .await
        .unwrap();
    for rx in [&mut arx, &mut brx] {
        assert_eq!(
            next(rx).await,
            StoreEvent::TokenRevoked {
                jti: "from-b".to_owned()
            }
        );
    }
    // A change rolled back (nothing to revoke) announces nothing anywhere.
    assert!(!a.revoke_grant("no-such-grant", at(8)).await.unwrap());
    b.revoke_access_token("final", None, at(100), at(9))
        .await
        .unwrap();
    assert_eq!(
        next(&mut arx).await,
        StoreEvent::TokenRevoked {
            jti: "final".to_owned()
        }
    );
    a.close().await;
    b.close().await;
}

/// Cut every LISTEN connection to the database, as a network blip or a failover would: each
/// handle announces the loss at once, listens again on its own and says so, and from then on
/// hears the other replica again. Twice, so the new connection is the one cut the second time.
async fn a_lost_listener_connection_is_announced_and_comes_back(db: TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    let mut brx = b.subscribe();
    for round in 0..2 {
        db.terminate_listeners().await;
        assert_eq!(next(&mut brx).await, StoreEvent::NotificationsLost);
        assert_eq!(next(&mut brx).await, StoreEvent::NotificationsBack);
        // b has listened again before this change commits: it must hear it.
        let jti = format!("after-reconnect-{round}");
        a.revoke_access_token(&jti, None, at(100), at(1))
            .await
            .unwrap();
        assert_eq!(next(&mut brx).await, StoreEvent::TokenRevoked { jti });
    }
    a.close().await;
    b.close().await;
}
