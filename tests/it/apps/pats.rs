//! `/v1/personalTokens` (the caller's own PATs, any authenticated user) and `[[apps]]` from
//! the config (SPEC §3.3): created or updated at start, listed with `managedBy: config`,
//! refused changes through the API (409), validated like API input, never taking over an
//! API-managed client id.

use std::time::Duration;

use gatehouse::App;
use gatehouse::config::Config;
use gatehouse::store::{ManagedBy, Store, secret_hash};
use serde_json::{Value, json};

use crate::apps::api::{assert_error, id_of, pat_valid_for, start};
use crate::helpers::harness::{ConfigDir, TestGateway, USERS, tokens};

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn users_manage_their_own_personal_tokens() {
    let api = start("").await;
    let gw = &api.gw.gateway;
    // A PAT made with a PAT never outlives it: alice's lives 100 days, so 60 and 90 fit.
    let (alice, alice_pat_id) = pat_valid_for(gw, "alice", "WRITE", 100 * DAY).await;
    let pats = "/v1/personalTokens";
    let body = json!({"displayName": "ci", "scope": "READ", "ttl": "60d"});
    let (status, created) = api.call_as(Some(&alice), "POST", pats, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("gh_pat_"));
    assert_eq!(created["displayName"], "ci");
    assert_eq!(created["scope"], "READ");
    let id = created["name"]
        .as_str()
        .unwrap()
        .strip_prefix("personalTokens/")
        .unwrap()
        .to_owned();
    let stored = gw
        .store
        .get_pat_by_hash(&secret_hash(&token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.id.as_str(), stored.user.as_str()),
        (id.as_str(), "alice")
    );
    assert_eq!(
        stored
            .expire_time
            .duration_since(stored.create_time)
            .unwrap(),
        60 * DAY
    );

    // The new token authenticates; listing never shows a token again.
    let (status, list) = api.call_as(Some(&token), "GET", pats, None).await;
    assert_eq!(status, 200, "{list}");
    let items = list["personalTokens"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            format!("personalTokens/{alice_pat_id}"),
            format!("personalTokens/{id}")
        ]
    );
    assert!(items.iter().all(|p| p.get("token").is_none()));
    assert!(!list.to_string().contains(&token));

    // Scope: at most the caller's, written as its highest members.
    let (status, body) = api
        .call_as(
            Some(&alice),
            "POST",
            pats,
            Some(json!({"displayName": "x", "scope": "ADMIN"})),
        )
        .await;
    let msg = assert_error(status, &body, 403, "permission_denied");
    assert_eq!(msg, "scope: ADMIN is more than the caller holds (WRITE)");
    let (status, both) = api
        .call_as(
            Some(&alice),
            "POST",
            pats,
            Some(json!({"displayName": "x", "scope": "READ WRITE"})),
        )
        .await;
    assert_eq!((status, &both["scope"]), (201, &json!("WRITE")));
    let (status, body) = api
        .call_as(
            Some(&token),
            "POST",
            pats,
            Some(json!({"displayName": "y", "scope": "WRITE"})),
        )
        .await;
    assert_error(status, &body, 403, "permission_denied");

    // An app holding alice's access token cannot mint itself a long-lived PAT.
    let at = tokens::access_token(gw, "some-app", "alice", "WRITE", Duration::from_secs(600)).await;
    let body = json!({"displayName": "sneaky", "scope": "READ"});
    let (status, body) = api.call_as(Some(&at.token), "POST", pats, Some(body)).await;
    let msg = assert_error(status, &body, 403, "permission_denied");
    assert!(msg.contains("with a personal access token"), "{msg}");
    let (status, _) = api.call_as(Some(&at.token), "GET", pats, None).await;
    assert_eq!(status, 200, "listing is fine");

    // Nobody sees or deletes another user's tokens.
    let (_, roots) = api.call("GET", pats, None).await;
    assert!(!roots.to_string().contains(&id));
    let (status, body) = api.call("DELETE", &format!("{pats}/{id}"), None).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = api
        .call_as(Some(&alice), "DELETE", &format!("{pats}/{id}"), None)
        .await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = api.call_as(Some(&token), "GET", pats, None).await;
    assert_error(status, &body, 401, "unauthenticated");
    let (status, body) = api.call_as(None, "GET", pats, None).await;
    assert_error(status, &body, 401, "unauthenticated");

    // Expired tokens drop out of the list.
    let body = json!({"displayName": "long", "scope": "READ", "ttl": "90d"});
    let (_, long) = api.call_as(Some(&alice), "POST", pats, Some(body)).await;
    let long = long["token"].as_str().unwrap().to_owned();
    gw.clock.advance(31 * DAY);
    let (status, list) = api.call_as(Some(&long), "GET", pats, None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["personalTokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["test admin", "long"],
        "the 30-day token (the default ttl) is gone"
    );
}

/// SPEC §3.3: a PAT made with a PAT cannot outlive it. An explicit `ttl` beyond the caller's
/// expiry is refused naming `ttl`; the default ttl is cut to the caller's expiry.
#[tokio::test]
async fn a_pat_cannot_mint_a_pat_that_outlives_it() {
    let api = start("").await;
    let gw = &api.gw.gateway;
    let (day, day_id) = pat_valid_for(gw, "alice", "WRITE", DAY).await;
    let caller = gw
        .store
        .list_pats("alice")
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.id == day_id)
        .unwrap();
    let expires = gatehouse::apps::model::rfc3339(caller.expire_time);
    let pats = "/v1/personalTokens";
    for ttl in ["366d", "30d", "25h"] {
        let body = json!({"displayName": "outlives", "scope": "READ", "ttl": ttl});
        let (status, body) = api.call_as(Some(&day), "POST", pats, Some(body)).await;
        let msg = assert_error(status, &body, 400, "invalid_argument");
        assert_eq!(
            msg,
            format!("ttl: must not outlive the credential that creates it (expires {expires})"),
            "{ttl}"
        );
        assert_eq!(
            body["error"]["details"]["fieldViolations"][0]["field"],
            "ttl"
        );
    }
    let (_, list) = api.call_as(Some(&day), "GET", pats, None).await;
    assert_eq!(
        list["personalTokens"].as_array().unwrap().len(),
        1,
        "{list}"
    );

    // Up to the caller's expiry is fine; without ttl the 30-day default is cut to it.
    let body = json!({"displayName": "hour", "scope": "READ", "ttl": "1h"});
    let (status, hour) = api.call_as(Some(&day), "POST", pats, Some(body)).await;
    assert_eq!(status, 201, "{hour}");
    let body = json!({"displayName": "default", "scope": "READ"});
    let (status, capped) = api.call_as(Some(&day), "POST", pats, Some(body)).await;
    assert_eq!(status, 201, "{capped}");
    assert_eq!(capped["expireTime"], expires.as_str());

    // ...and the child cannot outlive it either: no chain stretches the first expiry.
    let child = capped["token"].as_str().unwrap();
    let body = json!({"displayName": "grandchild", "scope": "READ", "ttl": "2d"});
    let (status, body) = api.call_as(Some(child), "POST", pats, Some(body)).await;
    assert_error(status, &body, 400, "invalid_argument");
    gw.clock.advance(DAY - Duration::from_secs(60));
    let body = json!({"displayName": "last minute", "scope": "READ"});
    let (status, last) = api.call_as(Some(child), "POST", pats, Some(body)).await;
    assert_eq!(status, 201, "{last}");
    assert_eq!(last["expireTime"], expires.as_str());
}

fn config_apps(reporting_name: &str, with_spa: bool) -> String {
    let mut s = format!(
        r#"
[[apps]]
client_id = "reporting"
client_secret = "reporting-secret-0123456789"
display_name = "{reporting_name}"
allowed_callback_urls = ["https://reports.example.com/callback"]
scopes = ["READ"]
"#
    );
    if with_spa {
        s.push_str(
            r#"
[[apps]]
client_id = "spa"
client_type = "public"
display_name = "Single page"
allowed_callback_urls = ["http://localhost:3000/cb"]
allowed_web_origins = ["http://localhost:3000"]
scopes = ["READ", "WRITE"]
skip_consent = true
"#,
        );
    }
    s
}

#[tokio::test]
async fn config_apps_are_listed_read_only_and_follow_the_config() {
    let db_dir = tempfile::tempdir().unwrap();
    let store = format!(
        "[store]\nurl = \"sqlite://{}/g.db\"\n",
        db_dir.path().display()
    );
    let extra = format!("{store}\n{}", config_apps("Reporting", true));
    let gw = TestGateway::start("", &format!("{USERS}\n{extra}")).await;
    let api = crate::apps::api::Api {
        admin: crate::apps::api::long_lived_pat(&gw.gateway, "root", "ADMIN").await,
        gw,
        seen: Default::default(),
    };
    let (status, list) = api.call("GET", "/v1/oauthApps", None).await;
    assert_eq!(status, 200);
    let apps = list["oauthApps"].as_array().unwrap();
    assert_eq!(apps.len(), 2, "{list}");
    let reporting = apps
        .iter()
        .find(|a| a["clientId"] == "reporting")
        .unwrap()
        .clone();
    let spa = apps.iter().find(|a| a["clientId"] == "spa").unwrap();
    for a in [&reporting, spa] {
        assert_eq!(a["managedBy"], "config");
        assert_eq!(a["createdBy"], "config");
        assert!(a.get("clientSecret").is_none());
    }
    assert_eq!(spa["clientType"], "public");
    assert_eq!(spa["skipConsent"], true);
    let stored = api
        .gw
        .gateway
        .store
        .get_app_by_client_id("reporting")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.managed_by, ManagedBy::Config);
    let now = api.gw.gateway.clock.now();
    assert!(stored.secret_matches(&secret_hash("reporting-secret-0123456789"), now));

    let path = format!("/v1/oauthApps/{}", id_of(&reporting));
    let (status, body) = api
        .call("PATCH", &path, Some(json!({"displayName": "x"})))
        .await;
    let msg = assert_error(status, &body, 409, "conflict");
    assert!(msg.contains("managed by the config file"), "{msg}");
    let (status, body) = api.call("DELETE", &path, None).await;
    assert_error(status, &body, 409, "conflict");
    let (status, body) = api
        .call("POST", &format!("{path}:rotateSecret"), None)
        .await;
    assert_error(status, &body, 409, "conflict");
    api.gw.shutdown().await;

    // Restart with a changed config: same app updated in place, the removed one deleted.
    let extra = format!("{store}\n{}", config_apps("Reporting v2", false));
    let gw = TestGateway::start("", &format!("{USERS}\n{extra}")).await;
    let apps = gw.gateway.store.list_apps(None, 10).await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].id, id_of(&reporting), "the id survives restarts");
    assert_eq!(apps[0].display_name, "Reporting v2");
    assert_eq!(apps[0].managed_by, ManagedBy::Config);
}

async fn build_error(extra: &str) -> String {
    let dir = ConfigDir::new();
    let path = dir.write("", &format!("{USERS}\n{extra}"));
    let config = Config::load(&path).unwrap();
    match App::build(config).await {
        Ok(_) => panic!("the gateway started"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn bad_or_colliding_config_apps_stop_the_start() {
    let mut bad = config_apps("Reporting", false);
    bad = bad.replace(
        "https://reports.example.com/callback",
        "http://reports.example.com/cb#x",
    );
    let err = build_error(&bad).await;
    assert_eq!(
        err,
        "apps[0].allowed_callback_urls[0]: must not contain a fragment"
    );
    let bad = config_apps("Reporting", false).replace(
        "https://reports.example.com/callback",
        "http://reports.example.com/cb",
    );
    let err = build_error(&bad).await;
    assert_eq!(
        err,
        "apps[0].allowed_callback_urls[0]: must use https (http only for loopback hosts)"
    );

    // An API-managed app owns its client id: the config cannot take it over.
    let db_dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/g.db", db_dir.path().display());
    let store = Store::open(&url, db_dir.path(), 2).await.unwrap();
    store
        .create_app(&crate::store::lifecycle::app(
            "reporting",
            "api-owned-secret",
        ))
        .await
        .unwrap();
    store.close().await;
    let err = build_error(&format!(
        "[store]\nurl = \"{url}\"\n{}",
        config_apps("R", false)
    ))
    .await;
    assert!(
        err.starts_with("apps[0].client_id: 'reporting' belongs to an app managed by the API"),
        "{err}"
    );
    let store = Store::open(&url, db_dir.path(), 2).await.unwrap();
    let kept = store
        .get_app_by_client_id("reporting")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.managed_by, ManagedBy::Api);
    assert!(kept.secret_matches(
        &secret_hash("api-owned-secret"),
        std::time::SystemTime::now()
    ));
}
