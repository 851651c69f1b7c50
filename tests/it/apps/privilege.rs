//! The management API never lets a caller hand an app more than the caller holds (SPEC §3.3,
//! issue 14 item 10): an app's `scopes` stay within the caller's own (expanded through the
//! scope hierarchy, default or `[[scopes]]`), `skipConsent: true` needs SYSTEM_ADMIN, and an
//! app that already goes beyond the caller cannot be changed by them (PATCH, rotateSecret) —
//! otherwise an ADMIN could point a SYSTEM_ADMIN app's callback at themselves — except to
//! turn it off or delete it.

use std::time::Duration;

use gatehouse::store::secret_hash;
use serde_json::json;

use crate::apps::api::{Api, app_body, assert_error, id_of, start};
use crate::helpers::harness::tokens;

async fn count_apps(api: &Api) -> usize {
    let (_, list) = api.call("GET", "/v1/oauthApps?pageSize=500", None).await;
    list["oauthApps"].as_array().unwrap().len()
}

/// The attack: an ADMIN registers a SYSTEM_ADMIN app that skips consent, to be authorized by
/// a SYSTEM_ADMIN user without any prompt. Refused whole, nothing stored.
#[tokio::test]
async fn an_admin_cannot_register_an_app_beyond_its_own_scope() {
    let api = start("").await;
    let mut body = app_body("escalate");
    body["scopes"] = json!(["READ", "SYSTEM_ADMIN"]);
    body["skipConsent"] = json!(true);
    let (status, err) = api.call("POST", "/v1/oauthApps", Some(body)).await;
    let msg = assert_error(status, &err, 403, "permission_denied");
    assert_eq!(
        msg,
        "scopes[1]: SYSTEM_ADMIN is beyond the caller's scope ADMIN; skipConsent: needs SYSTEM_ADMIN"
    );
    let violations = err["error"]["details"]["fieldViolations"]
        .as_array()
        .unwrap();
    assert_eq!(violations[0]["field"], "scopes[1]");
    assert_eq!(violations[1]["field"], "skipConsent");

    // Each rule alone.
    let mut body = app_body("scopes only");
    body["scopes"] = json!(["SYSTEM_ADMIN"]);
    let (status, err) = api.call("POST", "/v1/oauthApps", Some(body)).await;
    let msg = assert_error(status, &err, 403, "permission_denied");
    assert_eq!(
        msg,
        "scopes[0]: SYSTEM_ADMIN is beyond the caller's scope ADMIN"
    );
    let mut body = app_body("skip only");
    body["skipConsent"] = json!(true);
    let (status, err) = api.call("POST", "/v1/oauthApps", Some(body)).await;
    let msg = assert_error(status, &err, 403, "permission_denied");
    assert_eq!(msg, "skipConsent: needs SYSTEM_ADMIN");
    assert_eq!(count_apps(&api).await, 0, "nothing was stored");

    // The same through an ADMIN access token.
    let gw = &api.gw.gateway;
    let at = tokens::access_token(gw, "console", "root", "ADMIN", Duration::from_secs(600)).await;
    let mut body = app_body("via access token");
    body["scopes"] = json!(["SYSTEM_ADMIN"]);
    let (status, err) = api
        .call_as(Some(&at.token), "POST", "/v1/oauthApps", Some(body))
        .await;
    assert_error(status, &err, 403, "permission_denied");

    // Up to the caller's own scope is fine, and skipConsent: false needs nothing.
    let mut body = app_body("within");
    body["scopes"] = json!(["READ", "ADMIN"]);
    body["skipConsent"] = json!(false);
    let app = api.create(body).await;
    assert_eq!(app["scopes"], json!(["READ", "ADMIN"]));

    // A SYSTEM_ADMIN caller may do both.
    let (sys, _) = tokens::pat(gw, "root", "SYSTEM_ADMIN").await;
    let mut body = app_body("trusted");
    body["scopes"] = json!(["SYSTEM_ADMIN"]);
    body["skipConsent"] = json!(true);
    let (status, app) = api
        .call_as(Some(&sys), "POST", "/v1/oauthApps", Some(body))
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["skipConsent"], true);
}

#[tokio::test]
async fn an_admin_cannot_patch_an_app_beyond_its_own_scope_nor_change_one_that_is() {
    let api = start("").await;
    let gw = &api.gw.gateway;
    let app = api.create(app_body("mine")).await;
    let path = format!("/v1/oauthApps/{}", id_of(&app));
    for (patch, want) in [
        (
            json!({"scopes": ["SYSTEM_ADMIN"]}),
            "scopes[0]: SYSTEM_ADMIN is beyond the caller's scope ADMIN",
        ),
        (
            json!({"skipConsent": true}),
            "skipConsent: needs SYSTEM_ADMIN",
        ),
    ] {
        let (status, err) = api.call("PATCH", &path, Some(patch)).await;
        let msg = assert_error(status, &err, 403, "permission_denied");
        assert_eq!(msg, want);
    }
    let stored = gw.store.get_app(&id_of(&app)).await.unwrap().unwrap();
    assert_eq!(stored.scopes, ["READ", "WRITE"]);
    assert!(!stored.skip_consent);

    // A SYSTEM_ADMIN makes it a trusted SYSTEM_ADMIN app...
    let (sys, _) = tokens::pat(gw, "root", "SYSTEM_ADMIN").await;
    let trusted = json!({"scopes": ["SYSTEM_ADMIN"], "skipConsent": true});
    let (status, body) = api.call_as(Some(&sys), "PATCH", &path, Some(trusted)).await;
    assert_eq!(status, 200, "{body}");

    // ...which an ADMIN can no longer redirect to itself, nor take its secret.
    let evil = json!({"allowedCallbackUrls": ["https://evil.example/cb"]});
    let (status, err) = api.call("PATCH", &path, Some(evil)).await;
    let msg = assert_error(status, &err, 403, "permission_denied");
    assert_eq!(
        msg,
        "scopes[0]: SYSTEM_ADMIN is beyond the caller's scope ADMIN; skipConsent: needs SYSTEM_ADMIN"
    );
    let (status, err) = api
        .call("POST", &format!("{path}:rotateSecret"), None)
        .await;
    assert_error(status, &err, 403, "permission_denied");
    let stored = gw.store.get_app(&id_of(&app)).await.unwrap().unwrap();
    assert_eq!(
        stored.allowed_callback_urls,
        ["https://client.example.com/callback"]
    );
    let secret = app["clientSecret"].as_str().unwrap();
    assert_eq!(stored.secret_hash, Some(secret_hash(secret)), "not rotated");

    // Turning it off grants nothing, so an ADMIN may (the emergency brake); turning it back
    // on is the SYSTEM_ADMIN's call.
    let (status, body) = api
        .call("PATCH", &path, Some(json!({"active": false})))
        .await;
    assert_eq!(status, 200, "{body}");
    for on in [
        json!({"active": true}),
        json!({"active": false, "displayName": "x"}),
    ] {
        let (status, err) = api.call("PATCH", &path, Some(on)).await;
        assert_error(status, &err, 403, "permission_denied");
    }
    let (status, body) = api
        .call_as(Some(&sys), "PATCH", &path, Some(json!({"active": true})))
        .await;
    assert_eq!(status, 200, "{body}");

    // Once the SYSTEM_ADMIN brings it back within ADMIN, the ADMIN may change it again; an
    // ADMIN may delete any API-managed app (removing an app grants nothing).
    let (status, _) = api
        .call_as(
            Some(&sys),
            "PATCH",
            &path,
            Some(json!({"scopes": ["ADMIN"], "skipConsent": false})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = api
        .call("PATCH", &path, Some(json!({"displayName": "ok again"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api
        .call_as(
            Some(&sys),
            "PATCH",
            &path,
            Some(json!({"scopes": ["SYSTEM_ADMIN"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api.call("DELETE", &path, None).await;
    assert_eq!(status, 204);
}

/// With `[[scopes]]`, "beyond" follows the declared implications: an ADMIN holds what ADMIN
/// implies transitively and nothing on another branch, and the default scopes of a new app
/// are only the lowest ones the caller holds.
#[tokio::test]
async fn custom_scope_hierarchies_bound_app_scopes_by_expansion() {
    let scopes = r#"
[[scopes]]
name = "READ"
description = "Read"

[[scopes]]
name = "WRITE"
description = "Write"
implies = ["READ"]

[[scopes]]
name = "BILLING"
description = "Billing"

[[scopes]]
name = "ADMIN"
description = "Admin"
implies = ["WRITE"]

[[scopes]]
name = "SYSTEM_ADMIN"
description = "Everything"
implies = ["ADMIN", "BILLING"]
"#;
    let api = start(scopes).await;
    let mut body = app_body("branches");
    body["scopes"] = json!(["READ", "WRITE", "ADMIN", "BILLING"]);
    let (status, err) = api.call("POST", "/v1/oauthApps", Some(body)).await;
    let msg = assert_error(status, &err, 403, "permission_denied");
    assert_eq!(msg, "scopes[3]: BILLING is beyond the caller's scope ADMIN");

    let mut body = app_body("default scopes");
    body.as_object_mut().unwrap().remove("scopes");
    let app = api.create(body).await;
    assert_eq!(app["scopes"], json!(["READ"]), "BILLING is not the ADMIN's");

    let (sys, _) = tokens::pat(&api.gw.gateway, "root", "SYSTEM_ADMIN").await;
    let mut body = app_body("default scopes");
    body.as_object_mut().unwrap().remove("scopes");
    let (status, app) = api
        .call_as(Some(&sys), "POST", "/v1/oauthApps", Some(body))
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["scopes"], json!(["READ", "BILLING"]));
}
