//! The access log of the real binary (SPEC §7.5), JSON: one line per request with the
//! configured route, the status, the times, the peer, and who made the request — on a proxied
//! route (the token's user), at the token endpoint (the client that authenticated), on the
//! management API (the token's user) and on the login page (who signed in) — never a token, a
//! client secret, a password or a cookie.

use std::process::Command;
use std::time::Duration;

use crate::helpers::harness::process::{GatewayProcess, binary};
use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{ConfigDir, poll_until};
use crate::helpers::login_support::{ALICE_PASSWORD, hidden, users};

const CLIENT_SECRET: &str = "reporting-secret-0123456789-abcdefghij";

/// The JSON access-log line of the request with `id`.
async fn line(gw: &GatewayProcess, id: &str) -> serde_json::Value {
    let needle = format!("\"request_id\":\"{id}\"");
    let access = |l: &String| l.contains(&needle) && l.contains("\"target\":\"gatehouse::access\"");
    poll_until(Duration::from_secs(5), || async {
        gw.log_lines().iter().any(access)
    })
    .await;
    let found = gw.log_lines().into_iter().find(|l| access(l));
    serde_json::from_str(&found.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_names_its_route_and_caller_and_no_secret() {
    let up = Upstream::start().await;
    let dir = ConfigDir::new();
    let config = format!(
        "{}\n[[apps]]\nclient_id = \"reporting\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
         display_name = \"Reporting\"\nallowed_callback_urls = [\"https://r.example.com/cb\"]\n\
         scopes = [\"READ\"]\n\n\
         [[routes]]\npath = \"/rest\"\nupstream = \"http://{}\"\nauth = \"bearer\"\nscope = \"READ\"\n",
        users(),
        up.addr
    );
    let path = dir.write("", &config);
    let out = Command::new(binary())
        .args(["token", "create", "--config"])
        .arg(&path)
        .args(["--user", "root", "--scope", "ADMIN"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pat = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let gw = GatewayProcess::start(&path);
    let client = dir.pki.client(gw.public, true);
    let url = |p: &str| format!("https://localhost:{}{p}", gw.public.port());

    // A proxied request: the configured route, the token's user, the upstream's time.
    let r = client
        .get(url("/rest/some/raw/path?q=1"))
        .header("x-request-id", "log-proxied")
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let l = line(&gw, "log-proxied").await;
    assert_eq!(
        l["route"], "/rest",
        "the configured path, never the raw one: {l}"
    );
    assert_eq!(l["method"], "GET");
    assert_eq!(l["status"], 200);
    assert_eq!(l["user"], "root");
    assert_eq!(l["peer"], "127.0.0.1");
    assert!(l["upstream_ms"].as_f64().unwrap() >= 0.0, "{l}");
    assert!(
        l["duration_ms"].as_f64() >= l["upstream_ms"].as_f64(),
        "{l}"
    );

    // The token endpoint: the client that authenticated (the code itself is bad).
    let r = client
        .post(url("/oauth2/token"))
        .header("x-request-id", "log-token")
        .basic_auth("reporting", Some(CLIENT_SECRET))
        .form(&[("grant_type", "authorization_code"), ("code", "not-a-code")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let l = line(&gw, "log-token").await;
    assert_eq!(l["route"], "gatehouse:oauth2", "{l}");
    assert_eq!(l["method"], "POST");
    assert_eq!(l["status"], 400);
    assert_eq!(l["client_id"], "reporting", "{l}");
    assert!(l.get("upstream_ms").is_none(), "not proxied: {l}");

    // The management API: the token's user.
    let r = client
        .get(url("/v1/oauthApps"))
        .header("x-request-id", "log-api")
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let l = line(&gw, "log-api").await;
    assert_eq!(l["route"], "gatehouse:v1", "{l}");
    assert_eq!(l["user"], "root", "{l}");
    assert!(l.get("client_id").is_none(), "a PAT has no app: {l}");

    // The login page: who signed in.
    let form = client
        .get(url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&form, "csrf_token");
    let r = client
        .post(url("/login"))
        .header("x-request-id", "log-login")
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "alice"),
            ("password", ALICE_PASSWORD),
            ("return_to", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("gatehouse_session="))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let l = line(&gw, "log-login").await;
    assert_eq!(l["route"], "gatehouse:login", "{l}");
    assert_eq!(l["status"], 303);
    assert_eq!(l["user"], "alice", "{l}");

    let log = gw.log_lines().join("\n");
    for (what, secret) in [
        ("the PAT", pat.as_str()),
        ("the client secret", CLIENT_SECRET),
        ("the password", ALICE_PASSWORD),
        ("the session cookie", session.as_str()),
        ("the CSRF token", csrf.as_str()),
    ] {
        assert!(!log.contains(secret), "{what} is in the log:\n{log}");
    }
}
