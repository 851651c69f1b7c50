//! Store contract suite: federated users (SPEC §7.1) — created at the first login, updated with
//! each later login's scope and groups, never handed to another identity — and the single use
//! of a provider callback's `state`.

use gatehouse::store::*;

use crate::helpers::support::{TestDb, contract_tests};
use crate::store::lifecycle::{at, t0};

contract_tests!(
    federated_users_follow_their_latest_login_and_keep_their_identity,
    a_login_state_is_used_once_until_it_expires,
    retiring_a_federated_user_ends_their_sessions_and_tokens,
);

fn user(name: &str, provider: &str, subject: &str) -> FederatedUser {
    FederatedUser {
        name: name.to_owned(),
        provider: provider.to_owned(),
        subject: subject.to_owned(),
        max_scope: "READ".to_owned(),
        groups: vec!["staff".to_owned()],
        create_time: t0(),
        last_login_time: t0(),
    }
}

async fn federated_users_follow_their_latest_login_and_keep_their_identity(db: TestDb) {
    let store = db.open().await;
    assert_eq!(store.get_federated_user("jane").await.unwrap(), None);
    let first = user("jane", "corp", "sub-1");
    assert_eq!(
        store.record_federated_login(&first).await.unwrap(),
        FederatedLogin::Recorded
    );
    assert_eq!(
        store.get_federated_user("jane").await.unwrap(),
        Some(first.clone())
    );
    // A later login: new scope, groups and time; the creation time stays.
    let mut later = first.clone();
    later.max_scope = "ADMIN".to_owned();
    later.groups = vec!["staff".to_owned(), "wiki-admins".to_owned()];
    later.create_time = at(3600);
    later.last_login_time = at(3600);
    assert_eq!(
        store.record_federated_login(&later).await.unwrap(),
        FederatedLogin::Recorded
    );
    let stored = store.get_federated_user("jane").await.unwrap().unwrap();
    assert_eq!(stored.max_scope, "ADMIN");
    assert_eq!(stored.groups, later.groups);
    assert_eq!(stored.last_login_time, at(3600));
    assert_eq!(stored.create_time, t0());
    // The same name from another subject, or another provider: refused, nothing changed.
    for other in [
        user("jane", "corp", "sub-2"),
        user("jane", "partner", "sub-1"),
    ] {
        assert_eq!(
            store.record_federated_login(&other).await.unwrap(),
            FederatedLogin::NameTaken {
                provider: "corp".to_owned()
            }
        );
    }
    assert_eq!(
        store.get_federated_user("jane").await.unwrap(),
        Some(stored)
    );
    store.close().await;
}

async fn a_login_state_is_used_once_until_it_expires(db: TestDb) {
    let store = db.open().await;
    let state = secret_hash("state-of-one-login");
    assert!(store.use_login_state(&state, at(600), t0()).await.unwrap());
    assert!(!store.use_login_state(&state, at(600), at(1)).await.unwrap());
    assert!(
        !store
            .use_login_state(&state, at(600), at(599))
            .await
            .unwrap()
    );
    let other = secret_hash("state-of-another-login");
    assert!(store.use_login_state(&other, at(600), at(2)).await.unwrap());
    // Past its expiry the record is dropped (its cookie is refused before it is looked at).
    assert!(
        store
            .use_login_state(&state, at(1200), at(600))
            .await
            .unwrap()
    );
    store.close().await;
}

async fn retiring_a_federated_user_ends_their_sessions_and_tokens(db: TestDb) {
    let store = db.open().await;
    let mut events = store.subscribe();
    assert!(!store.retire_federated_user("jane", t0()).await.unwrap());
    store
        .record_federated_login(&user("jane", "corp", "sub-1"))
        .await
        .unwrap();
    let session = Session {
        id_hash: secret_hash("jane-session"),
        user: "jane".to_owned(),
        create_time: t0(),
        expire_time: at(3600),
    };
    store.create_session(&session).await.unwrap();
    let mut other = session.clone();
    other.id_hash = secret_hash("alice-session");
    other.user = "alice".to_owned();
    store.create_session(&other).await.unwrap();
    let pat = PersonalToken {
        id: new_id(),
        user: "jane".to_owned(),
        display_name: "ci".to_owned(),
        scope: "READ".to_owned(),
        token_hash: secret_hash("gh_pat_jane"),
        create_time: t0(),
        expire_time: at(86_400),
        last_used_time: None,
    };
    store.create_pat(&pat).await.unwrap();
    assert!(store.retire_federated_user("jane", at(10)).await.unwrap());
    assert_eq!(store.get_federated_user("jane").await.unwrap(), None);
    assert_eq!(
        store.get_session(&session.id_hash, at(11)).await.unwrap(),
        None
    );
    assert!(
        store
            .get_pat_by_hash(&pat.token_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        events.try_recv().unwrap(),
        StoreEvent::PatRevoked {
            id: pat.id.clone(),
            token_hash: pat.token_hash
        }
    );
    // Someone else's session stays.
    assert!(
        store
            .get_session(&other.id_hash, at(11))
            .await
            .unwrap()
            .is_some()
    );
    store.close().await;
}
