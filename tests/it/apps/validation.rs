//! Every validation rule of the management API (SPEC §3.3, RFC 6749 §3.1.2, RFC 8252 §7.3),
//! each with a bad value (400 `invalid_argument`, the message naming the field and the rule,
//! nothing stored) and a good one (accepted), over real HTTPS.

use std::time::Duration;

use serde_json::{Value, json};

use crate::apps::api::{Api, app_body, assert_error, id_of, long_lived_pat, pat_valid_for, start};

/// (what is set, bad value, expected message prefix, good value). `Value::Null` as the bad
/// value removes the field.
fn create_cases() -> Vec<(&'static str, Value, String, Value)> {
    let urls = |n: usize| -> Value {
        (0..n)
            .map(|i| format!("https://client.example.com/cb{i}"))
            .collect()
    };
    let labels = |n: usize| -> Value {
        (0..n)
            .map(|i| (format!("k{i}"), json!("v")))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    vec![
        (
            "displayName",
            Value::Null,
            "displayName: is required".into(),
            json!("App"),
        ),
        (
            "displayName",
            json!(""),
            "displayName: must not be empty".into(),
            json!("A"),
        ),
        (
            "displayName",
            json!("   "),
            "displayName: must not be empty".into(),
            json!(" A "),
        ),
        (
            "displayName",
            json!("x".repeat(101)),
            "displayName: must be at most 100 characters".into(),
            json!("é".repeat(100)),
        ),
        (
            "displayName",
            json!("bell\u{7}"),
            "displayName: must not contain control characters".into(),
            json!("Bell"),
        ),
        (
            "displayName",
            json!(5),
            "displayName: must be a string".into(),
            json!("5"),
        ),
        (
            "description",
            json!("d".repeat(1001)),
            "description: must be at most 1000 characters".into(),
            json!(format!("{}\nline two", "d".repeat(990))),
        ),
        (
            "logoUri",
            json!("http://cdn.example.com/logo.png"),
            "logoUri: must use https (http only for loopback hosts)".into(),
            json!("https://cdn.example.com/logo.png"),
        ),
        (
            "logoUri",
            json!("logo.png"),
            "logoUri: must be an absolute URL starting with https://".into(),
            json!(""),
        ),
        (
            "allowedCallbackUrls",
            Value::Null,
            "allowedCallbackUrls: at least one URL is required".into(),
            json!(["https://client.example.com/callback"]),
        ),
        (
            "allowedCallbackUrls",
            json!([]),
            "allowedCallbackUrls: at least one URL is required".into(),
            json!(["https://client.example.com/callback"]),
        ),
        (
            "allowedCallbackUrls",
            json!(["http://client.example.com/callback"]),
            "allowedCallbackUrls[0]: must use https (http only for loopback hosts)".into(),
            json!([
                "http://127.0.0.1:8400/callback",
                "http://[::1]/cb",
                "http://localhost/cb"
            ]),
        ),
        (
            "allowedCallbackUrls",
            json!(["http://127.0.0.2/callback"]),
            "allowedCallbackUrls[0]: must use https".into(),
            json!(["http://127.0.0.1/callback"]),
        ),
        (
            "allowedCallbackUrls",
            json!(["https://client.example.com/cb#frag"]),
            "allowedCallbackUrls[0]: must not contain a fragment".into(),
            json!(["https://client.example.com/cb?tenant=1"]),
        ),
        (
            "allowedCallbackUrls",
            json!(["https://client.example.com/cb", "https://*.example.com/cb"]),
            "allowedCallbackUrls[1]: must not contain wildcards".into(),
            json!([
                "https://client.example.com/cb",
                "https://other.example.com/cb"
            ]),
        ),
        (
            "allowedCallbackUrls",
            json!([
                "https://client.example.com/cb",
                "https://client.example.com/cb"
            ]),
            "allowedCallbackUrls[1]: duplicate URL".into(),
            json!([
                "https://client.example.com/cb",
                "https://client.example.com/Cb"
            ]),
        ),
        (
            "allowedCallbackUrls",
            json!(["com.example.app:/callback"]),
            "allowedCallbackUrls[0]: must be an absolute URL starting with https://".into(),
            json!(["https://client.example.com/cb"]),
        ),
        (
            "allowedCallbackUrls",
            json!(["https://user:pw@client.example.com/cb"]),
            "allowedCallbackUrls[0]: must not contain user information".into(),
            json!(["https://client.example.com/cb"]),
        ),
        (
            "allowedCallbackUrls",
            urls(33),
            "allowedCallbackUrls: at most 32 URLs".into(),
            urls(32),
        ),
        (
            "allowedCallbackUrls",
            json!(["https://client.example.com/cb", 7]),
            "allowedCallbackUrls[1]: must be a string".into(),
            json!(["https://client.example.com/cb"]),
        ),
        (
            "allowedCallbackUrls",
            json!("https://client.example.com/cb"),
            "allowedCallbackUrls: must be an array of strings".into(),
            json!(["https://client.example.com/cb"]),
        ),
        (
            "allowedLogoutUrls",
            json!(["http://client.example.com/"]),
            "allowedLogoutUrls[0]: must use https (http only for loopback hosts)".into(),
            json!(["https://client.example.com/", "http://localhost:3000/"]),
        ),
        (
            "allowedLogoutUrls",
            json!(["https://client.example.com/#bye"]),
            "allowedLogoutUrls[0]: must not contain a fragment".into(),
            json!([]),
        ),
        (
            "allowedWebOrigins",
            json!(["https://client.example.com/"]),
            "allowedWebOrigins[0]: must be a bare origin".into(),
            json!(["https://client.example.com"]),
        ),
        (
            "allowedWebOrigins",
            json!(["https://client.example.com/app"]),
            "allowedWebOrigins[0]: must be a bare origin".into(),
            json!(["https://client.example.com:8443"]),
        ),
        (
            "allowedWebOrigins",
            json!(["http://client.example.com"]),
            "allowedWebOrigins[0]: must use https (http only for loopback hosts)".into(),
            json!(["http://localhost:3000"]),
        ),
        (
            "scopes",
            json!(["READ", "DELETE_EVERYTHING"]),
            "scopes[1]: unknown scope 'DELETE_EVERYTHING' (known: READ WRITE ADMIN SYSTEM_ADMIN)"
                .into(),
            json!(["READ", "ADMIN"]),
        ),
        (
            "scopes",
            json!(["READ", "READ"]),
            "scopes[1]: duplicate scope".into(),
            json!(["READ"]),
        ),
        (
            "scopes",
            json!(["read"]),
            "scopes[0]: unknown scope 'read'".into(),
            json!([]),
        ),
        (
            "labels",
            json!({"Team": "docs"}),
            "labels.Team: label keys must be 1-63 characters".into(),
            json!({"team": "docs", "cost-center_1.a": ""}),
        ),
        (
            "labels",
            json!({"k".repeat(64): "v"}),
            "labels.".to_owned() + &"k".repeat(64) + ": label keys must be",
            json!({"k".repeat(63): "v"}),
        ),
        (
            "labels",
            json!({"team": "v".repeat(257)}),
            "labels.team: label values must be at most 256 characters".into(),
            json!({"team": "v".repeat(256)}),
        ),
        (
            "labels",
            labels(65),
            "labels: at most 64 labels".into(),
            labels(64),
        ),
        (
            "labels",
            json!({"team": 1}),
            "labels.team: must be a string".into(),
            json!({"team": "1"}),
        ),
        (
            "clientType",
            json!("spa"),
            "clientType: must be \"confidential\" or \"public\"".into(),
            json!("public"),
        ),
        (
            "skipConsent",
            json!("yes"),
            "skipConsent: must be true or false".into(),
            json!(true),
        ),
        (
            "active",
            json!(1),
            "active: must be true or false".into(),
            json!(false),
        ),
        (
            "colour",
            json!("red"),
            "colour: unknown field".into(),
            Value::Null,
        ),
        (
            "clientId",
            json!("mine"),
            "clientId: output only: cannot be set".into(),
            Value::Null,
        ),
        (
            "clientSecret",
            json!("a-secret-i-chose"),
            "clientSecret: output only: cannot be set".into(),
            Value::Null,
        ),
        (
            "createTime",
            json!("2026-01-01T00:00:00Z"),
            "createTime: output only".into(),
            Value::Null,
        ),
    ]
}

fn with(field: &str, value: &Value) -> Value {
    let mut body = app_body("Validated");
    let map = body.as_object_mut().unwrap();
    if value.is_null() {
        map.remove(field);
    } else {
        map.insert(field.to_owned(), value.clone());
    }
    body
}

async fn count_apps(api: &Api) -> usize {
    let (_, list) = api.call("GET", "/v1/oauthApps?pageSize=500", None).await;
    list["oauthApps"].as_array().unwrap().len()
}

/// An [`Api`] whose caller is a SYSTEM_ADMIN, who may give an app any scope and set
/// `skipConsent`, so every good value of the table is accepted; the ADMIN's PAT is returned.
async fn start_as_system_admin() -> (Api, String) {
    let mut api = start("").await;
    let admin = std::mem::replace(
        &mut api.admin,
        long_lived_pat(&api.gw.gateway, "root", "SYSTEM_ADMIN").await,
    );
    (api, admin)
}

#[tokio::test]
async fn every_create_rule_refuses_a_bad_value_and_accepts_a_good_one() {
    let (api, admin) = start_as_system_admin().await;
    let mut created = 0;
    for (field, bad, want, good) in create_cases() {
        let (status, body) = api
            .call("POST", "/v1/oauthApps", Some(with(field, &bad)))
            .await;
        let msg = assert_error(status, &body, 400, "invalid_argument");
        assert!(
            msg.starts_with(&want),
            "{field}: got {msg:?}, want {want:?}"
        );
        let violations = body["error"]["details"]["fieldViolations"]
            .as_array()
            .unwrap();
        assert!(
            violations[0]["field"].as_str().unwrap().starts_with(field),
            "{body}"
        );

        let (status, app) = api
            .call("POST", "/v1/oauthApps", Some(with(field, &good)))
            .await;
        assert_eq!(status, 201, "{field} = {good}: {app}");
        created += 1;
        if !good.is_null() && !["clientType"].contains(&field) {
            assert_eq!(app[field], good, "{field} is stored as given");
        }
    }
    // skipConsent is a SYSTEM_ADMIN's choice: an ADMIN asking for it is refused (403).
    let body = with("skipConsent", &json!(true));
    let (status, body) = api
        .call_as(Some(&admin), "POST", "/v1/oauthApps", Some(body))
        .await;
    let msg = assert_error(status, &body, 403, "permission_denied");
    assert_eq!(msg, "skipConsent: needs SYSTEM_ADMIN");
    assert_eq!(
        body["error"]["details"]["fieldViolations"][0]["field"],
        "skipConsent"
    );
    assert_eq!(
        count_apps(&api).await,
        created,
        "no refused request stored anything"
    );
}

#[tokio::test]
async fn every_problem_of_a_body_is_reported_at_once() {
    let api = start("").await;
    let body = json!({
        "displayName": "",
        "allowedCallbackUrls": ["http://evil.example/cb", "https://ok.example/cb#x"],
        "scopes": ["NOPE"],
        "extra": true,
    });
    let (status, body) = api.call("POST", "/v1/oauthApps", Some(body)).await;
    let msg = assert_error(status, &body, 400, "invalid_argument");
    assert_eq!(
        msg,
        "extra: unknown field; displayName: must not be empty; \
         allowedCallbackUrls[0]: must use https (http only for loopback hosts); \
         allowedCallbackUrls[1]: must not contain a fragment; \
         scopes[0]: unknown scope 'NOPE' (known: READ WRITE ADMIN SYSTEM_ADMIN)"
    );
    assert_eq!(
        body["error"]["details"]["fieldViolations"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let (status, body) = api.call("POST", "/v1/oauthApps", Some(json!([1, 2]))).await;
    let msg = assert_error(status, &body, 400, "invalid_argument");
    assert_eq!(msg, "body: must be a JSON object");
}

#[tokio::test]
async fn patch_applies_the_same_rules_and_keeps_the_client_type() {
    let (api, admin) = start_as_system_admin().await;
    let app = api.create(app_body("patched")).await;
    let path = format!("/v1/oauthApps/{}", id_of(&app));
    for (field, bad, want, good) in create_cases() {
        if bad.is_null() || good.is_null() || field == "clientType" {
            continue;
        }
        let (status, body) = api.call("PATCH", &path, Some(json!({ field: bad }))).await;
        let msg = assert_error(status, &body, 400, "invalid_argument");
        assert!(msg.starts_with(&want), "{field}: {msg}");
        let (status, body) = api.call("PATCH", &path, Some(json!({ field: good }))).await;
        assert_eq!(status, 200, "{field}: {body}");
    }
    let (status, body) = api
        .call("PATCH", &path, Some(json!({"clientType": "public"})))
        .await;
    let msg = assert_error(status, &body, 400, "invalid_argument");
    assert_eq!(
        msg,
        "clientType: cannot be changed after the app is created"
    );
    let (status, _) = api
        .call("PATCH", &path, Some(json!({"clientType": "confidential"})))
        .await;
    assert_eq!(status, 200, "naming the current type is no change");
    let (status, body) = api
        .call("PATCH", &path, Some(json!({"name": "oauthApps/x"})))
        .await;
    let msg = assert_error(status, &body, 400, "invalid_argument");
    assert_eq!(msg, "name: output only: cannot be set");
    let other = api.create(app_body("other")).await;
    let other = format!("/v1/oauthApps/{}", id_of(&other));
    let skip = Some(json!({"skipConsent": true}));
    let (status, body) = api.call_as(Some(&admin), "PATCH", &other, skip).await;
    let msg = assert_error(status, &body, 403, "permission_denied");
    assert_eq!(msg, "skipConsent: needs SYSTEM_ADMIN");
}

#[tokio::test]
async fn insecure_redirect_uris_are_a_development_switch() {
    let api = start("allow_insecure_redirect_uris = true\n").await;
    let mut body = app_body("dev");
    body["allowedCallbackUrls"] = json!(["http://dev.example.com/callback"]);
    body["allowedWebOrigins"] = json!(["http://dev.example.com"]);
    let app = api.create(body).await;
    assert_eq!(
        app["allowedCallbackUrls"][0],
        "http://dev.example.com/callback"
    );
    // The switch relaxes the scheme only: fragments and wildcards stay forbidden.
    let mut body = app_body("dev");
    body["allowedCallbackUrls"] = json!(["http://dev.example.com/cb#x"]);
    let (status, body) = api.call("POST", "/v1/oauthApps", Some(body)).await;
    assert_error(status, &body, 400, "invalid_argument");
}

#[tokio::test]
async fn grace_periods_and_pat_fields_are_validated() {
    let api = start("").await;
    let app = api.create(app_body("r")).await;
    let rotate = format!("/v1/oauthApps/{}:rotateSecret", id_of(&app));
    for (bad, want) in [
        (
            json!({"gracePeriod": "soon"}),
            "gracePeriod: must be a duration such as \"1h\"",
        ),
        (
            json!({"gracePeriod": "31d"}),
            "gracePeriod: must be at most 30d",
        ),
        (
            json!({"gracePeriod": 3600}),
            "gracePeriod: must be a string",
        ),
        (json!({"grace": "1h"}), "grace: unknown field"),
    ] {
        let (status, body) = api.call("POST", &rotate, Some(bad)).await;
        let msg = assert_error(status, &body, 400, "invalid_argument");
        assert!(msg.starts_with(want), "{msg}");
    }
    for good in ["30d", "90s", "0s"] {
        let (status, body) = api
            .call("POST", &rotate, Some(json!({"gracePeriod": good})))
            .await;
        assert_eq!(status, 200, "{good}: {body}");
    }

    // alice's own PAT outlives every ttl below, so only the rule under test can refuse one.
    let long = Duration::from_secs(400 * 86_400);
    let (alice, _) = pat_valid_for(&api.gw.gateway, "alice", "WRITE", long).await;
    let pats = "/v1/personalTokens";
    for (bad, want) in [
        (json!({"scope": "READ"}), "displayName: is required"),
        (json!({"displayName": "ci"}), "scope: is required"),
        (
            json!({"displayName": "", "scope": "READ"}),
            "displayName: must not be empty",
        ),
        (
            json!({"displayName": "ci", "scope": "NOPE"}),
            "scope: unknown scope \"NOPE\"",
        ),
        (
            json!({"displayName": "ci", "scope": "READ", "ttl": "forever"}),
            "ttl: must be a duration",
        ),
        (
            json!({"displayName": "ci", "scope": "READ", "ttl": "400d"}),
            "ttl: must be at most 366d",
        ),
        (
            json!({"displayName": "ci", "scope": "READ", "ttl": "0s"}),
            "ttl: must be longer than 0s",
        ),
        (
            json!({"displayName": "ci", "scope": "READ", "token": "x"}),
            "token: output only",
        ),
    ] {
        let (status, body) = api.call_as(Some(&alice), "POST", pats, Some(bad)).await;
        let msg = assert_error(status, &body, 400, "invalid_argument");
        assert!(msg.starts_with(want), "{msg}");
    }
    let good = json!({"displayName": "ci", "scope": "READ", "ttl": "366d"});
    let (status, body) = api.call_as(Some(&alice), "POST", pats, Some(good)).await;
    assert_eq!(status, 201, "{body}");
}
