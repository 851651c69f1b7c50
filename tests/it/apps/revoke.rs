//! Deleting or deactivating an app through the management API while requests hold its tokens
//! (SPEC §3.3, §3.4): the next request with any of its tokens is refused, and its grants and
//! refresh tokens went in the same transaction; with PostgreSQL, other replicas follow
//! as soon as they hear of it. Narrowing an app's scopes narrows the tokens it holds the same
//! way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gatehouse::store::{StoreEvent, secret_hash};
use serde_json::json;

use crate::apps::api::{long_lived_pat, start};
use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{ConfigDir, TestGateway, next_event_where, tokens};
use crate::helpers::oauth_fixture::{CONF, Fx};

/// A generous bound on a store event's arrival from another replica.
const EVENT_LIMIT: Duration = Duration::from_secs(30);

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
            loop {
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
    // The workers are at it (their requests reach the upstream) before the delete.
    crate::helpers::harness::poll_until(Duration::from_secs(30), || async { up.count() >= 9 })
        .await;
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
    let Some(db) = crate::helpers::support::TestDb::postgres("apps replicas").await else {
        return;
    };
    let up = Upstream::start().await;
    let config = format!(
        "[store]\nurl = \"{}\"\n{}\n{}",
        db.url,
        crate::helpers::harness::USERS,
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
    let (client_one, client_two) = (one.client(true), two.client(true));
    let get = |gw: &TestGateway, client: &reqwest::Client| {
        let req = client.get(gw.url("/rest/api/x")).bearer_auth(&minted.token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(&one, &client_one).await, 200);
    assert_eq!(
        get(&two, &client_two).await,
        200,
        "cached on the second replica"
    );

    let mut heard = two.gateway.store.subscribe();
    let r = client_one
        .delete(one.url(&format!("/v1/oauthApps/{}", minted.app_id)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        get(&one, &client_one).await,
        401,
        "at once on the replica that deleted it"
    );
    next_event_where(&mut heard, EVENT_LIMIT, |e| {
        *e == StoreEvent::AppRevoked {
            client_id: "shared".into(),
        }
    })
    .await;
    assert_eq!(
        get(&two, &client_two).await,
        401,
        "the next request on the other replica"
    );
    // The other replica's API sees the deletion too.
    let r = client_two
        .get(two.url(&format!("/v1/oauthApps/{}", minted.app_id)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A proxied request with `token` (GET needs READ, POST WRITE on the fixture's route): its
/// status and `WWW-Authenticate`.
async fn proxied(
    fx: &Fx,
    client: &reqwest::Client,
    method: reqwest::Method,
    token: &str,
) -> (u16, String) {
    let r = client
        .request(method, fx.gw.url("/rest/api/content"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), challenge)
}

const INSUFFICIENT_WRITE: &str =
    "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"WRITE\"";

/// PATCHes the fixture's confidential app down to READ through the management API.
async fn narrow_to_read(fx: &Fx, admin: &str) {
    let app = fx
        .gateway()
        .store
        .get_app_by_client_id(CONF)
        .await
        .unwrap()
        .unwrap();
    let r = fx
        .gw
        .client(false)
        .patch(fx.gw.url(&format!("/v1/oauthApps/{}", app.id)))
        .bearer_auth(admin)
        .json(&json!({"scopes": ["READ"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["scopes"], json!(["READ"]), "{body}");
}

/// A WRITE access token from the token endpoint, used (and cached) for a WRITE request.
async fn write_token_in_use(fx: &Fx, client: &reqwest::Client) -> String {
    let access = fx.tokens("WRITE").await.field("access_token");
    assert_eq!(
        proxied(fx, client, reqwest::Method::POST, &access).await.0,
        200
    );
    assert_eq!(fx.up.last().headers["x-auth-scopes"], "READ WRITE");
    access
}

/// SPEC §2: a grant is capped at the app's scopes. Narrowing the app (WRITE → READ) caps the
/// tokens it already holds at the next request, not when they expire.
#[tokio::test]
async fn narrowing_an_apps_scopes_caps_its_live_tokens_at_the_next_request() {
    let fx = Fx::start("").await;
    let admin = long_lived_pat(fx.gateway(), "root", "ADMIN").await;
    let client = fx.gw.client(true);
    let access = write_token_in_use(&fx, &client).await;

    narrow_to_read(&fx, &admin).await;
    assert_eq!(
        proxied(&fx, &client, reqwest::Method::POST, &access).await,
        (403, INSUFFICIENT_WRITE.to_owned())
    );
    let before = fx.up.count();
    assert_eq!(
        proxied(&fx, &client, reqwest::Method::GET, &access).await.0,
        200
    );
    assert_eq!(
        fx.up.count(),
        before + 1,
        "only the READ request went upstream"
    );
    assert_eq!(fx.up.last().headers["x-auth-scopes"], "READ");
}

/// The same with two replicas sharing PostgreSQL: the app is narrowed through replica one,
/// and replica two, which had the token cached with WRITE, caps it from the moment it hears
/// of the change.
#[tokio::test]
async fn narrowing_an_app_on_one_replica_caps_its_tokens_on_the_other() {
    let Some((one, two, _db)) = Fx::replicas("narrowing replicas").await else {
        return;
    };
    let admin = long_lived_pat(one.gateway(), "root", "ADMIN").await;
    let (client_one, client_two) = (one.gw.client(true), two.gw.client(true));
    let access = write_token_in_use(&one, &client_one).await;
    assert_eq!(
        proxied(&two, &client_two, reqwest::Method::POST, &access)
            .await
            .0,
        200,
        "cached with WRITE on replica two"
    );

    let mut heard = two.gateway().store.subscribe();
    narrow_to_read(&one, &admin).await;
    assert_eq!(
        proxied(&one, &client_one, reqwest::Method::POST, &access).await,
        (403, INSUFFICIENT_WRITE.to_owned()),
        "at once on the replica that changed it"
    );
    next_event_where(&mut heard, EVENT_LIMIT, |e| {
        *e == StoreEvent::AppUpdated {
            client_id: CONF.into(),
        }
    })
    .await;
    assert_eq!(
        proxied(&two, &client_two, reqwest::Method::POST, &access).await,
        (403, INSUFFICIENT_WRITE.to_owned()),
        "the next request on the other replica"
    );
    assert_eq!(
        proxied(&two, &client_two, reqwest::Method::GET, &access)
            .await
            .0,
        200
    );
    assert_eq!(two.up.last().headers["x-auth-scopes"], "READ");
}
