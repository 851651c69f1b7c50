//! The real ingresses in front, gatehouse beside them (SPEC §7.4): Debian's nginx with
//! `auth_request` and Debian's Caddy with `forward_auth`, each started on a free port with the
//! config of `deploy/`, talking to the gateway over TLS, proxying to a real upstream. Through
//! each: a bearer request reaches the upstream with the identity headers (and without the ones
//! a client made up), a missing token gets 401 with the challenge, too little scope 403, and a
//! browser is sent to the login page on the gateway's host and, signed in, back to the page it
//! asked for on the application's host.

use std::time::Duration;

use super::support::{self, APP_HOST, GW_HOST, Ingress};
use crate::helpers::harness::TestGateway;
use crate::helpers::harness::tokens;
use crate::helpers::harness::upstream::Upstream;
use crate::helpers::login_support::{self, ALICE_PASSWORD};

/// Which ingress, for messages and the few answers that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// nginx answers a browser's 401 with a 302 of its own (`error_page 401 = @login`).
    Nginx,
    /// Caddy asks with `?rd=1` and relays gatehouse's 302.
    Caddy,
}

/// Whether the upstream got no value for `name`: no such header, or (Caddy 2.6's
/// `copy_headers` sets every header it names, empty when gatehouse did not send it) one empty
/// value; never a value a client made up.
fn no_value(headers: &http::HeaderMap, name: &str) -> bool {
    let values: Vec<_> = headers.get_all(name).iter().collect();
    values.is_empty() || values == [""]
}

async fn through(kind: Kind, gw: &TestGateway, ingress: &Ingress, upstream: &Upstream) {
    let log = || ingress.log();
    let client = support::browser(gw, ingress.addr, None);

    // A bearer request (an app's token) reaches the upstream with the identity headers, and
    // the identity headers the client made up do not.
    let minted = tokens::access_token(
        &gw.gateway,
        "reports",
        "alice",
        "READ",
        Duration::from_secs(300),
    )
    .await;
    let r = client
        .get(ingress.url("/app/data?q=1"))
        .bearer_auth(&minted.token)
        .header("x-auth-user", "root")
        .header("x-auth-groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{kind:?}: {}", log());
    let seen = upstream.last();
    assert_eq!(seen.uri, "/app/data?q=1", "{kind:?}");
    let users: Vec<_> = seen.headers.get_all("x-auth-user").iter().collect();
    assert_eq!(users, ["alice"], "{kind:?}");
    assert_eq!(seen.headers["x-auth-scopes"], "READ", "{kind:?}");
    assert_eq!(seen.headers["x-auth-client-id"], "reports", "{kind:?}");
    let groups: Vec<_> = seen.headers.get_all("x-auth-groups").iter().collect();
    assert_eq!(groups, ["staff wiki-editors"], "{kind:?}");

    // A PAT has no client id: one a client sends does not reach the upstream.
    let (pat, _) = tokens::pat(&gw.gateway, "root", "ADMIN").await;
    let r = client
        .post(ingress.url("/admin/users"))
        .bearer_auth(&pat)
        .header("x-auth-client-id", "forged")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{kind:?}: {}", log());
    let seen = upstream.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.headers["x-auth-user"], "root", "{kind:?}");
    assert_eq!(
        seen.headers["x-auth-scopes"], "READ WRITE ADMIN",
        "{kind:?}"
    );
    assert!(no_value(&seen.headers, "x-auth-client-id"), "{kind:?}");
    assert!(no_value(&seen.headers, "x-auth-groups"), "{kind:?}");
    let before = upstream.count();

    // No token: 401 with the RFC 6750 challenge, through the ingress.
    let r = client
        .get(ingress.url("/admin/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{kind:?}");
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"gatehouse\"",
        "{kind:?}"
    );
    // A bad token: 401 invalid_token.
    let r = client
        .get(ingress.url("/admin/users"))
        .bearer_auth("gh_pat_not-a-real-one")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{kind:?}");
    // Too little scope: 403.
    let r = client
        .get(ingress.url("/admin/users"))
        .bearer_auth(&minted.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "{kind:?}");
    // A route for one group (SPEC §7.3): root (ADMIN, in no group) is refused, alice admitted.
    let r = client
        .get(ingress.url("/editors/x"))
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "{kind:?}");
    assert_eq!(
        upstream.count(),
        before,
        "{kind:?}: a refused request reached the upstream"
    );
    let r = client
        .get(ingress.url("/editors/x"))
        .bearer_auth(&minted.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{kind:?}");
    let before = upstream.count();

    // A public route needs nothing.
    let r = client.get(ingress.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{kind:?}");

    // A browser: sent to the login page on the gateway's host, then back to the page.
    let page = ingress.url("/app/page?x=1");
    let r = client
        .get(&page)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{kind:?}: {}", log());
    let login = login_support::location(&r);
    let want = format!(
        "https://{GW_HOST}:{}/login?return_to=https%3A//{APP_HOST}%3A{}/app/page%3Fx%3D1",
        gw.public.port(),
        ingress.addr.port()
    );
    assert_eq!(login, want, "{kind:?}");
    assert_eq!(upstream.count(), before + 1, "{kind:?}");
    let form = client.get(&login).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let csrf = login_support::hidden(&form.text().await.unwrap(), "csrf_token");
    let r = client
        .post(format!("https://{GW_HOST}:{}/login", gw.public.port()))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "alice"),
            ("password", ALICE_PASSWORD),
            ("return_to", page.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{kind:?}");
    assert_eq!(login_support::location(&r), page, "{kind:?}");
    // The session cookie (Domain=localhost) goes to the application's host too.
    let r = client
        .get(&page)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{kind:?}: {}", log());
    let seen = upstream.last();
    assert_eq!(seen.uri, "/app/page?x=1");
    assert_eq!(seen.headers["x-auth-user"], "alice", "{kind:?}");
    assert_eq!(seen.headers["x-auth-scopes"], "READ WRITE", "{kind:?}");
    assert_eq!(
        seen.headers["x-auth-groups"], "staff wiki-editors",
        "{kind:?}"
    );
    assert!(no_value(&seen.headers, "x-auth-client-id"), "{kind:?}");
}

#[tokio::test]
async fn nginx_auth_request_asks_gatehouse_over_tls() {
    let Some(binary) = support::ingress_binary("/usr/sbin/nginx", "nginx") else {
        return;
    };
    let app_port = support::free_port();
    let gw = support::gateway(support::free_port(), app_port, support::ROUTES).await;
    let upstream = Upstream::start().await;
    let nginx = support::nginx(&binary, app_port, &gw, &upstream);
    through(Kind::Nginx, &gw, &nginx, &upstream).await;
}

#[tokio::test]
async fn caddy_forward_auth_asks_gatehouse_over_tls() {
    let Some(binary) = support::ingress_binary("/usr/bin/caddy", "caddy") else {
        return;
    };
    let app_port = support::free_port();
    let gw = support::gateway(support::free_port(), app_port, support::ROUTES).await;
    let upstream = Upstream::start().await;
    let caddy = support::caddy(&binary, app_port, &gw, &upstream);
    through(Kind::Caddy, &gw, &caddy, &upstream).await;
}
