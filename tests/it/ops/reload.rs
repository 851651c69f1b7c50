//! SIGHUP reload of the real binary: a changed route takes effect while a long request on an
//! existing connection completes; a broken config changes nothing.

use std::time::Duration;

use crate::helpers::harness::process::GatewayProcess;
use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{ConfigDir, open_route, poll_until};

#[tokio::test]
async fn sighup_swaps_routes_without_dropping_connections_and_refuses_broken_configs() {
    let old = Upstream::start().await;
    let new = Upstream::start().await;
    let dir = ConfigDir::new();
    let path = dir.write("", &open_route("/app", old.addr, ""));
    let gw = GatewayProcess::start(&path);
    let client = dir.pki.client(gw.public, true);
    let url = |p: &str| format!("https://localhost:{}{p}", gw.public.port());

    let slow = tokio::spawn({
        let (client, url) = (client.clone(), url("/app/slow?ms=1500"));
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    });
    poll_until(Duration::from_secs(5), || async { old.count() == 1 }).await;

    dir.write(
        "",
        &format!(
            "{}{}",
            open_route("/app", new.addr, ""),
            open_route("/extra", new.addr, "")
        ),
    );
    gw.signal("HUP");
    poll_until(Duration::from_secs(10), || async {
        client
            .get(url("/extra/x"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    client.get(url("/app/after")).send().await.unwrap();
    assert_eq!(
        new.last().uri,
        "/app/after",
        "the changed route took effect"
    );
    assert_eq!(
        slow.await.unwrap(),
        "slow done",
        "the request in flight during the reload completed"
    );
    assert_eq!(old.count(), 1);

    std::fs::write(&path, "[server]\nlisten = \n").unwrap();
    gw.signal("HUP");
    poll_until(Duration::from_secs(10), || async {
        gw.log_lines()
            .iter()
            .any(|l| l.contains("config reload refused"))
    })
    .await;
    assert!(
        gw.log_lines().iter().any(|l| l.contains("TOML syntax")),
        "the errors are logged"
    );
    let r = client.get(url("/extra/y")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the running config is unchanged");
    assert_eq!(new.last().uri, "/extra/y");
}

/// The token-cache misses so far.
async fn cache_misses(fx: &crate::helpers::oauth_fixture::Fx) -> f64 {
    crate::helpers::harness::metric_value(
        &fx.gw.metrics().await,
        "gatehouse_token_cache_requests_total{result=\"miss\"}",
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_reload_changes_token_lifetimes_and_the_cache_ttl_for_the_next_request() {
    use crate::helpers::oauth_fixture::Fx;
    let fx = Fx::start("access_token_ttl = \"2h\"\n[auth]\ncache_ttl = \"30s\"").await;
    let before = fx.tokens("READ").await;
    assert_eq!(before.json()["expires_in"], 7200);

    // The same reload SIGHUP runs, with new oauth.* and auth.* values.
    let path = fx.gw.dir.dir.path().join("gatehouse.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text
        .replace("access_token_ttl = \"2h\"", "access_token_ttl = \"5m\"")
        .replace("cache_ttl = \"30s\"", "cache_ttl = \"300ms\"");
    assert_ne!(text, changed);
    std::fs::write(&path, changed).unwrap();
    fx.gateway().reload(&path).unwrap();

    let after = fx.tokens("READ").await;
    assert_eq!(
        after.json()["expires_in"],
        300,
        "the next token follows the new TTL"
    );
    let claims = crate::helpers::oauth_fixture::claims(&after.field("access_token"));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );

    // The cache keeps a validation for the new auth.cache_ttl (300 ms), not the old 30 s:
    // moka's expiry runs on real time, so this waits a little over it.
    let token = after.field("access_token");
    let misses = cache_misses(&fx).await;
    assert_eq!(fx.proxied(&token).await, 200);
    assert_eq!(fx.proxied(&token).await, 200);
    assert_eq!(
        cache_misses(&fx).await,
        misses + 1.0,
        "the second was a hit"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(fx.proxied(&token).await, 200);
    assert_eq!(
        cache_misses(&fx).await,
        misses + 2.0,
        "the entry expired after the new cache_ttl"
    );
}
