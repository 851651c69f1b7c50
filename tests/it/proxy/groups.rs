//! Groups and per-route allow lists (SPEC §7.3): a config user's `groups` reach the upstream as
//! `X-Auth-Groups` (filtered by `auth.forward_groups`), `allow_groups` and `allow_users` admit
//! only whom they name after the scope check (403 `insufficient_scope` for bearer clients, a
//! 403 page for a browser session), and a client's own `X-Auth-Groups` never reaches the
//! upstream, in any spelling.

use std::time::Duration;

use crate::helpers::harness::TestGateway;
use crate::helpers::harness::tokens;
use crate::helpers::harness::upstream::Upstream;
use crate::proxy::auth::challenge;

const HOUR: Duration = Duration::from_secs(3600);

/// alice is in `wiki-editors` and `staff`; bob in `staff` only; carol in no group.
fn config(up: &Upstream, auth_extra: &str) -> String {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    format!(
        r#"
[auth]
{auth_extra}

[[users]]
name = "alice"
password_hash = "{hash}"
max_scope = "WRITE"
groups = ["wiki-editors", "staff"]

[[users]]
name = "bob"
password_hash = "{hash}"
max_scope = "WRITE"
groups = ["staff"]

[[users]]
name = "carol"
password_hash = "{hash}"
max_scope = "SYSTEM_ADMIN"

[[routes]]
path = "/rest/api"
upstream = "http://{a}"
scope = "READ"

[[routes]]
path = "/rest/edit"
upstream = "http://{a}"
scope = "READ"
allow_groups = ["wiki-editors"]

[[routes]]
path = "/rest/either"
upstream = "http://{a}"
scope = "READ"
allow_groups = ["wiki-editors"]
allow_users = ["bob"]

[[routes]]
path = "/rest/write"
upstream = "http://{a}"
scope = "WRITE"
allow_users = ["carol"]

[[routes]]
path = "/wiki"
upstream = "http://{a}"
auth = "session"
scope = "READ"
allow_groups = ["wiki-editors"]
"#,
        a = up.addr
    )
}

async fn get(gw: &TestGateway, path: &str, token: &str) -> reqwest::Response {
    gw.client(true)
        .get(gw.url(path))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn groups_reach_the_upstream_and_allow_lists_admit_only_whom_they_name() {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &config(&up, "")).await;
    let g = &gw.gateway;
    let alice = tokens::access_token(g, "app", "alice", "WRITE", HOUR).await;
    let (bob, _) = tokens::pat(g, "bob", "READ").await;
    let carol = tokens::access_token(g, "app", "carol", "READ", HOUR).await;

    let r = get(&gw, "/rest/api/x", &alice.token).await;
    assert_eq!(r.status(), 200);
    let seen = up.last().headers;
    assert_eq!(seen["x-auth-groups"], "wiki-editors staff");
    assert_eq!(seen["x-auth-user"], "alice");

    let r = get(&gw, "/rest/api/x", &carol.token).await;
    assert_eq!(r.status(), 200);
    assert!(
        !up.last().headers.contains_key("x-auth-groups"),
        "a user in no group gets no groups header"
    );

    // allow_groups: alice is in wiki-editors, bob is not.
    assert_eq!(get(&gw, "/rest/edit/1", &alice.token).await.status(), 200);
    let before = up.count();
    let r = get(&gw, "/rest/edit/1", &bob).await;
    assert_eq!(r.status(), 403);
    let c = challenge(&r);
    assert!(c.contains("error=\"insufficient_scope\""), "{c}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "permission_denied");
    assert_eq!(
        up.count(),
        before,
        "a refused request never reaches the upstream"
    );

    // Either list admits: alice by group, bob by name; carol by neither.
    assert_eq!(get(&gw, "/rest/either/1", &alice.token).await.status(), 200);
    assert_eq!(get(&gw, "/rest/either/1", &bob).await.status(), 200);
    assert_eq!(get(&gw, "/rest/either/1", &carol.token).await.status(), 403);

    // The scope is checked first: carol is listed but her token holds READ only.
    let r = get(&gw, "/rest/write/1", &carol.token).await;
    assert_eq!(r.status(), 403);
    assert!(
        challenge(&r).contains("scope=\"WRITE\""),
        "the scope refusal comes first"
    );
    let carol_write = tokens::access_token(g, "app", "carol", "WRITE", HOUR).await;
    assert_eq!(
        get(&gw, "/rest/write/1", &carol_write.token).await.status(),
        200
    );
    assert_eq!(get(&gw, "/rest/write/1", &alice.token).await.status(), 403);

    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(
            "gatehouse_auth_decisions_total{result=\"not_allowed\",route=\"/rest/edit\"} 1"
        ),
        "the refusal is counted under its own result:\n{metrics}"
    );
}

#[tokio::test]
async fn a_clients_own_groups_header_never_reaches_the_upstream() {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &config(&up, "")).await;
    let g = &gw.gateway;
    let carol = tokens::access_token(g, "app", "carol", "READ", HOUR).await;
    let bob = tokens::access_token(g, "app", "bob", "READ", HOUR).await;
    for forged in [
        "X-Auth-Groups",
        "x-auth-groups",
        "X_Auth_Groups",
        "x.auth.groups",
    ] {
        let r = gw
            .client(true)
            .get(gw.url("/rest/api/x"))
            .header("authorization", format!("Bearer {}", carol.token))
            .header(forged, "wiki-editors")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{forged}");
        let seen = up.last().headers;
        let leaked: Vec<_> = seen
            .keys()
            .filter(|k| k.as_str().replace(['_', '.'], "-") == "x-auth-groups")
            .collect();
        assert!(leaked.is_empty(), "{forged} reached the upstream: {seen:?}");
        // Nor does a forged header admit anyone to a group-only route.
        let r = gw
            .client(true)
            .get(gw.url("/rest/edit/x"))
            .header("authorization", format!("Bearer {}", bob.token))
            .header(forged, "wiki-editors")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{forged}");
    }
}

#[tokio::test]
async fn forward_groups_and_groups_header_choose_what_the_upstream_hears() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        "",
        &config(
            &up,
            "groups_header = \"X-Remote-Groups\"\nforward_groups = [\"staff\"]",
        ),
    )
    .await;
    let alice = tokens::access_token(&gw.gateway, "app", "alice", "READ", HOUR).await;
    assert_eq!(get(&gw, "/rest/api/x", &alice.token).await.status(), 200);
    let seen = up.last().headers;
    assert_eq!(seen["x-remote-groups"], "staff", "only the listed group");
    assert!(!seen.contains_key("x-auth-groups"));
    // The renamed header is an identity header: stripped when a client sends it.
    let r = gw
        .client(true)
        .get(gw.url("/rest/api/x"))
        .header("authorization", format!("Bearer {}", alice.token))
        .header("x-remote-groups", "root-admins")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().headers["x-remote-groups"], "staff");
}

#[tokio::test]
async fn a_browser_session_outside_the_allowed_groups_gets_a_403_page() {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &config(&up, "")).await;
    let g = &gw.gateway;
    for (user, status) in [("alice", 200), ("bob", 403)] {
        let cookie = tokens::session(g, user).await;
        let r = gw
            .client(true)
            .get(gw.url("/wiki/page"))
            .header("cookie", format!("gatehouse_session={cookie}"))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{user}");
        if status == 403 {
            let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
            assert!(ctype.starts_with("text/html"), "{ctype}");
            let page = r.text().await.unwrap();
            assert!(page.contains("Access denied"), "{page}");
        } else {
            assert_eq!(up.last().headers["x-auth-groups"], "wiki-editors staff");
        }
    }
}
