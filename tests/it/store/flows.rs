//! Store contract suite, part 3: the OAuth flows' transactions — code redemption, refresh
//! rotation with reuse detection, grant and access-token revocation, app deletion and
//! deactivation — and the cleanup of expired rows.

use gatehouse::store::*;

use crate::helpers::support::{TestDb, contract_tests};
use crate::store::lifecycle::{app, at, code, grant_for, refresh, t0};

contract_tests!(
    codes_redeem_once_and_report_the_grant,
    refresh_rotation_chain_and_reuse,
    revoking_a_grant_ends_its_tokens,
    access_token_revocation,
    deleting_an_app_revokes_everything_at_once,
    deactivating_an_app_revokes_its_grants,
    a_live_tokens_app_scopes_follow_the_app,
    cleanup_removes_only_expired_rows,
    background_cleanup_runs_on_its_own,
);

async fn codes_redeem_once_and_report_the_grant(db: TestDb) {
    let store = db.open().await;
    store.create_app(&app("coder", "s")).await.unwrap();
    let c = code("coder", "code-1");
    store.create_code(&c).await.unwrap();
    let stored = store.get_code(&c.hash).await.unwrap().unwrap();
    assert_eq!(
        (stored.used_at, stored.grant_id, stored.scope.as_str()),
        (None, None, "WRITE")
    );
    assert_eq!(stored.code_challenge, c.code_challenge);

    let first = refresh("rt-first", "jti-first", at(5));
    let RedeemOutcome::Redeemed {
        code: used,
        grant,
        refresh_token,
    } = store.redeem_code(&c.hash, &first, at(5)).await.unwrap()
    else {
        panic!("first redemption must win")
    };
    assert_eq!(used.used_at, Some(at(5)));
    assert_eq!(used.grant_id.as_deref(), Some(grant.id.as_str()));
    assert_eq!(
        (
            grant.user.as_str(),
            grant.client_id.as_str(),
            grant.scope.as_str()
        ),
        ("alice", "coder", "WRITE")
    );
    assert_eq!(grant.create_time, at(5));
    assert_eq!(grant.expire_time, first.expire_time);
    assert_eq!(refresh_token.generation, 1);
    assert_eq!(refresh_token.grant_id, grant.id);
    assert_eq!(refresh_token.access_jti.as_deref(), Some("jti-first"));
    assert!(store.is_grant_live(&grant.id).await.unwrap());

    let again = store
        .redeem_code(&c.hash, &refresh("rt-2", "j2", at(6)), at(6))
        .await
        .unwrap();
    assert_eq!(
        again,
        RedeemOutcome::AlreadyUsed {
            used_at: at(5),
            grant_id: Some(grant.id.clone())
        }
    );
    assert_eq!(
        store.get_refresh_token(&secret_hash("rt-2")).await.unwrap(),
        None
    );

    let late = code("coder", "code-late");
    store.create_code(&late).await.unwrap();
    let out = store
        .redeem_code(&late.hash, &refresh("rt-3", "j3", at(60)), at(60))
        .await
        .unwrap();
    assert_eq!(out, RedeemOutcome::Expired);
    let out = store
        .redeem_code(&secret_hash("never"), &refresh("rt-4", "j4", at(1)), at(1))
        .await;
    assert_eq!(out.unwrap(), RedeemOutcome::Unknown);

    let orphan = code("no-such-client", "code-orphan");
    assert_eq!(
        store.create_code(&orphan).await.unwrap_err().kind(),
        StoreErrorKind::Conflict
    );
    store.close().await;
}

async fn refresh_rotation_chain_and_reuse(db: TestDb) {
    let store = db.open().await;
    let (grant, rt1) = grant_for(&store, "rotor").await;
    let n2 = refresh("rt-gen-2", "jti-2", at(10));
    let RotateOutcome::Rotated {
        grant: g,
        refresh_token: rt2,
        revoked_access_jti,
    } = store
        .rotate_refresh_token(&rt1.hash, "rotor", &n2, at(10))
        .await
        .unwrap()
    else {
        panic!("rotation must win")
    };
    assert_eq!(g.id, grant.id);
    assert_eq!(g.expire_time, n2.expire_time, "the grant is extended");
    assert_eq!((rt2.generation, rt2.parent_hash), (2, Some(rt1.hash)));
    assert_eq!(
        revoked_access_jti, rt1.access_jti,
        "the old access token is revoked"
    );
    assert!(
        store
            .is_access_token_revoked(rt1.access_jti.as_deref().unwrap())
            .await
            .unwrap()
    );
    let old = store.get_refresh_token(&rt1.hash).await.unwrap().unwrap();
    assert_eq!(
        (old.rotated_at, old.successor_hash),
        (Some(at(10)), Some(rt2.hash))
    );

    // A repeat of the same refresh: the immediate predecessor of the current token.
    let repeat = store
        .rotate_refresh_token(&rt1.hash, "rotor", &refresh("x1", "y1", at(11)), at(11))
        .await;
    assert_eq!(
        repeat.unwrap(),
        RotateOutcome::AlreadyRotated {
            grant_id: grant.id.clone(),
            rotated_at: at(10),
            is_immediate_predecessor_of_current: true
        }
    );
    assert_eq!(
        store.get_refresh_token(&secret_hash("x1")).await.unwrap(),
        None
    );

    let n3 = refresh("rt-gen-3", "jti-3", at(20));
    let out = store
        .rotate_refresh_token(&rt2.hash, "rotor", &n3, at(20))
        .await
        .unwrap();
    assert!(
        matches!(out, RotateOutcome::Rotated { ref refresh_token, .. } if refresh_token.generation == 3)
    );
    // Generation 1 is now two behind: never within the grace rule.
    let old = store
        .rotate_refresh_token(&rt1.hash, "rotor", &refresh("x2", "y2", at(21)), at(21))
        .await;
    assert!(matches!(
        old.unwrap(),
        RotateOutcome::AlreadyRotated {
            is_immediate_predecessor_of_current: false,
            ..
        }
    ));

    // Another client presenting the token learns nothing and changes nothing.
    let other = store
        .rotate_refresh_token(&n3.hash, "intruder", &refresh("x3", "y3", at(22)), at(22))
        .await;
    assert_eq!(other.unwrap(), RotateOutcome::ClientMismatch);
    let expired = store
        .rotate_refresh_token(
            &n3.hash,
            "rotor",
            &refresh("x4", "y4", at(0)),
            n3.expire_time,
        )
        .await;
    assert_eq!(
        expired.unwrap(),
        RotateOutcome::Expired {
            grant_id: grant.id.clone()
        }
    );
    let unknown = store
        .rotate_refresh_token(
            &secret_hash("??"),
            "rotor",
            &refresh("x5", "y5", at(1)),
            at(23),
        )
        .await;
    assert_eq!(unknown.unwrap(), RotateOutcome::Unknown);

    // Reuse detected by the caller: it revokes the grant; the current token then fails too.
    assert!(store.revoke_grant(&grant.id, at(30)).await.unwrap());
    let after = store
        .rotate_refresh_token(&n3.hash, "rotor", &refresh("x6", "y6", at(31)), at(31))
        .await;
    assert_eq!(
        after.unwrap(),
        RotateOutcome::Revoked {
            grant_id: grant.id.clone()
        }
    );
    let replay = store
        .rotate_refresh_token(&rt1.hash, "rotor", &refresh("x7", "y7", at(31)), at(31))
        .await;
    assert_eq!(
        replay.unwrap(),
        RotateOutcome::Revoked {
            grant_id: grant.id.clone()
        }
    );
    store.close().await;
}

async fn revoking_a_grant_ends_its_tokens(db: TestDb) {
    let store = db.open().await;
    let mut events = store.subscribe();
    let (grant, rt) = grant_for(&store, "revoker").await;
    let jti = rt.access_jti.clone().unwrap();
    assert!(store.is_access_token_live(&jti, &grant.id).await.unwrap());
    assert!(store.revoke_grant(&grant.id, at(5)).await.unwrap());
    assert_eq!(
        events.try_recv().unwrap(),
        StoreEvent::GrantRevoked {
            grant_id: grant.id.clone()
        }
    );
    assert!(
        !store.revoke_grant(&grant.id, at(6)).await.unwrap(),
        "already revoked"
    );
    assert!(events.try_recv().is_err(), "nothing announced twice");
    assert!(!store.is_grant_live(&grant.id).await.unwrap());
    assert!(!store.is_access_token_live(&jti, &grant.id).await.unwrap());
    let g = store.get_grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(g.revoked_at, Some(at(5)));
    let t = store.get_refresh_token(&rt.hash).await.unwrap().unwrap();
    assert_eq!(t.revoked_at, Some(at(5)));
    assert!(!store.revoke_grant("no-such-grant", at(7)).await.unwrap());
    store.close().await;
}

async fn access_token_revocation(db: TestDb) {
    let store = db.open().await;
    let mut events = store.subscribe();
    let (grant, _) = grant_for(&store, "at-client").await;
    assert!(!store.is_access_token_revoked("jti-x").await.unwrap());
    assert!(
        store
            .is_access_token_live("jti-x", &grant.id)
            .await
            .unwrap()
    );
    store
        .revoke_access_token("jti-x", Some(&grant.id), at(7_200), at(5))
        .await
        .unwrap();
    store
        .revoke_access_token("jti-x", Some(&grant.id), at(7_200), at(6))
        .await
        .unwrap();
    assert!(store.is_access_token_revoked("jti-x").await.unwrap());
    assert!(
        !store
            .is_access_token_live("jti-x", &grant.id)
            .await
            .unwrap()
    );
    assert!(
        store
            .is_access_token_live("jti-y", &grant.id)
            .await
            .unwrap(),
        "others unaffected"
    );
    assert!(
        !store
            .is_access_token_live("jti-y", "no-such-grant")
            .await
            .unwrap()
    );
    assert_eq!(
        events.try_recv().unwrap(),
        StoreEvent::TokenRevoked {
            jti: "jti-x".to_owned()
        }
    );
    store.close().await;
}

async fn deleting_an_app_revokes_everything_at_once(db: TestDb) {
    let store = db.open().await;
    let mut events = store.subscribe();
    let (grant, rt) = grant_for(&store, "doomed").await;
    let (other, _) = grant_for(&store, "bystander").await;
    store
        .create_code(&code("doomed", "pending-code"))
        .await
        .unwrap();
    let a = store.get_app_by_client_id("doomed").await.unwrap().unwrap();
    store.delete_app(&a.id).await.unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        StoreEvent::AppRevoked {
            client_id: "doomed".to_owned()
        }
    );
    assert!(!store.is_grant_live(&grant.id).await.unwrap());
    assert_eq!(store.get_grant(&grant.id).await.unwrap(), None);
    assert_eq!(store.get_refresh_token(&rt.hash).await.unwrap(), None);
    assert_eq!(
        store.get_code(&secret_hash("pending-code")).await.unwrap(),
        None
    );
    let out = store
        .rotate_refresh_token(&rt.hash, "doomed", &refresh("n", "j", at(9)), at(9))
        .await;
    assert_eq!(out.unwrap(), RotateOutcome::Unknown);
    assert!(
        store.is_grant_live(&other.id).await.unwrap(),
        "other apps untouched"
    );
    store.close().await;
}

/// The cache-miss check of an access token: its app's scopes as they are now, announced
/// changes, and nothing once the token, its grant or its app is not live.
async fn a_live_tokens_app_scopes_follow_the_app(db: TestDb) {
    let store = db.open().await;
    let (grant, _) = grant_for(&store, "narrowed").await;
    let scopes = |jti: &'static str| {
        let (store, grant) = (store.clone(), grant.id.clone());
        async move {
            store
                .live_access_token_app_scopes(jti, &grant)
                .await
                .unwrap()
        }
    };
    let both = Some(vec!["READ".to_owned(), "WRITE".to_owned()]);
    assert_eq!(scopes("jti-a").await, both);
    let mut events = store.subscribe();
    let mut a = store
        .get_app_by_client_id("narrowed")
        .await
        .unwrap()
        .unwrap();
    a.scopes = vec!["READ".to_owned()];
    a.update_time = at(10);
    store.update_app(&a).await.unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        StoreEvent::AppUpdated {
            client_id: "narrowed".to_owned()
        }
    );
    assert_eq!(scopes("jti-a").await, Some(vec!["READ".to_owned()]));
    store
        .revoke_access_token("jti-a", Some(&grant.id), at(7_200), at(11))
        .await
        .unwrap();
    assert_eq!(scopes("jti-a").await, None, "a revoked token");
    assert_eq!(scopes("jti-b").await, Some(vec!["READ".to_owned()]));
    assert_eq!(
        store
            .live_access_token_app_scopes("jti-b", "no-such-grant")
            .await
            .unwrap(),
        None
    );
    a.active = false;
    store.update_app(&a).await.unwrap();
    assert_eq!(scopes("jti-b").await, None, "an inactive app");
    store.close().await;
}

async fn deactivating_an_app_revokes_its_grants(db: TestDb) {
    let store = db.open().await;
    let mut events = store.subscribe();
    let (grant, rt) = grant_for(&store, "paused").await;
    let mut a = store.get_app_by_client_id("paused").await.unwrap().unwrap();
    a.active = false;
    a.update_time = at(50);
    store.update_app(&a).await.unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        StoreEvent::AppRevoked {
            client_id: "paused".to_owned()
        }
    );
    assert!(!store.is_grant_live(&grant.id).await.unwrap());
    assert_eq!(
        store
            .get_grant(&grant.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at(50))
    );
    let out = store
        .rotate_refresh_token(&rt.hash, "paused", &refresh("n", "j", at(51)), at(51))
        .await;
    assert_eq!(
        out.unwrap(),
        RotateOutcome::Revoked {
            grant_id: grant.id.clone()
        }
    );

    // A code issued before the app was paused cannot be redeemed while it is.
    let mut c = code("paused", "code-while-paused");
    c.expire_time = at(600);
    store.create_code(&c).await.unwrap();
    let out = store
        .redeem_code(&c.hash, &refresh("n2", "j2", at(52)), at(52))
        .await
        .unwrap();
    assert_eq!(out, RedeemOutcome::Unknown);

    // Reactivating does not bring old grants back.
    a.active = true;
    a.update_time = at(60);
    store.update_app(&a).await.unwrap();
    assert!(!store.is_grant_live(&grant.id).await.unwrap());
    store.close().await;
}

async fn cleanup_removes_only_expired_rows(db: TestDb) {
    let store = db.open().await;
    let (grant, rt) = grant_for(&store, "cleaner").await; // refresh to ~30 d, access to 2 h
    for i in 0..5u64 {
        let mut c = code("cleaner", &format!("old-code-{i}"));
        c.expire_time = at(60);
        store.create_code(&c).await.unwrap();
        let s = Session {
            id_hash: secret_hash(&format!("old-session-{i}")),
            user: "alice".to_owned(),
            create_time: t0(),
            expire_time: at(100 + i),
        };
        store.create_session(&s).await.unwrap();
        store
            .revoke_access_token(&format!("old-jti-{i}"), None, at(200), t0())
            .await
            .unwrap();
    }
    let live = Session {
        id_hash: secret_hash("live-session"),
        user: "bob".to_owned(),
        create_time: t0(),
        expire_time: at(90_000),
    };
    store.create_session(&live).await.unwrap();
    store
        .revoke_access_token("live-jti", None, at(90_000), t0())
        .await
        .unwrap();
    store
        .create_pat(&PersonalToken {
            id: "old-pat".to_owned(),
            user: "alice".to_owned(),
            display_name: "old".to_owned(),
            scope: "READ".to_owned(),
            token_hash: secret_hash("old-pat"),
            create_time: t0(),
            expire_time: at(300),
            last_used_time: None,
        })
        .await
        .unwrap();

    let report = store.cleanup_expired(at(1_000), 2).await.unwrap();
    assert_eq!(report.auth_codes, 6, "five old codes and the redeemed one");
    assert_eq!(report.sessions, 5);
    assert_eq!(report.token_revocations, 5);
    assert_eq!(report.personal_tokens, 1);
    assert_eq!((report.refresh_tokens, report.grants), (0, 0));
    assert!(
        store
            .get_session(&live.id_hash, at(1_000))
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.is_access_token_revoked("live-jti").await.unwrap());
    assert!(!store.is_access_token_revoked("old-jti-0").await.unwrap());
    assert!(store.get_refresh_token(&rt.hash).await.unwrap().is_some());

    // Once everything issued under the grant has expired, the grant goes too.
    let report = store.cleanup_expired(grant.expire_time, 2).await.unwrap();
    assert_eq!((report.refresh_tokens, report.grants), (1, 1));
    assert_eq!(store.get_grant(&grant.id).await.unwrap(), None);
    assert_eq!(
        store
            .cleanup_expired(grant.expire_time, 2)
            .await
            .unwrap()
            .total(),
        0
    );
    store.close().await;
}

async fn background_cleanup_runs_on_its_own(db: TestDb) {
    let store = db.open().await;
    // t0() is in the past of the wall clock, so this session is already expired for it.
    let s = Session {
        id_hash: secret_hash("bg-session"),
        user: "alice".to_owned(),
        create_time: t0(),
        expire_time: at(60),
    };
    store.create_session(&s).await.unwrap();
    let task = store.spawn_cleanup(
        std::time::Duration::from_millis(20),
        gatehouse::clock::Clock::system(),
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.get_session(&s.id_hash, t0()).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "cleanup never ran");
        tokio::task::yield_now().await;
    }
    task.abort();
    store.close().await;
}
