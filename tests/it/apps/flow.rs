//! The registry as the authorization server sees it (SPEC §3.1, §3.3): an app registered
//! through the management API runs the code flow at `/oauth2/token` with the secret shown at
//! creation; `:rotateSecret` with a grace period keeps the old secret working until it ends,
//! without one ends it at once; deactivating and deleting the app end its tokens.

use std::time::Duration;

use serde_json::json;

use crate::apps::api::long_lived_pat;
use crate::helpers::oauth_fixture::{Auth, CALLBACK, Fx, VERIFIER};

async fn api(
    fx: &Fx,
    admin: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = fx
        .gw
        .client(false)
        .request(method, fx.gw.url(path))
        .bearer_auth(admin);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

async fn refresh(fx: &Fx, client_id: &str, secret: &str, token: &str) -> (u16, String, String) {
    let form = [("grant_type", "refresh_token"), ("refresh_token", token)];
    let a = fx
        .post("/oauth2/token", &form, Auth::Basic(client_id, secret))
        .await;
    let next = a.json()["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (a.status, a.error(), next)
}

#[tokio::test]
async fn a_registered_app_runs_the_flow_and_rotation_moves_its_secret() {
    let fx = Fx::start("").await;
    let admin = long_lived_pat(fx.gateway(), "root", "ADMIN").await;
    let body = json!({
        "displayName": "Registered",
        "allowedCallbackUrls": [CALLBACK],
        "scopes": ["READ", "WRITE"],
    });
    let (status, app) = api(&fx, &admin, "POST", "/v1/oauthApps", Some(body)).await;
    assert_eq!(status, 201, "{app}");
    let id = app["name"].as_str().unwrap().to_owned();
    let client_id = app["clientId"].as_str().unwrap().to_owned();
    let first = app["clientSecret"].as_str().unwrap().to_owned();

    let code = fx.code(&client_id, "WRITE", true).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    let redeemed = fx
        .post("/oauth2/token", &form, Auth::Basic(&client_id, &first))
        .await;
    assert_eq!(redeemed.status, 200, "{}", redeemed.text);
    let access = redeemed.field("access_token");
    let mut rt = redeemed.field("refresh_token");
    assert_eq!(fx.proxied(&access).await, 200);

    // With a grace period, both secrets work until it ends.
    let rotate = format!("/v1/{id}:rotateSecret");
    let (status, rotated) = api(
        &fx,
        &admin,
        "POST",
        &rotate,
        Some(json!({"gracePeriod": "1h"})),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["clientSecret"].as_str().unwrap().to_owned();
    for secret in [&first, &second] {
        let (status, error, next) = refresh(&fx, &client_id, secret, &rt).await;
        assert_eq!(status, 200, "{error}");
        rt = next;
    }
    fx.advance(Duration::from_secs(3601));
    let (status, error, _) = refresh(&fx, &client_id, &first, &rt).await;
    assert_eq!(
        (status, error.as_str()),
        (401, "invalid_client"),
        "the grace is over"
    );

    // Without one, the old secret ends at once.
    let (status, rotated) = api(&fx, &admin, "POST", &rotate, None).await;
    assert_eq!(status, 200, "{rotated}");
    let third = rotated["clientSecret"].as_str().unwrap().to_owned();
    let (status, error, _) = refresh(&fx, &client_id, &second, &rt).await;
    assert_eq!((status, error.as_str()), (401, "invalid_client"));
    let (status, error, next) = refresh(&fx, &client_id, &third, &rt).await;
    assert_eq!(status, 200, "{error}");
    rt = next;

    // Deactivated: the grant is gone; deleted: the client is gone.
    let (status, _) = api(
        &fx,
        &admin,
        "PATCH",
        &format!("/v1/{id}"),
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, error, _) = refresh(&fx, &client_id, &third, &rt).await;
    assert_eq!(
        (status, error.as_str()),
        (401, "invalid_client"),
        "an inactive app"
    );
    let (status, _) = api(&fx, &admin, "DELETE", &format!("/v1/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, error, _) = refresh(&fx, &client_id, &third, &rt).await;
    assert_eq!((status, error.as_str()), (401, "invalid_client"));
}
