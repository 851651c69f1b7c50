//! Store contract suite, part 1: fixtures shared by the other `store` modules, and the store's
//! life cycle — migrations, refusing a newer schema, restart durability, health, errors.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatehouse::store::*;

use crate::helpers::support::{TestDb, contract_tests};

/// A fixed "now" (2026-11-19T12:53:20Z); tests move time by adding to it.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

pub fn at(secs: u64) -> SystemTime {
    t0() + Duration::from_secs(secs)
}

/// An API-managed confidential app whose client secret is `secret`.
pub fn app(client_id: &str, secret: &str) -> App {
    App {
        id: new_app_id(),
        client_id: client_id.to_owned(),
        display_name: format!("App {client_id}"),
        description: "Test app".to_owned(),
        logo_uri: "https://example.com/logo.png".to_owned(),
        allowed_callback_urls: vec!["https://client.example.com/callback".to_owned()],
        allowed_logout_urls: vec!["https://client.example.com/".to_owned()],
        allowed_web_origins: vec!["https://client.example.com".to_owned()],
        client_type: ClientType::Confidential,
        secret_hash: Some(secret_hash(secret)),
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        scopes: vec!["READ".to_owned(), "WRITE".to_owned()],
        skip_consent: false,
        active: true,
        labels: BTreeMap::from([("team".to_owned(), "docs".to_owned())]),
        created_by: "users/alice".to_owned(),
        updated_by: "users/alice".to_owned(),
        create_time: t0(),
        update_time: t0(),
        managed_by: ManagedBy::Api,
    }
}

/// An unredeemed code for `client_id`, valid 60 s from `t0()`.
pub fn code(client_id: &str, secret: &str) -> NewAuthCode {
    NewAuthCode {
        hash: secret_hash(secret),
        client_id: client_id.to_owned(),
        user: "alice".to_owned(),
        redirect_uri: "https://client.example.com/callback".to_owned(),
        scope: "WRITE".to_owned(),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned()),
        code_challenge_method: Some("S256".to_owned()),
        create_time: t0(),
        expire_time: at(60),
    }
}

/// A refresh token (30 days) issued with access token `jti` (2 hours), both from `now`.
pub fn refresh(secret: &str, jti: &str, now: SystemTime) -> NewRefreshToken {
    NewRefreshToken {
        hash: secret_hash(secret),
        expire_time: now + Duration::from_secs(30 * 86_400),
        access_jti: Some(jti.to_owned()),
        access_expire_time: Some(now + Duration::from_secs(7_200)),
    }
}

/// Creates an app, a code, and redeems it: returns (grant, first refresh token).
pub async fn grant_for(store: &Store, client_id: &str) -> (Grant, RefreshToken) {
    store
        .create_app(&app(client_id, &format!("secret-{client_id}")))
        .await
        .unwrap();
    let code_secret = format!("code-{}", new_id());
    store
        .create_code(&code(client_id, &code_secret))
        .await
        .unwrap();
    let rt = refresh(&format!("rt-{}", new_id()), &new_id(), at(1));
    match store
        .redeem_code(&secret_hash(&code_secret), &rt, at(1))
        .await
        .unwrap()
    {
        RedeemOutcome::Redeemed {
            grant,
            refresh_token,
            ..
        } => (grant, refresh_token),
        other => panic!("expected Redeemed, got {other:?}"),
    }
}

contract_tests!(
    opening_twice_keeps_the_schema,
    replicas_starting_together_migrate_once,
    newer_schema_is_refused_untouched,
    data_survives_a_restart,
    health_is_ok_and_fails_after_close,
);

async fn opening_twice_keeps_the_schema(db: TestDb) {
    let store = db.open().await;
    store.close().await;
    let store = db.open().await;
    assert!(store.get_app("nope").await.unwrap().is_none());
    store.close().await;
}

async fn replicas_starting_together_migrate_once(db: TestDb) {
    let opens = (0..4).map(|_| Store::open(&db.url, db.base.path(), 4));
    let stores: Vec<Store> = futures_util::future::join_all(opens)
        .await
        .into_iter()
        .map(|s| s.unwrap())
        .collect();
    stores[0].create_app(&app("together", "s")).await.unwrap();
    for s in &stores {
        assert!(s.get_app_by_client_id("together").await.unwrap().is_some());
        s.close().await;
    }
}

async fn newer_schema_is_refused_untouched(db: TestDb) {
    db.open().await.close().await;
    let future = SCHEMA_VERSION + 1;
    db.exec(&format!(
        "INSERT INTO gatehouse_schema (version, name, applied_at) VALUES ({future}, 'future', 0)"
    ))
    .await;
    let before = db.dump().await;
    let err = Store::open(&db.url, db.base.path(), 4).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Incompatible, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("schema version is {future}")) && msg.contains("newer"),
        "{msg}"
    );
    if db.is_postgres() {
        let after = db.dump().await;
        assert!(after == before, "a refused store must be left untouched");
    }
}

async fn data_survives_a_restart(db: TestDb) {
    let store = db.open().await;
    let (grant, rt) = grant_for(&store, "durable").await;
    let pat = PersonalToken {
        id: new_id(),
        user: "alice".to_owned(),
        display_name: "ci".to_owned(),
        scope: "READ".to_owned(),
        token_hash: secret_hash("pat-durable"),
        create_time: t0(),
        expire_time: at(86_400),
        last_used_time: None,
    };
    store.create_pat(&pat).await.unwrap();
    store
        .revoke_access_token("jti-durable", None, at(7200), t0())
        .await
        .unwrap();
    let stored_app = store
        .get_app_by_client_id("durable")
        .await
        .unwrap()
        .unwrap();
    store.close().await;
    drop(store);

    let store = db.open().await;
    assert_eq!(
        store.get_app_by_client_id("durable").await.unwrap(),
        Some(stored_app)
    );
    assert_eq!(
        store.get_grant(&grant.id).await.unwrap(),
        Some(grant.clone())
    );
    assert_eq!(store.get_refresh_token(&rt.hash).await.unwrap(), Some(rt));
    assert_eq!(
        store
            .get_pat_by_hash(&secret_hash("pat-durable"))
            .await
            .unwrap(),
        Some(pat)
    );
    assert!(store.is_access_token_revoked("jti-durable").await.unwrap());
    assert!(store.is_grant_live(&grant.id).await.unwrap());
    store.close().await;
}

async fn health_is_ok_and_fails_after_close(db: TestDb) {
    let store = db.open().await;
    store.health().await.unwrap();
    store.close().await;
    let err = store.health().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_and_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://gatehouse:hunter2@127.0.0.1:1/gatehouse";
    let err = Store::open(url, dir.path(), 2).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn unknown_scheme_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open("mysql://x", dir.path(), 2).await.unwrap_err();
    assert!(err.to_string().contains("sqlite://"), "{err}");
}

#[tokio::test]
async fn sqlite_relative_url_creates_the_file_under_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("sqlite://data/g.db", dir.path(), 2)
        .await
        .unwrap();
    assert_eq!(store.engine_name(), "sqlite");
    assert!(dir.path().join("data/g.db").is_file());
    store.close().await;
    let abs = dir.path().join("abs.db");
    let store = Store::open(&format!("sqlite://{}", abs.display()), dir.path(), 2)
        .await
        .unwrap();
    assert!(abs.is_file());
    store.close().await;
}
