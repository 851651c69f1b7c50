//! Deleting or deactivating an app through the management API while requests hold its tokens
//! (SPEC §3.3, §3.4): the next request with any of its tokens is refused, and its grants and
//! refresh tokens went in the same transaction; with PostgreSQL, other replicas follow
//! within a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gatehouse::store::secret_hash;
use serde_json::json;

use crate::apps::start;
use crate::harness::upstream::Upstream;
use crate::harness::{ConfigDir, TestGateway, tokens};

fn bearer_route(up: &Upstream) -> String {
    format!(
        "[[routes]]\npath = \"/rest/api\"\nupstream = \"http://{}\"\nauth = \"bearer\"\nscope = \"READ\"\n",
        up.addr
    )
}

#[tokio::test]
async fn deleting_an_app_while_requests_hold_its_tokens_stops_them_at_once() {
    let up = Upstream::start().await;
    let api = start(&bearer_route(&up)).await;
    let gw = api.gw.gateway.clone();
    let minted =
        tokens::access_token(&gw, "doomed", "alice", "READ", Duration::from_secs(3600)).await;
    let client = api.gw.client(false);
    let url = api.gw.url("/rest/api/content");
    let ok = client
        .get(&url)
        .bearer_auth(&minted.token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "valid (and now cached) before the delete");

    let deleted = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, url, token, deleted) = (
            client.clone(),
            url.clone(),
            minted.token.clone(),
            deleted.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut after = Vec::new();
            for _ in 0..500 {
                let started_after = deleted.load(Ordering::SeqCst);
                let status = client
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .status();
                if started_after {
                    after.push(status.as_u16());
                    if after.len() >= 5 {
                        break;
                    }
                }
            }
            after
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _) = api
        .call("DELETE", &format!("/v1/oauthApps/{}", minted.app_id), None)
        .await;
    assert_eq!(status, 204);
    deleted.store(true, Ordering::SeqCst);
    for w in workers {
        let after = w.await.unwrap();
        assert!(!after.is_empty());
        assert!(after.iter().all(|s| *s == 401), "{after:?}");
    }
    // The grant and its refresh token went in the same transaction.
    assert!(
        gw.store
            .get_grant(&minted.grant_id)
            .await
            .unwrap()
            .is_none()
    );
    let rt = gw
        .store
        .get_refresh_token(&secret_hash(&minted.refresh))
        .await
        .unwrap();
    assert!(rt.is_none());
}

#[tokio::test]
async fn deactivating_an_app_revokes_its_grants_and_tokens() {
    let up = Upstream::start().await;
    let api = start(&bearer_route(&up)).await;
    let gw = api.gw.gateway.clone();
    let minted =
        tokens::access_token(&gw, "paused", "alice", "READ", Duration::from_secs(3600)).await;
    let client = api.gw.client(true);
    let url = api.gw.url("/rest/api/content");
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&minted.token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let path = format!("/v1/oauthApps/{}", minted.app_id);
    let (status, app) = api
        .call("PATCH", &path, Some(json!({"active": false})))
        .await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["active"], false);
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&minted.token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let grant = gw.store.get_grant(&minted.grant_id).await.unwrap().unwrap();
    assert!(grant.revoked_at.is_some());
    let rt = gw
        .store
        .get_refresh_token(&secret_hash(&minted.refresh))
        .await
        .unwrap()
        .unwrap();
    assert!(rt.revoked_at.is_some());
    // Reactivating (by a SYSTEM_ADMIN: the app has every scope) does not bring the revoked
    // grant back.
    let (sys, _) = tokens::pat(&gw, "root", "SYSTEM_ADMIN").await;
    let (status, _) = api
        .call_as(Some(&sys), "PATCH", &path, Some(json!({"active": true})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&minted.token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn deleting_an_app_on_one_replica_stops_its_tokens_on_the_other() {
    let Some(db) = crate::support::TestDb::postgres("apps replicas").await else {
        return;
    };
    let up = Upstream::start().await;
    let config = format!(
        "[store]\nurl = \"{}\"\n{}\n{}",
        db.url,
        crate::harness::USERS,
        bearer_route(&up)
    );
    let first_dir = ConfigDir::new();
    let second_dir = ConfigDir::sharing_keys_with(&first_dir);
    let one = TestGateway::start_in(first_dir, "", &config).await;
    let two = TestGateway::start_in(second_dir, "", &config).await;
    let minted = tokens::access_token(
        &one.gateway,
        "shared",
        "alice",
        "READ",
        Duration::from_secs(3600),
    )
    .await;
    let (admin, _) = tokens::pat(&one.gateway, "root", "ADMIN").await;
    let get = |gw: &TestGateway| {
        let req = gw
            .client(true)
            .get(gw.url("/rest/api/x"))
            .bearer_auth(&minted.token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(&one).await, 200);
    assert_eq!(get(&two).await, 200, "cached on the second replica");

    let r = one
        .client(false)
        .delete(one.url(&format!("/v1/oauthApps/{}", minted.app_id)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        get(&one).await,
        401,
        "at once on the replica that deleted it"
    );
    let started = std::time::Instant::now();
    while get(&two).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the other replica still accepts the token after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The other replica's API sees the deletion too.
    let r = two
        .client(false)
        .get(two.url(&format!("/v1/oauthApps/{}", minted.app_id)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
