//! The management API over real HTTPS (SPEC §3.3): the resource life cycle, authentication
//! (401/403 in the SPEC's error shape), every error code, pagination while apps are created,
//! and secret rotation with and without a grace period. Shared helpers for the other `apps`
//! modules live here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse::store::secret_hash;
use serde_json::{Value, json};

use crate::helpers::harness::tokens;
use crate::helpers::harness::{TestGateway, USERS};

/// One response as the API sent it, kept for the OpenAPI check.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Value,
}

/// A gateway with the two test users and an ADMIN PAT for `root`.
pub struct Api {
    pub gw: TestGateway,
    pub admin: String,
    pub seen: Arc<Mutex<Vec<Exchange>>>,
}

/// `extra` comes right after the harness's `[oauth]` table, so bare keys at its top are
/// `oauth.*` settings.
pub async fn start(extra: &str) -> Api {
    let gw = TestGateway::start("", &format!("{extra}\n{USERS}")).await;
    let admin = long_lived_pat(&gw.gateway, "root", "ADMIN").await;
    Api {
        gw,
        admin,
        seen: Arc::default(),
    }
}

/// A PAT valid for a year, so tests that move the clock by hours keep their admin.
pub async fn long_lived_pat(gw: &gatehouse::server::Gateway, user: &str, scope: &str) -> String {
    pat_valid_for(gw, user, scope, Duration::from_secs(365 * 86_400))
        .await
        .0
}

/// A PAT valid for `ttl` from now, stored as `gatehouse token create` would; (token, id).
pub async fn pat_valid_for(
    gw: &gatehouse::server::Gateway,
    user: &str,
    scope: &str,
    ttl: Duration,
) -> (String, String) {
    let token = gatehouse::auth::secret::new_personal_access_token()
        .unwrap()
        .expose()
        .to_owned();
    let now = gw.clock.now();
    let pat = gatehouse::store::PersonalToken {
        id: gatehouse::auth::secret::new_id().unwrap(),
        user: user.into(),
        display_name: "test admin".into(),
        scope: scope.into(),
        token_hash: secret_hash(&token),
        create_time: now,
        expire_time: now + ttl,
        last_used_time: None,
    };
    gw.store.create_pat(&pat).await.unwrap();
    (token, pat.id)
}

impl Api {
    /// A request as `root` (ADMIN) with a JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(Some(&self.admin.clone()), method, path, body)
            .await
    }

    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.request(method, path);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(method, path, req).await
    }

    pub fn request(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        self.gw.client(false).request(method, self.gw.url(path))
    }

    /// Sends `req` and records the exchange.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = r.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let path = path.split('?').next().unwrap().to_owned();
        self.seen.lock().unwrap().push(Exchange {
            method: method.to_owned(),
            path,
            status,
            content_type,
            body: body.clone(),
        });
        (status, body)
    }

    /// Creates an app and returns the response (asserting 201).
    pub async fn create(&self, body: Value) -> Value {
        let (status, v) = self.call("POST", "/v1/oauthApps", Some(body)).await;
        assert_eq!(status, 201, "{v}");
        v
    }
}

pub fn app_body(name: &str) -> Value {
    json!({
        "displayName": name,
        "description": "Test app",
        "allowedCallbackUrls": ["https://client.example.com/callback"],
        "scopes": ["READ", "WRITE"],
    })
}

pub fn id_of(app: &Value) -> String {
    app["name"]
        .as_str()
        .unwrap()
        .strip_prefix("oauthApps/")
        .unwrap()
        .to_owned()
}

/// Asserts the SPEC's error shape with `code`, returning the message.
pub fn assert_error(status: u16, body: &Value, want_status: u16, code: &str) -> String {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["details"].is_object(), "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

fn is_rfc3339_micros_utc(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 27
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[26] == b'Z'
        && s.bytes()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 26].contains(&i) || c.is_ascii_digit())
}

#[tokio::test]
async fn an_app_is_created_read_listed_patched_and_deleted() {
    let api = start("").await;
    let created = api.create(app_body("My OAuth App")).await;
    let id = id_of(&created);
    assert_eq!(id.len(), 10);
    let secret = created["clientSecret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 43, "256 bits of base64url");
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(created["clientId"].as_str().unwrap().len(), 24);
    assert_eq!(created["clientType"], "confidential");
    assert_eq!(created["createdBy"], "users/root");
    assert_eq!(created["updatedBy"], "users/root");
    assert_eq!(created["managedBy"], "api");
    assert_eq!(created["active"], true);
    assert_eq!(created["skipConsent"], false);
    assert_eq!(created["labels"], json!({}));
    assert_eq!(created["scopes"], json!(["READ", "WRITE"]));
    for t in ["createTime", "updateTime"] {
        assert!(
            is_rfc3339_micros_utc(created[t].as_str().unwrap()),
            "{created}"
        );
    }

    let (status, got) = api.call("GET", &format!("/v1/oauthApps/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(got.get("clientSecret").is_none());
    let mut expected = created.clone();
    expected.as_object_mut().unwrap().remove("clientSecret");
    assert_eq!(got, expected);

    // Another admin changes it: updatedBy follows the caller, createdBy stays.
    let (other, _) = tokens::pat(&api.gw.gateway, "root", "SYSTEM_ADMIN").await;
    api.gw.gateway.clock.advance(Duration::from_secs(5));
    let (status, patched) = api
        .call_as(
            Some(&other),
            "PATCH",
            &format!("/v1/oauthApps/{id}"),
            Some(
                json!({"displayName": "Renamed", "labels": {"team": "docs"}, "skipConsent": true}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["displayName"], "Renamed");
    assert_eq!(
        patched["description"], "Test app",
        "absent fields are unchanged"
    );
    assert_eq!(patched["labels"], json!({"team": "docs"}));
    assert_eq!(patched["skipConsent"], true);
    assert_eq!(patched["createTime"], created["createTime"]);
    assert!(patched["updateTime"].as_str() > created["updateTime"].as_str());
    assert!(patched.get("clientSecret").is_none());

    let r = api
        .request("GET", "/v1/oauthApps")
        .bearer_auth(&api.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers().contains_key("x-request-id"));
    let (status, list) = api.call("GET", "/v1/oauthApps", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["oauthApps"].as_array().unwrap().len(), 1);
    assert_eq!(list["oauthApps"][0], patched);
    assert_eq!(list["nextPageToken"], "");

    let (status, body) = api
        .call("DELETE", &format!("/v1/oauthApps/{id}"), None)
        .await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = api.call("GET", &format!("/v1/oauthApps/{id}"), None).await;
    let msg = assert_error(status, &body, 404, "not_found");
    assert_eq!(msg, format!("oauth app 'oauthApps/{id}' not found"));
    let (status, body) = api
        .call("DELETE", &format!("/v1/oauthApps/{id}"), None)
        .await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test]
async fn public_apps_get_no_secret_and_cannot_rotate_one() {
    let api = start("").await;
    let mut body = app_body("SPA");
    body["clientType"] = json!("public");
    body["allowedWebOrigins"] = json!(["https://client.example.com"]);
    let app = api.create(body).await;
    assert!(app.get("clientSecret").is_none());
    let stored = api
        .gw
        .gateway
        .store
        .get_app(&id_of(&app))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.secret_hash, None);
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/oauthApps/{}:rotateSecret", id_of(&app)),
            None,
        )
        .await;
    let msg = assert_error(status, &body, 400, "invalid_argument");
    assert!(msg.starts_with("clientType: "), "{msg}");
}

#[tokio::test]
async fn callers_need_a_valid_bearer_with_admin() {
    let api = start("").await;
    let gw = &api.gw.gateway;
    let (status, body) = api.call_as(None, "GET", "/v1/oauthApps", None).await;
    let msg = assert_error(status, &body, 401, "unauthenticated");
    assert!(msg.contains("Bearer"));
    let r = api.request("GET", "/v1/oauthApps").send().await.unwrap();
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"gatehouse\""
    );
    for bad in ["gh_pat_not-a-real-token", "a.b.c", "x y"] {
        let (status, body) = api.call_as(Some(bad), "GET", "/v1/oauthApps", None).await;
        assert_error(status, &body, 401, "unauthenticated");
    }
    // A login session is not a bearer: the API has no cookie (CSRF) surface.
    let cookie = tokens::session(gw, "root").await;
    let req = api
        .request("GET", "/v1/oauthApps")
        .header("cookie", format!("gatehouse_session={cookie}"));
    let (status, body) = api.send("GET", "/v1/oauthApps", req).await;
    assert_error(status, &body, 401, "unauthenticated");
    // Two Authorization headers are ambiguous.
    let req = api
        .request("GET", "/v1/oauthApps")
        .header("authorization", format!("Bearer {}", api.admin))
        .header("authorization", "Bearer other");
    let (status, body) = api.send("GET", "/v1/oauthApps", req).await;
    assert_error(status, &body, 401, "unauthenticated");

    // WRITE is not enough (alice's max is WRITE, so even asking ADMIN gives WRITE).
    let (alice, _) = tokens::pat(gw, "alice", "WRITE").await;
    let (status, body) = api
        .call_as(Some(&alice), "GET", "/v1/oauthApps", None)
        .await;
    let msg = assert_error(status, &body, 403, "permission_denied");
    assert!(msg.contains("ADMIN"));
    let (alice_admin, _) = tokens::pat(gw, "alice", "ADMIN").await;
    let (status, body) = api
        .call_as(
            Some(&alice_admin),
            "POST",
            "/v1/oauthApps",
            Some(app_body("x")),
        )
        .await;
    assert_error(status, &body, 403, "permission_denied");

    // SYSTEM_ADMIN implies ADMIN; an ADMIN access token works like a PAT.
    let (sys, _) = tokens::pat(gw, "root", "SYSTEM_ADMIN").await;
    assert_eq!(
        api.call_as(Some(&sys), "GET", "/v1/oauthApps", None)
            .await
            .0,
        200
    );
    let at = tokens::access_token(
        gw,
        "admin-console",
        "root",
        "ADMIN",
        Duration::from_secs(600),
    )
    .await;
    let (status, app) = api
        .call_as(
            Some(&at.token),
            "POST",
            "/v1/oauthApps",
            Some(app_body("via access token")),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["createdBy"], "users/root");
    let read = tokens::access_token(gw, "reader", "root", "READ", Duration::from_secs(600)).await;
    let (status, body) = api
        .call_as(Some(&read.token), "GET", "/v1/oauthApps", None)
        .await;
    assert_error(status, &body, 403, "permission_denied");

    // An expired PAT is refused (time moved, not waited for).
    let (hour, _) = tokens::pat(gw, "root", "ADMIN").await;
    assert_eq!(
        api.call_as(Some(&hour), "GET", "/v1/oauthApps", None)
            .await
            .0,
        200
    );
    gw.clock.advance(Duration::from_secs(7200));
    let (status, body) = api.call_as(Some(&hour), "GET", "/v1/oauthApps", None).await;
    assert_error(status, &body, 401, "unauthenticated");
    assert_eq!(api.call("GET", "/v1/oauthApps", None).await.0, 200);
}

#[tokio::test]
async fn each_error_code_has_the_spec_shape() {
    let api = start("").await;
    let app = api.create(app_body("a")).await;
    let path = format!("/v1/oauthApps/{}", id_of(&app));

    let (status, body) = api.call("GET", "/v1/oauthApps/zzzzzzzzzz", None).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = api.call("GET", "/v1/oauthApps/a%2Fb", None).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = api.call("GET", "/v1/nothingHere", None).await;
    assert_error(status, &body, 404, "not_found");

    let r = api
        .request("PUT", &path)
        .bearer_auth(&api.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, PATCH, DELETE");

    let req = api
        .request("POST", "/v1/oauthApps")
        .bearer_auth(&api.admin)
        .header("content-type", "text/plain")
        .body(app_body("a").to_string());
    let (status, body) = api.send("POST", "/v1/oauthApps", req).await;
    assert_error(status, &body, 415, "unsupported_media_type");
    let req = api
        .request("PATCH", &path)
        .bearer_auth(&api.admin)
        .body(json!({"displayName": "b"}).to_string());
    let (status, body) = api.send("PATCH", &path, req).await;
    assert_error(status, &body, 415, "unsupported_media_type");

    let mut big = app_body("big");
    big["description"] = json!("x".repeat(65 * 1024));
    let (status, body) = api.call("POST", "/v1/oauthApps", Some(big)).await;
    assert_error(status, &body, 413, "payload_too_large");
    // Without a Content-Length (streamed), the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..70).map(|_| Ok(vec![b' '; 1024])).collect();
    let req = api
        .request("POST", "/v1/oauthApps")
        .bearer_auth(&api.admin)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )));
    let (status, body) = api.send("POST", "/v1/oauthApps", req).await;
    assert_error(status, &body, 413, "payload_too_large");

    let req = api
        .request("POST", "/v1/oauthApps")
        .bearer_auth(&api.admin)
        .header("content-type", "application/json; charset=utf-8")
        .body("{\"displayName\": ");
    let (status, body) = api.send("POST", "/v1/oauthApps", req).await;
    let msg = assert_error(status, &body, 400, "invalid_argument");
    assert!(msg.starts_with("body: is not valid JSON"), "{msg}");

    let (status, body) = api
        .call(
            "PATCH",
            &path,
            Some(json!({"displayName": "b", "color": "red"})),
        )
        .await;
    let msg = assert_error(status, &body, 400, "invalid_argument");
    assert_eq!(msg, "color: unknown field");
    assert_eq!(
        body["error"]["details"]["fieldViolations"],
        json!([{"field": "color", "description": "unknown field"}])
    );
    let (status, got) = api.call("GET", &path, None).await;
    assert_eq!(
        (status, &got["displayName"]),
        (200, &json!("a")),
        "a refused PATCH changes nothing"
    );
}

#[tokio::test]
async fn pagination_is_stable_while_apps_are_created() {
    let api = start("").await;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(id_of(&api.create(app_body(&format!("app {i}"))).await));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let path = format!("/v1/oauthApps?pageSize=3&pageToken={token}");
        let (status, page) = api.call("GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        let apps = page["oauthApps"].as_array().unwrap();
        assert!(apps.len() <= 3);
        for a in apps {
            assert!(a.get("clientSecret").is_none());
            seen.push(id_of(a));
        }
        pages += 1;
        if pages == 1 {
            // Created between pages: they come later, and nothing repeats or goes missing.
            for i in 7..9 {
                made.push(id_of(&api.create(app_body(&format!("app {i}"))).await));
            }
        }
        token = page["nextPageToken"].as_str().unwrap().to_owned();
        assert!(!token.contains(&seen[seen.len() - 1]), "tokens are opaque");
        if token.is_empty() {
            break;
        }
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, made, "creation order, every app exactly once");

    let (status, all) = api.call("GET", "/v1/oauthApps?pageSize=600", None).await;
    assert_eq!(
        (status, all["oauthApps"].as_array().unwrap().len()),
        (200, 9)
    );
    let (status, body) = api
        .call("GET", "/v1/oauthApps?pageToken=bm9wZQ", None)
        .await;
    let msg = assert_error(status, &body, 400, "invalid_argument");
    assert!(msg.starts_with("pageToken: "));
    let (status, body) = api.call("GET", "/v1/oauthApps?pageSize=ten", None).await;
    let msg = assert_error(status, &body, 400, "invalid_argument");
    assert!(msg.starts_with("pageSize: "));
}

#[tokio::test]
async fn rotation_ends_the_old_secret_at_once_or_after_the_grace_period() {
    let api = start("").await;
    let gw = &api.gw.gateway;
    let app = api.create(app_body("rotating")).await;
    let (id, first) = (
        id_of(&app),
        app["clientSecret"].as_str().unwrap().to_owned(),
    );
    let rotate = format!("/v1/oauthApps/{id}:rotateSecret");
    let stored = || async { gw.store.get_app(&id).await.unwrap().unwrap() };
    assert!(
        stored()
            .await
            .secret_matches(&secret_hash(&first), gw.clock.now())
    );

    // With a grace period both work until it ends.
    let (status, rotated) = api
        .call("POST", &rotate, Some(json!({"gracePeriod": "1h"})))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["clientSecret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(rotated["clientId"], app["clientId"]);
    let now = gw.clock.now();
    let a = stored().await;
    assert!(a.secret_matches(&secret_hash(&second), now));
    assert!(a.secret_matches(&secret_hash(&first), now));
    assert!(!a.secret_matches(&secret_hash(&first), now + Duration::from_secs(3601)));
    gw.clock.advance(Duration::from_secs(3601));
    let a = stored().await;
    assert!(!a.secret_matches(&secret_hash(&first), gw.clock.now()));
    assert!(a.secret_matches(&secret_hash(&second), gw.clock.now()));

    // Without one (an empty body, no content type needed), the old secret ends at once.
    let req = api.request("POST", &rotate).bearer_auth(&api.admin);
    let (status, rotated) = api.send("POST", &rotate, req).await;
    assert_eq!(status, 200, "{rotated}");
    let third = rotated["clientSecret"].as_str().unwrap().to_owned();
    let a = stored().await;
    assert!(a.secret_matches(&secret_hash(&third), gw.clock.now()));
    assert!(!a.secret_matches(&secret_hash(&second), gw.clock.now()));
    assert!(!a.secret_matches(&secret_hash(&first), gw.clock.now()));
    let (_, got) = api.call("GET", &format!("/v1/oauthApps/{id}"), None).await;
    assert!(got.get("clientSecret").is_none());

    let (status, body) = api
        .call("POST", "/v1/oauthApps/zzzzzzzzzz:rotateSecret", None)
        .await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test]
async fn a_store_that_does_not_answer_gets_503_without_internal_detail() {
    let api = start("").await;
    let (status, _) = api.call("GET", "/v1/oauthApps", None).await;
    assert_eq!(status, 200, "the admin PAT is now cached");
    api.gw.gateway.store.close().await;
    let (status, body) = api.call("GET", "/v1/oauthApps", None).await;
    let msg = assert_error(status, &body, 503, "unavailable");
    assert_eq!(msg, "the service is temporarily unavailable");
    assert!(body["error"]["details"]["requestId"].is_string());
    let (status, body) = api.call("POST", "/v1/oauthApps", Some(app_body("x"))).await;
    assert_error(status, &body, 503, "unavailable");
    // A bearer that is not cached cannot be checked: refused, never let through.
    let (status, body) = api
        .call_as(
            Some("gh_pat_never-seen-before"),
            "GET",
            "/v1/oauthApps",
            None,
        )
        .await;
    assert_error(status, &body, 503, "unavailable");
    crate::apps::openapi::assert_documented(&api.seen.lock().unwrap());
}

#[tokio::test]
async fn a_corrupt_row_gets_500_with_the_request_id_and_no_detail() {
    use sqlx::Connection as _;
    let api = start("").await;
    let app = api.create(app_body("soon corrupt")).await;
    let db = api.gw.dir.dir.path().join("gatehouse.db");
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::raw_sql("UPDATE apps SET secret_hash = X'00'")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    for path in [
        format!("/v1/oauthApps/{}", id_of(&app)),
        "/v1/oauthApps".into(),
    ] {
        let (status, body) = api.call("GET", &path, None).await;
        let msg = assert_error(status, &body, 500, "internal");
        assert_eq!(msg, "internal error");
        assert!(!body.to_string().contains("hash"), "{body}");
        assert!(body["error"]["details"]["requestId"].is_string());
    }
    crate::apps::openapi::assert_documented(&api.seen.lock().unwrap());
}
