//! Rough costs of the management API over real HTTPS with a SQLite store (run on demand:
//! `cargo test --test it apps::measure -- --ignored --nocapture`): creating apps, paging
//! through them, and a small list on a reused connection. Prints the numbers; asserts only
//! that every call succeeded and the pages add up.

use std::time::Instant;

use crate::apps::api::{app_body, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run on demand"]
async fn management_api_costs() {
    let api = start("").await;
    let client = api.gw.client(false);
    let create_url = api.gw.url("/v1/oauthApps");
    let body = serde_json::to_vec(&app_body("measured")).unwrap();
    let t = Instant::now();
    for _ in 0..1000 {
        let r = client
            .post(&create_url)
            .bearer_auth(&api.admin)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.bytes().await.unwrap();
    }
    let create = t.elapsed() / 1000;

    let t = Instant::now();
    let (mut token, mut n) = (String::new(), 0);
    loop {
        let path = format!("/v1/oauthApps?pageSize=500&pageToken={token}");
        let (status, page) = api.call("GET", &path, None).await;
        assert_eq!(status, 200);
        n += page["oauthApps"].as_array().unwrap().len();
        token = page["nextPageToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(n, 1000);
    let pages = t.elapsed();

    let small_url = api.gw.url("/v1/oauthApps?pageSize=1");
    let t = Instant::now();
    for _ in 0..200 {
        let r = client
            .get(&small_url)
            .bearer_auth(&api.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let small = t.elapsed() / 200;
    println!(
        "management API: create {create:?}/app; 1000 apps in two 500-app pages {pages:?}; \
         pageSize=1 list {small:?}/call"
    );
}
