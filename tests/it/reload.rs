//! SIGHUP reload of the real binary: a changed route takes effect while a long request on an
//! existing connection completes; a broken config changes nothing.

use std::time::Duration;

use crate::harness::process::GatewayProcess;
use crate::harness::upstream::Upstream;
use crate::harness::{ConfigDir, open_route, poll_until};

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
