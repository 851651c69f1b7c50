//! Throttles shared by replicas through PostgreSQL (SPEC §3.2): failed logins on one replica
//! ban the user name and the client address on the other, and so do failed client
//! authentications at the token endpoint. With SQLite the throttles stay in memory (one
//! process), which the in-memory tests of `auth::throttle` cover.

use crate::helpers::harness::{ConfigDir, TestGateway};
use crate::helpers::login_support::{
    ALICE_PASSWORD, ROOT_PASSWORD, browser, create_app, login, users,
};

/// The secret `create_app` gives its apps.
const SECRET: &str = "a-client-secret-of-enough-length";

/// Two replicas on one fresh PostgreSQL database with `extra` config, or `None` (skipped).
async fn replicas(what: &str, extra: &str) -> Option<(TestGateway, TestGateway)> {
    let db = crate::helpers::support::TestDb::postgres(what).await?;
    let config = format!("[store]\nurl = \"{}\"\n{extra}\n{}", db.url, users());
    let first = ConfigDir::new();
    let second = ConfigDir::sharing_keys_with(&first);
    let one = TestGateway::start_in(first, "", &config).await;
    let two = TestGateway::start_in(second, "", &config).await;
    Some((one, two))
}

#[tokio::test]
async fn failed_logins_on_one_replica_ban_on_the_other() {
    let extra = "[login]\nmax_failures = 2\nwindow = \"5m\"\nban = \"15m\"\n";
    let Some((one, two)) = replicas("shared login throttle", extra).await else {
        return;
    };
    let (client_one, _) = browser(&one);
    let (client_two, _) = browser(&two);
    // Replica two lets root in before anything failed.
    let r = login(&two, &client_two, "root", ROOT_PASSWORD, "").await;
    assert_eq!(r.status(), 303, "root signs in on replica two");

    for _ in 0..2 {
        let r = login(&one, &client_one, "alice", "wrong password", "").await;
        assert_eq!(r.status(), 401, "a failure on replica one");
    }
    // The right password, on the other replica: the name is banned there too.
    let r = login(&two, &client_two, "alice", ALICE_PASSWORD, "").await;
    assert_eq!(r.status(), 429, "alice is banned on replica two");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((800..=900).contains(&retry), "Retry-After {retry}");
    // And so is the client address, whatever the name.
    let r = login(&two, &client_two, "root", ROOT_PASSWORD, "").await;
    assert_eq!(r.status(), 429, "the address is banned on replica two");
}

#[tokio::test]
async fn failed_client_authentications_on_one_replica_ban_on_the_other() {
    let Some((one, two)) = replicas("shared client throttle", "").await else {
        return;
    };
    create_app(&one, "shared-app", |_| {}).await;
    let token = |gw: &TestGateway, secret: &'static str| {
        let client = gw.client(true);
        let url = gw.url("/oauth2/token");
        async move {
            client
                .post(url)
                .basic_auth("shared-app", Some(secret))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", "no-such-code"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    // The right secret gets past client authentication on replica two (the code is bad).
    assert_eq!(token(&two, SECRET).await.status(), 400);
    for _ in 0..gatehouse::oauth::caches::MAX_CLIENT_FAILURES {
        let r = token(&one, "a-wrong-secret-of-enough-length").await;
        assert_eq!(
            r.status(),
            401,
            "a failed client authentication on replica one"
        );
    }
    let r = token(&two, SECRET).await;
    assert_eq!(
        r.status(),
        429,
        "throttled on replica two, right secret or not"
    );
    assert!(r.headers().contains_key("retry-after"));
    let body = r.text().await.unwrap();
    assert!(
        body.contains("too many failed client authentications"),
        "{body}"
    );
    // Whatever the grant: a refresh, or a request the grant would refuse before reading the
    // store, is throttled too (the right secret is never told apart from a wrong one).
    let grants: [&[(&str, &str)]; 3] = [
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "no-such-token"),
        ],
        &[("grant_type", "authorization_code")],
        &[("grant_type", "password")],
    ];
    for form in grants {
        let r = two
            .client(true)
            .post(two.url("/oauth2/token"))
            .basic_auth("shared-app", Some(SECRET))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{form:?} throttled on replica two");
    }
}
