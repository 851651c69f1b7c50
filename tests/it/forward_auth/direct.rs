//! `/auth/verify` called directly, as an ingress would (SPEC §7.4, SECURITY.md "Talking to other
//! identity systems", "Paths and routing"): only trusted proxies may speak for an original
//! request, its styles must agree, a browser is sent to the login page and comes back to the
//! original URL on another host, forward-auth-only routes proxy nothing, and every path trick
//! of the hardening work decides exactly as on a proxied route.

use std::time::Duration;

use super::support::{self, APP_HOST, GW_HOST};
use crate::helpers::harness::tokens;
use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{TestGateway, USERS, metric_value, open_route};
use crate::helpers::login_support::{self, ALICE_PASSWORD};

const SECOND: Duration = Duration::from_secs(1);

/// The gateway alone, as the auth service of an ingress at `app.localhost:{app_port}`.
async fn gateway(app_port: u16) -> TestGateway {
    support::gateway(support::free_port(), app_port, support::ROUTES).await
}

fn verify_url(gw: &TestGateway) -> String {
    format!("https://{GW_HOST}:{}/auth/verify", gw.public.port())
}

#[tokio::test]
async fn only_a_trusted_proxy_may_speak_for_an_original_request() {
    let gw = gateway(8443).await;
    let (pat, _) = tokens::pat(&gw.gateway, "root", "ADMIN").await;
    let original = format!("https://{APP_HOST}:8443/admin/users");
    // 127.0.0.2 is not in server.trusted_proxies (127.0.0.1/32): a forged X-Original-URL, even
    // with a valid token, is refused before anything else is looked at.
    let outsider = support::browser(&gw, gw.public, Some("127.0.0.2"));
    for headers in [
        vec![("x-original-url", original.as_str())],
        vec![
            ("x-forwarded-uri", "/admin/users"),
            ("x-forwarded-host", "app.localhost:8443"),
        ],
        vec![],
    ] {
        let mut request = outsider.get(verify_url(&gw)).bearer_auth(&pat);
        for (k, v) in &headers {
            request = request.header(*k, *v);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 403, "{headers:?}");
        assert!(r.headers().get("x-auth-user").is_none());
    }
    // Envoy's form too: the original path after the prefix.
    let r = outsider
        .get(format!("{}/admin/users", verify_url(&gw)))
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The same requests from the trusted proxy's address are decided.
    let proxy = support::browser(&gw, gw.public, Some("127.0.0.1"));
    let r = proxy
        .get(verify_url(&gw))
        .header("x-original-url", &original)
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-user"], "root");
    assert_eq!(r.headers()["x-auth-scopes"], "READ WRITE ADMIN");
    let r = proxy
        .get(format!("{}/admin/users", verify_url(&gw)))
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_original_request_comes_from_one_style_or_agreeing_ones() {
    let gw = gateway(8443).await;
    let minted = tokens::access_token(&gw.gateway, "reports", "alice", "READ", 300 * SECOND).await;
    let client = support::browser(&gw, gw.public, None);
    let ask = |headers: Vec<(&'static str, String)>, method: reqwest::Method, path: &str| {
        let mut request = client
            .request(method, format!("{}{path}", verify_url(&gw)))
            .bearer_auth(&minted.token);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        request.send()
    };
    let url = || {
        (
            "x-original-url",
            format!("https://{APP_HOST}:8443/app/page?x=1"),
        )
    };
    let fwd = |uri: &str, host: &str| {
        vec![
            ("x-forwarded-uri", uri.to_string()),
            ("x-forwarded-host", host.to_string()),
            ("x-forwarded-proto", "https".to_string()),
        ]
    };
    let get = reqwest::Method::GET;
    // nginx, Traefik/Caddy and Envoy styles each alone: allowed, with the app's identity.
    let r = ask(vec![url()], get.clone(), "").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-user"], "alice");
    assert_eq!(r.headers()["x-auth-scopes"], "READ");
    assert_eq!(r.headers()["x-auth-client-id"], "reports");
    let r = ask(fwd("/app/page?x=1", "app.localhost:8443"), get.clone(), "")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = ask(vec![], get.clone(), "/app/page?x=1").await.unwrap();
    assert_eq!(r.status(), 200);
    // The original method decides the scope: a READ token may not POST (WRITE).
    let mut post = vec![url(), ("x-original-method", "POST".to_string())];
    let r = ask(post.clone(), get.clone(), "").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    let r = ask(vec![], reqwest::Method::POST, "/app/page")
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "Envoy's check carries the original method");
    // Two styles that agree are one request; two that differ are 400.
    let mut both = fwd("/app/page?x=1", "app.localhost:8443");
    both.push(url());
    assert_eq!(ask(both, get.clone(), "").await.unwrap().status(), 200);
    for disagreeing in [
        {
            let mut h = fwd("/public/x", "app.localhost:8443");
            h.push(url());
            h
        },
        {
            let mut h = fwd("/app/page?x=1", "other.localhost:8443");
            h.push(url());
            h
        },
        {
            post.push(("x-forwarded-method", "GET".to_string()));
            post.extend(fwd("/app/page?x=1", "app.localhost:8443"));
            post
        },
    ] {
        let r = ask(disagreeing.clone(), get.clone(), "").await.unwrap();
        assert_eq!(r.status(), 400, "{disagreeing:?}");
    }
    let r = ask(vec![url()], get.clone(), "/public/x").await.unwrap();
    assert_eq!(r.status(), 400, "X-Original-URL against Envoy's path");
    // No original request at all, a relative X-Original-URL, or no X-Forwarded-Host: 400.
    for bad in [
        vec![],
        vec![("x-original-url", "/app/page".to_string())],
        vec![("x-forwarded-uri", "/app/page".to_string())],
        vec![("x-original-url", "ftp://app.localhost/app".to_string())],
    ] {
        let r = ask(bad.clone(), get.clone(), "").await.unwrap();
        assert_eq!(r.status(), 400, "{bad:?}");
    }
    // No route for the original path: 404; a public route: 200 without identity.
    let r = ask(
        vec![("x-original-url", format!("https://{APP_HOST}/nowhere"))],
        get.clone(),
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let r = client
        .get(verify_url(&gw))
        .header("x-original-url", format!("https://{APP_HOST}/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-auth-user").is_none());
    // The body is never read: a check that announces one is answered all the same.
    let r = client
        .post(verify_url(&gw))
        .header("x-original-url", format!("https://{APP_HOST}/public/x"))
        .body(vec![b'x'; 256 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Decisions are counted per route, as on proxied requests.
    let metrics = gw.metrics().await;
    assert!(
        metric_value(
            &metrics,
            "gatehouse_auth_decisions_total{result=\"allowed\",route=\"/app\"}"
        )
        .is_some_and(|v| v >= 4.0),
        "{metrics}"
    );
    assert!(
        metric_value(
            &metrics,
            "gatehouse_http_requests_total{method=\"GET\",route=\"gatehouse:verify\",status=\"200\"}"
        )
        .is_some(),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_browser_is_sent_to_sign_in_and_back_to_the_original_url_on_the_app_host() {
    let app_port = 8443;
    let gw = gateway(app_port).await;
    let browser = support::browser(&gw, gw.public, None);
    let original = format!("https://{APP_HOST}:{app_port}/app/page?x=1&y=%2F");
    let check = |rd: bool| {
        let url = if rd {
            format!("{}?rd=1", verify_url(&gw))
        } else {
            verify_url(&gw)
        };
        browser
            .get(url)
            .header("x-original-url", &original)
            .header("accept", "text/html,application/xhtml+xml")
            .send()
    };
    let login = format!(
        "https://{GW_HOST}:{}/login?return_to={}",
        gw.public.port(),
        "https%3A//app.localhost%3A8443/app/page%3Fx%3D1%26y%3D%252F"
    );
    let r = check(false).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(login_support::location(&r), login);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"gatehouse\""
    );
    let r = check(true).await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(login_support::location(&r), login);
    // An API client (no text/html) gets the plain 401.
    let r = browser
        .get(verify_url(&gw))
        .header("x-original-url", &original)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("location").is_none());

    // Signing in sends the browser back to the original URL on the app's host, with a session
    // cookie for every host under `localhost`.
    let page = browser.get(&login).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = login_support::hidden(&html, "csrf_token");
    assert_eq!(
        login_support::hidden(&html, "return_to"),
        original.replace('&', "&#38;")
    );
    let r = browser
        .post(format!("https://{GW_HOST}:{}/login", gw.public.port()))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "alice"),
            ("password", ALICE_PASSWORD),
            ("return_to", original.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(login_support::location(&r), original);
    let cookies = login_support::set_cookies(&r);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("gatehouse_session=") && c.contains("; Domain=localhost;")),
        "{cookies:?}"
    );
    // The ingress forwards the browser's cookie with its check: allowed, as alice.
    let session = cookies
        .iter()
        .filter_map(|c| c.split(';').next()?.strip_prefix("gatehouse_session="))
        .find(|v| !v.is_empty())
        .unwrap();
    let r = browser
        .get(verify_url(&gw))
        .header("x-original-url", &original)
        .header("cookie", format!("gatehouse_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-user"], "alice");
    assert_eq!(r.headers()["x-auth-scopes"], "READ WRITE");
    assert_eq!(r.headers()["x-auth-groups"], "staff wiki-editors");
    assert_eq!(
        r.headers()["x-auth-client-id"],
        "",
        "present, empty: nothing to copy"
    );

    // return_to on a host that is not allowed (or not https) lands on `/` of the gateway.
    for elsewhere in [
        "https://evil.localhost:8443/app/page".to_string(),
        format!("https://{APP_HOST}:9443/app/page"),
        format!("http://{APP_HOST}:{app_port}/app/page"),
        format!("https://{APP_HOST}:{app_port}@evil.localhost/"),
    ] {
        let r = login_support::login(&gw, &browser, "alice", ALICE_PASSWORD, &elsewhere).await;
        assert_eq!(r.status(), 303);
        assert_eq!(login_support::location(&r), "/", "{elsewhere}");
    }
}

#[tokio::test]
async fn a_forward_auth_only_route_proxies_nothing() {
    let gw = gateway(8443).await;
    let (pat, _) = tokens::pat(&gw.gateway, "root", "ADMIN").await;
    let client = support::browser(&gw, gw.public, None);
    for path in ["/admin/users", "/app/page", "/public/x"] {
        let r = client
            .get(format!("https://{GW_HOST}:{}{path}", gw.public.port()))
            .bearer_auth(&pat)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}

/// One table of path tricks (SECURITY.md "Paths and routing"): each is sent as a proxied
/// request and as a forward-auth check (nginx's header and Envoy's path), without a token,
/// with a READ token and with an ADMIN token, and every answer must be the same.
#[tokio::test]
async fn path_tricks_decide_the_same_on_verify_and_on_a_proxied_route() {
    let public = Upstream::start().await;
    let admin = Upstream::start().await;
    let config = format!(
        "{USERS}\n{}[[routes]]\npath = \"/rest/admin\"\nupstream = \"http://{}\"\nauth = \"bearer\"\nscope = \"ADMIN\"\n",
        open_route("/", public.addr, ""),
        admin.addr
    );
    let gw = TestGateway::start("trusted_proxies = [\"127.0.0.1/32\"]", &config).await;
    let (read, _) = tokens::pat(&gw.gateway, "root", "READ").await;
    let (full, _) = tokens::pat(&gw.gateway, "root", "ADMIN").await;
    // (path, no token, READ, ADMIN)
    let table: &[(&str, u16, u16, u16)] = &[
        ("/rest/admin/x", 401, 403, 200),
        ("/;/rest/admin/x", 401, 403, 200),
        ("/;x/rest/admin/x", 401, 403, 200),
        ("/rest/;/admin/x", 401, 403, 200),
        ("/rest;a/admin;b/x", 401, 403, 200),
        ("//rest//admin/x", 401, 403, 200),
        ("/rest/%61dmin/x", 401, 403, 200),
        ("/public/../rest/admin/x", 401, 403, 200),
        ("/rest/./admin/x", 401, 403, 200),
        ("/public/%2e%2e/rest/admin/x", 401, 403, 200),
        ("/rest/admin%2Fx", 400, 400, 400),
        ("/rest%2Fadmin/x", 400, 400, 400),
        ("/rest%2fadmin/x", 400, 400, 400),
        ("/rest/api/..;/admin/x", 400, 400, 400),
        ("/rest/.;x/admin/x", 400, 400, 400),
        ("/../rest/admin/x", 400, 400, 400),
        ("/%2e%2e/rest/admin/x", 400, 400, 400),
        ("/rest%5Cadmin/x", 400, 400, 400),
        ("/rest/admin%00/x", 400, 400, 400),
        ("/rest/adminx", 200, 200, 200),
        ("/rest/admin/../adminx", 200, 200, 200),
        ("/public/x", 200, 200, 200),
    ];
    let status = |answer: &str| -> u16 {
        answer
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {answer:?}"))
    };
    let mut failures = Vec::new();
    for (path, none, with_read, with_admin) in table {
        for (token, want) in [
            (None, none),
            (Some(&read), with_read),
            (Some(&full), with_admin),
        ] {
            let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
            let ways = [
                (
                    "proxied",
                    format!(
                        "GET {path} HTTP/1.1\r\nhost: localhost\r\n{auth}connection: close\r\n\r\n"
                    ),
                ),
                (
                    "X-Original-URL",
                    format!(
                        "GET /auth/verify HTTP/1.1\r\nhost: localhost\r\nx-original-url: https://localhost{path}\r\n{auth}connection: close\r\n\r\n"
                    ),
                ),
                (
                    "X-Forwarded-Uri",
                    format!(
                        "GET /auth/verify HTTP/1.1\r\nhost: localhost\r\nx-forwarded-uri: {path}\r\nx-forwarded-host: localhost\r\n{auth}connection: close\r\n\r\n"
                    ),
                ),
                (
                    "Envoy path",
                    format!(
                        "GET /auth/verify{path} HTTP/1.1\r\nhost: localhost\r\n{auth}connection: close\r\n\r\n"
                    ),
                ),
            ];
            for (way, request) in ways {
                let answer = gw.raw(request.as_bytes(), 5 * SECOND).await;
                let got = status(&answer);
                if got != *want {
                    failures.push(format!(
                        "{path} via {way} with {}: want {want}, got {got}",
                        token.map_or("no token", |_| "a token")
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The proxied ADMIN requests reached the admin upstream on the canonical path only.
    assert!(
        admin
            .records
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.uri == "/rest/admin/x"),
        "the admin upstream saw another path"
    );
}
