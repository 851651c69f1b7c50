//! `docs/openapi.yaml` stays true: every operation of the management API is called for each
//! status it documents (but 500/503), and every real response is checked against the document
//! — the status must be listed for the operation, and the JSON body must match its schema
//! (types, enums, required properties, and no property the schema does not name). A small
//! checker over the schema subset the document uses; it is tested to fail on drift.

use serde_json::{Value, json};

use crate::apps::api::{Api, Exchange, app_body, id_of, start};
use crate::helpers::harness::tokens;

struct Doc {
    root: Value,
}

impl Doc {
    fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let root: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(root["openapi"], "3.1.0");
        Self { root }
    }

    /// Follows `$ref: "#/a/b"` until a non-reference.
    fn deref<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            let pointer = r.strip_prefix('#').unwrap();
            v = self
                .root
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling {r}"));
        }
        v
    }

    /// The path template (`/v1/oauthApps/{id}:rotateSecret`) a real path belongs to.
    fn template(&self, path: &str) -> Option<String> {
        let paths = self.root["paths"].as_object().unwrap();
        paths.keys().find(|t| matches_template(t, path)).cloned()
    }

    fn operations(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (path, item) in self.root["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                for status in op["responses"].as_object().unwrap().keys() {
                    out.push((method.to_uppercase(), path.clone(), status.clone()));
                }
            }
        }
        out
    }

    fn check_exchange(&self, ex: &Exchange) -> Result<(), String> {
        let at = format!("{} {} → {}", ex.method, ex.path, ex.status);
        let template = self
            .template(&ex.path)
            .ok_or_else(|| format!("{at}: path not documented"))?;
        let op = &self.root["paths"][&template][ex.method.to_lowercase()];
        let response = op["responses"]
            .get(ex.status.to_string())
            .ok_or_else(|| format!("{at}: status not documented"))?;
        let response = self.deref(response);
        let Some(content) = response.get("content") else {
            return match ex.body {
                Value::Null => Ok(()),
                _ => Err(format!("{at}: a body where none is documented")),
            };
        };
        let ct = ex.content_type.as_deref().unwrap_or("");
        if !ct.starts_with("application/json") {
            return Err(format!("{at}: content type {ct:?}"));
        }
        let schema = &content["application/json"]["schema"];
        let mut errors = Vec::new();
        self.check(schema, &ex.body, "$", &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{at}: {}", errors.join("; ")))
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = self.deref(schema);
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        let ty = schema.get("type").and_then(Value::as_str);
        let ok = match ty {
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("boolean") => value.is_boolean(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some(other) => panic!("schema type {other} not supported by this checker"),
            None => true,
        };
        if !ok {
            errors.push(format!(
                "{at}: {value} is not of type {}",
                ty.unwrap_or("?")
            ));
            return;
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && !value.as_str().is_some_and(is_rfc3339_micros_utc)
        {
            errors.push(format!(
                "{at}: {value} is not an RFC 3339 UTC time with microseconds"
            ));
        }
        if let Some(items) = value.as_array() {
            for (i, item) in items.iter().enumerate() {
                self.check(&schema["items"], item, &format!("{at}[{i}]"), errors);
            }
        }
        if let Some(map) = value.as_object() {
            self.check_object(schema, map, at, errors);
        }
    }

    fn check_object(
        &self,
        schema: &Value,
        map: &serde_json::Map<String, Value>,
        at: &str,
        errors: &mut Vec<String>,
    ) {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            if !map.contains_key(name) {
                errors.push(format!("{at}: required property {name} is missing"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (key, v) in map {
            let here = format!("{at}.{key}");
            match (
                props.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(s), _) => self.check(s, v, &here, errors),
                (None, Some(extra)) if extra.is_object() => self.check(extra, v, &here, errors),
                (None, Some(Value::Bool(true))) => {}
                // Absent counts as closed: a response may not grow undocumented fields.
                (None, _) => errors.push(format!("{here}: not documented")),
            }
        }
    }
}

fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| match (t.find('{'), t.find('}')) {
                (Some(open), Some(close)) => {
                    let (prefix, suffix) = (&t[..open], &t[close + 1..]);
                    p.len() > prefix.len() + suffix.len()
                        && p.starts_with(prefix)
                        && p.ends_with(suffix)
                        && !p[prefix.len()..p.len() - suffix.len()].contains(':')
                }
                _ => t == p,
            })
}

fn is_rfc3339_micros_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

const CONFIG_APP: &str = r#"
[[apps]]
client_id = "from-config"
client_secret = "config-secret-0123456789"
display_name = "From config"
allowed_callback_urls = ["https://cfg.example.com/cb"]
scopes = ["READ"]
"#;

/// Sends `body` raw with a content type (for 413 and 415).
async fn raw(api: &Api, method: &str, path: &str, ct: &str, body: String) -> u16 {
    let req = api
        .request(method, path)
        .bearer_auth(&api.admin)
        .header("content-type", ct)
        .body(body);
    api.send(method, path, req).await.0
}

/// Calls every operation for every documented status but 500/503.
async fn exercise(api: &Api) {
    let gw = &api.gw.gateway;
    let (alice, _) = tokens::pat(gw, "alice", "WRITE").await;
    let app = api.create(app_body("documented")).await;
    let mut public = app_body("public one");
    public["clientType"] = json!("public");
    api.create(public).await;
    let id = id_of(&app);
    let (_, list) = api.call("GET", "/v1/oauthApps", None).await;
    let config_app = list["oauthApps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["managedBy"] == "config")
        .map(id_of)
        .unwrap();
    let big = json!({"displayName": "x".repeat(70 * 1024)}).to_string();
    let (app_path, rotate) = (
        format!("/v1/oauthApps/{id}"),
        format!("/v1/oauthApps/{id}:rotateSecret"),
    );
    let body_ops: [(&str, &str, Value); 5] = [
        ("POST", "/v1/oauthApps", app_body("x")),
        ("PATCH", &app_path, json!({"description": "d"})),
        ("POST", &rotate, json!({})),
        (
            "POST",
            "/v1/personalTokens",
            json!({"displayName": "t", "scope": "READ"}),
        ),
        ("POST", "/v1/oauthApps/missing:rotateSecret", json!({})),
    ];
    for (method, path, _) in &body_ops[..4] {
        assert_eq!(
            raw(api, method, path, "application/json", big.clone()).await,
            413
        );
        assert_eq!(raw(api, method, path, "text/plain", "{}".into()).await, 415);
        let (status, _) = api
            .call(method, path, Some(json!({"unknownField": 1})))
            .await;
        assert_eq!(status, 400);
    }
    let all: Vec<(&str, String)> = vec![
        ("GET", "/v1/oauthApps".into()),
        ("POST", "/v1/oauthApps".into()),
        ("GET", app_path.clone()),
        ("PATCH", app_path.clone()),
        ("DELETE", "/v1/oauthApps/zzzzzzzzzz".into()),
        ("POST", rotate.clone()),
        ("GET", "/v1/personalTokens".into()),
        ("POST", "/v1/personalTokens".into()),
        ("DELETE", "/v1/personalTokens/nope".into()),
    ];
    for (method, path) in &all {
        let body = body_ops
            .iter()
            .find(|(m, p, _)| *m == *method && *p == path.as_str())
            .map(|b| b.2.clone());
        assert_eq!(api.call_as(None, method, path, body.clone()).await.0, 401);
        if path.starts_with("/v1/oauthApps") {
            assert_eq!(api.call_as(Some(&alice), method, path, body).await.0, 403);
        }
    }
    for (method, path) in [
        ("GET", "/v1/oauthApps/zzzzzzzzzz"),
        ("PATCH", "/v1/oauthApps/zzzzzzzzzz"),
    ] {
        assert_eq!(api.call(method, path, Some(json!({}))).await.0, 404);
    }
    assert_eq!(
        api.call("GET", "/v1/oauthApps/zzzzzzzzzz", None).await.0,
        404
    );
    assert_eq!(api.call("POST", body_ops[4].1, None).await.0, 404);
    assert_eq!(
        api.call("DELETE", "/v1/personalTokens/nope", None).await.0,
        404
    );
    assert_eq!(
        api.call("DELETE", "/v1/oauthApps/zzzzzzzzzz", None).await.0,
        404
    );
    let config_path = format!("/v1/oauthApps/{config_app}");
    assert_eq!(api.call("GET", &config_path, None).await.0, 200);
    assert_eq!(
        api.call("PATCH", &config_path, Some(json!({}))).await.0,
        409
    );
    assert_eq!(api.call("DELETE", &config_path, None).await.0, 409);
    assert_eq!(
        api.call("POST", &format!("{config_path}:rotateSecret"), None)
            .await
            .0,
        409
    );
    assert_eq!(
        api.call("GET", "/v1/oauthApps?pageSize=1", None).await.0,
        200
    );
    assert_eq!(
        api.call("GET", "/v1/oauthApps?pageSize=x", None).await.0,
        400
    );
    assert_eq!(
        api.call("PATCH", &app_path, Some(json!({"labels": {"a": "b"}})))
            .await
            .0,
        200
    );
    let grace = Some(json!({"gracePeriod": "1h"}));
    assert_eq!(api.call("POST", &rotate, grace).await.0, 200);
    let (status, pat) = api
        .call("POST", "/v1/personalTokens", Some(body_ops[3].2.clone()))
        .await;
    assert_eq!(status, 201);
    assert_eq!(api.call("GET", "/v1/personalTokens", None).await.0, 200);
    let too_much = json!({"displayName": "t", "scope": "ADMIN"});
    let (status, _) = api
        .call_as(Some(&alice), "POST", "/v1/personalTokens", Some(too_much))
        .await;
    assert_eq!(status, 403);
    let pat_path = format!("/v1/{}", pat["name"].as_str().unwrap());
    assert_eq!(api.call("DELETE", &pat_path, None).await.0, 204);
    assert_eq!(api.call("DELETE", &app_path, None).await.0, 204);
}

/// Checks exchanges recorded by any test against the document (for the 500 and 503 tests in
/// `apps.rs`, which need a broken store).
pub fn assert_documented(seen: &[Exchange]) {
    let doc = Doc::load();
    let failures: Vec<String> = seen
        .iter()
        .filter_map(|ex| doc.check_exchange(ex).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn real_responses_match_the_openapi_document() {
    let doc = Doc::load();
    let api = start(CONFIG_APP).await;
    exercise(&api).await;
    let seen = api.seen.lock().unwrap().clone();
    let failures: Vec<String> = seen
        .iter()
        .filter_map(|ex| doc.check_exchange(ex).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every documented operation and status (but 500/503) was observed at least once.
    for (method, template, status) in doc.operations() {
        if status == "500" || status == "503" {
            continue;
        }
        let observed = seen.iter().any(|ex| {
            ex.method == method
                && ex.status.to_string() == status
                && matches_template(&template, &ex.path)
        });
        assert!(
            observed,
            "{method} {template} → {status} was never exercised"
        );
    }
}

#[test]
fn the_checker_fails_on_drift() {
    let doc = Doc::load();
    let app = json!({
        "name": "oauthApps/abc", "displayName": "d", "description": "", "logoUri": "",
        "allowedCallbackUrls": ["https://c.example.com/cb"], "allowedLogoutUrls": [],
        "allowedWebOrigins": [], "clientType": "confidential", "clientId": "cid",
        "scopes": ["READ"], "skipConsent": false, "active": true, "labels": {"team": "x"},
        "createdBy": "users/root", "updatedBy": "users/root",
        "createTime": "2026-11-23T10:00:00.000000Z", "updateTime": "2026-11-23T10:00:00.000000Z",
        "managedBy": "api"
    });
    let ex = |status: u16, path: &str, body: Value| Exchange {
        method: "GET".into(),
        path: path.into(),
        status,
        content_type: Some("application/json".into()),
        body,
    };
    assert_eq!(
        doc.check_exchange(&ex(200, "/v1/oauthApps/abc", app.clone())),
        Ok(())
    );
    type Mutation = Box<dyn Fn(&mut Value)>;
    let mutations: [(&str, Mutation); 7] = [
        ("not documented", Box::new(|v| v["extra"] = json!(1))),
        (
            "required property clientId",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("clientId");
            }),
        ),
        (
            "not of type boolean",
            Box::new(|v| v["active"] = json!("yes")),
        ),
        (
            "not one of",
            Box::new(|v| v["managedBy"] = json!("someone")),
        ),
        (
            "RFC 3339",
            Box::new(|v| v["createTime"] = json!("2026-11-23T10:00:00Z")),
        ),
        (
            "not of type string",
            Box::new(|v| v["labels"]["team"] = json!(1)),
        ),
        (
            "$.clientSecret: not documented",
            Box::new(|v| v["clientSecret"] = json!("s")),
        ),
    ];
    for (want, mutate) in mutations {
        let mut body = app.clone();
        mutate(&mut body);
        let err = doc
            .check_exchange(&ex(200, "/v1/oauthApps/abc", body))
            .unwrap_err();
        assert!(err.contains(want), "{want}: {err}");
    }
    let err = doc
        .check_exchange(&ex(418, "/v1/oauthApps/abc", app.clone()))
        .unwrap_err();
    assert!(err.contains("status not documented"));
    let err = doc
        .check_exchange(&ex(200, "/v1/elsewhere", app))
        .unwrap_err();
    assert!(err.contains("path not documented"));
    let bad_error = json!({"error": {"code": "not_found", "message": "m"}});
    let err = doc
        .check_exchange(&ex(404, "/v1/oauthApps/abc", bad_error))
        .unwrap_err();
    assert!(err.contains("required property details"), "{err}");
    assert!(matches_template(
        "/v1/oauthApps/{id}:rotateSecret",
        "/v1/oauthApps/a:rotateSecret"
    ));
    assert!(!matches_template(
        "/v1/oauthApps/{id}",
        "/v1/oauthApps/a:rotateSecret"
    ));
}
