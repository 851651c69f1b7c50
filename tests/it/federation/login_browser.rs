//! Sign-in through an identity provider in headless Chromium (the pattern of
//! `ui/browser.rs`): the login page shows the provider's button; a click leads to the real
//! provider's own sign-in form, and after it the browser lands on the `session` route it
//! asked for, as the federated user. Screenshots go to `target/screenshots/`. Skipped with a
//! note without Chromium or the provider, unless `GATEHOUSE_REQUIRE_BROWSER` /
//! `GATEHOUSE_REQUIRE_IDP` say otherwise.

use std::path::Path;

use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{ConfigDir, TestGateway, poll_until};
use crate::helpers::idp;
use crate::ui::browser::{Browser, Driver, find_binary};

#[tokio::test]
async fn a_browser_signs_in_with_the_provider_button_and_lands_on_the_route() {
    let required = std::env::var_os("GATEHOUSE_REQUIRE_BROWSER").is_some();
    let (Some(driver_bin), Some(_)) = (
        find_binary(&["chromedriver"]),
        find_binary(&["chromium", "chromium-browser", "google-chrome"]),
    ) else {
        assert!(
            !required,
            "GATEHOUSE_REQUIRE_BROWSER is set but chromium/chromedriver are missing"
        );
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "note: skipping the provider sign-in browser test: it needs chromium and \
             chromedriver on PATH; set GATEHOUSE_REQUIRE_BROWSER=1 to fail instead"
        );
        return;
    };
    let dir = ConfigDir::new();
    let config = serde_json::json!({
        "clients": [{
            "client_id": "gatehouse",
            "client_secret": "browser-test-client-secret-0123",
            "redirect_uris": ["https://localhost/login/corp/callback"],
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "scope": "openid profile groups",
        }],
        "users": [{ "sub": "u-jane", "username": "jane", "password": "jane-password",
                    "name": "Jane", "groups": ["staff", "wiki-admins"] }],
    });
    let Some(idp) = idp::start_or_skip(&dir.pki, config, "the provider browser test").await else {
        return;
    };
    let upstream = Upstream::start().await;
    let gw = TestGateway::start_in(
        dir,
        "",
        &format!(
            r#"
[[identity_providers]]
name = "corp"
display_name = "Corp SSO"
issuer = "{issuer}"
client_id = "gatehouse"
client_secret = "browser-test-client-secret-0123"
scopes = ["openid", "profile", "groups"]
ca = "{ca}"
group_scopes = {{ "wiki-admins" = "ADMIN" }}

[[routes]]
path = "/wiki"
upstream = "http://{up}"
auth = "session"
scope = "READ"
"#,
            issuer = idp.issuer,
            ca = idp.ca_path.display(),
            up = upstream.addr,
        ),
    )
    .await;
    let client = gw.client(true);
    poll_until(std::time::Duration::from_secs(20), || async {
        client
            .get(gw.url("/login/corp"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 303)
    })
    .await;

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver::start(&driver_bin).await;
    // `public_url` is https://localhost (port 443): the provider sends the browser back there,
    // so that name goes to the gateway's port.
    let map = format!(
        "--host-resolver-rules=MAP localhost 127.0.0.1:{}",
        gw.public.port()
    );
    let browser = Browser::with_args(&driver, profile.path(), &[map]).await;
    browser.goto(&gw.url("/wiki/home")).await;
    browser
        .wait_for_url("the login page", |u| u.contains("/login?return_to="))
        .await;
    let html = browser.source().await;
    assert!(html.contains("Sign in with Corp SSO"), "{html}");
    assert!(
        !html.contains("id=\"password\""),
        "no [[users]]: no password form"
    );
    browser
        .screenshot(&shots.join("login-with-provider.png"))
        .await;
    browser.click("a.provider").await;
    browser
        .wait_for_url("the provider's sign-in form", |u| {
            u.starts_with(&idp.issuer) && u.contains("/interaction/")
        })
        .await;
    browser
        .screenshot(&shots.join("provider-sign-in.png"))
        .await;
    browser.type_into("#login", "jane").await;
    browser.type_into("#password", "jane-password").await;
    browser.click("#submit").await;
    let landed = browser
        .wait_for_url("the route", |u| u.ends_with("/wiki/home"))
        .await;
    assert!(landed.starts_with("https://localhost"), "{landed}");
    let records = upstream.records.clone();
    poll_until(std::time::Duration::from_secs(10), || {
        let records = records.clone();
        async move {
            records.lock().unwrap().iter().any(|r| {
                r.uri == "/wiki/home"
                    && r.headers.get("x-auth-user").is_some_and(|v| v == "jane")
                    && r.headers
                        .get("x-auth-groups")
                        .is_some_and(|v| v == "staff wiki-admins")
            })
        }
    })
    .await;
    browser.screenshot(&shots.join("provider-landed.png")).await;
    browser.close().await;
}
