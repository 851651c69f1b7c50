//! The admin endpoints answer within 1 s whatever the store does (SPEC §4: Kubernetes' default
//! probe timeout): with PostgreSQL paused (SIGSTOP on the postmaster and its backends, so
//! every connection hangs rather than fails), `/readyz` answers 503 in time, `/healthz` and
//! `/metrics` answer too, and `/readyz` is 200 again once the server is back, without a
//! restart.

use std::time::{Duration, Instant};

use crate::helpers::harness::{TestGateway, poll_until};
use crate::helpers::support::pg;

/// Wakes and stops the test's own cluster, even when an assertion fails.
struct OwnCluster(pg::Cluster);

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The status of `GET http://admin/path` and how long it took (a hung answer fails at 5 s).
async fn timed(
    client: &reqwest::Client,
    admin: std::net::SocketAddr,
    path: &str,
) -> (u16, Duration) {
    let started = Instant::now();
    let status = client
        .get(format!("http://{admin}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .status()
        .as_u16();
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_within_a_second_while_postgresql_hangs_and_200_after() {
    let cluster = match tokio::task::spawn_blocking(pg::private_cluster)
        .await
        .unwrap()
    {
        Ok(cluster) => OwnCluster(cluster),
        Err(why) if pg::required() => panic!("GATEHOUSE_REQUIRE_PG=1 but: {why}"),
        Err(why) => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "note: skipping the readiness test: {why}"
            );
            return;
        }
    };
    let url = cluster.0.create_database().await;
    let gw = TestGateway::start("", &format!("[store]\nurl = \"{url}\"\n")).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert_eq!(timed(&client, gw.admin, "/readyz").await.0, 200);

    cluster.0.signal_all("STOP");
    for _ in 0..3 {
        let (status, took) = timed(&client, gw.admin, "/readyz").await;
        assert_eq!(status, 503, "the store hangs");
        assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
    }
    for path in ["/healthz", "/metrics"] {
        let (status, took) = timed(&client, gw.admin, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
    }

    cluster.0.signal_all("CONT");
    poll_until(Duration::from_secs(15), || async {
        timed(&client, gw.admin, "/readyz").await.0 == 200
    })
    .await;
}
