//! The forwarding path end to end: protocols, routing, path normalization, header rewriting,
//! upstream failures, WebSockets, metrics, readiness and the redirect listener.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::harness::upstream::{self, Upstream};
use crate::helpers::harness::{TestGateway, metric_value, open_route};

#[tokio::test]
async fn serves_http2_and_http11_over_tls() {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &open_route("/", up.addr, "")).await;
    let h2 = gw.client(false).get(gw.url("/hello")).send().await.unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(h2.status(), 200);
    let h1 = gw.client(true).get(gw.url("/hello")).send().await.unwrap();
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.status(), 200);
    assert_eq!(up.count(), 2);
    assert_eq!(up.last().uri, "/hello");
}

#[tokio::test]
async fn routes_by_longest_whole_segment_prefix_and_host() {
    let api = Upstream::start().await;
    let rest = Upstream::start().await;
    let wiki = Upstream::start().await;
    let routes = format!(
        "{}{}{}",
        open_route("/rest/api", api.addr, ""),
        open_route("/rest", rest.addr, ""),
        open_route("/rest/api", wiki.addr, "host = \"wiki.localhost\""),
    );
    let gw = TestGateway::start("", &routes).await;
    let c = gw.client(true);
    c.get(gw.url("/rest/api/content?limit=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.last().uri, "/rest/api/content?limit=5");
    c.get(gw.url("/rest/apix")).send().await.unwrap();
    assert_eq!(rest.last().uri, "/rest/apix");
    assert_eq!(api.count(), 1);
    let r = c.get(gw.url("/other")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    c.get(gw.url("/rest/api/x"))
        .header("host", "WIKI.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(wiki.count(), 1, "host-specific route wins");
}

#[tokio::test]
async fn dangerous_paths_are_refused_and_the_upstream_sees_the_normalized_one() {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &open_route("/rest/api", up.addr, "")).await;
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    for bad in [
        "/rest/api%2Fx",
        "/rest/api%2fx",
        "/rest/api/%5C..",
        "/rest/api/a%00b",
        "/rest/api/../../../etc/passwd",
        "/rest/api/..;/admin",
        "/rest/api/%2e%2e/%2e%2e/%2e%2e/x",
    ] {
        let answer = gw.raw(get(bad).as_bytes(), Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad}: {answer}");
        assert!(answer.contains("invalid_argument"), "{bad}: {answer}");
    }
    assert_eq!(up.count(), 0, "no dangerous path reached the upstream");

    let answer = gw
        .raw(
            get("/rest/x/../api/./%63ontent//12?a=%2F").as_bytes(),
            Duration::from_secs(5),
        )
        .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(up.last().uri, "/rest/api/content/12?a=%2F");

    let answer = gw
        .raw(get("/rest/apix").as_bytes(), Duration::from_secs(5))
        .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let answer = gw
        .raw(get("/rest/api/../apix").as_bytes(), Duration::from_secs(5))
        .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}

#[tokio::test]
async fn forwarding_headers_are_replaced_and_hop_by_hop_headers_dropped() {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &open_route("/", up.addr, "")).await;
    let r = gw
        .client(true)
        .get(gw.url("/h"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "http")
        .header("forwarded", "for=6.6.6.6")
        .header("x-auth-user", "admin")
        .header("x_auth_user", "admin")
        .header("x-auth-scopes", "SYSTEM_ADMIN")
        .header("connection", "X-Request-Id, x-drop-me")
        .header("x-request-id", "client-chosen")
        .header("x-drop-me", "1")
        .header("te", "trailers")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last().headers;
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(
        seen["x-forwarded-host"],
        format!("localhost:{}", gw.public.port())
    );
    for gone in [
        "forwarded",
        "x-auth-user",
        "x_auth_user",
        "x-auth-scopes",
        "x-drop-me",
        "te",
        "connection",
    ] {
        assert!(seen.get(gone).is_none(), "{gone} reached the upstream");
    }
    let upstream_id = seen["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(
        upstream_id, "client-chosen",
        "a request id named in Connection is not kept"
    );
    assert_eq!(upstream_id.len(), 36);
    assert_eq!(
        r.headers()["x-request-id"].to_str().unwrap(),
        upstream_id,
        "the id is echoed"
    );
    assert!(
        r.headers().get("x-upstream-private").is_none(),
        "upstream's Connection-named header dropped"
    );
    assert_eq!(r.headers()["x-upstream"], "yes");

    let r = gw
        .client(true)
        .get(gw.url("/h"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    assert_eq!(up.last().headers["x-request-id"], "abc-123");
}

#[tokio::test]
async fn trusted_proxies_keep_and_extend_forwarding_headers() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        "trusted_proxies = [\"127.0.0.0/8\"]",
        &open_route("/", up.addr, ""),
    )
    .await;
    gw.client(true)
        .get(gw.url("/h"))
        .header("x-forwarded-for", "198.51.100.4")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "public.example")
        .send()
        .await
        .unwrap();
    let seen = up.last().headers;
    assert_eq!(seen["x-forwarded-for"], "198.51.100.4, 127.0.0.1");
    assert_eq!(seen["x-forwarded-host"], "public.example");
}

#[tokio::test]
async fn dead_upstream_is_502_and_stalled_upstream_is_504() {
    let dead = upstream::dead_address().await;
    let hole = upstream::black_hole().await;
    let routes = format!(
        "{}{}",
        open_route("/dead", dead, ""),
        open_route("/stalled", hole, "timeout = \"300ms\"")
    );
    let gw = TestGateway::start("", &routes).await;
    let c = gw.client(true);
    let r = c.get(gw.url("/dead")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers().contains_key("x-request-id"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_gateway");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no internal detail: {body}"
    );
    let started = std::time::Instant::now();
    let r = c.get(gw.url("/stalled")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "gateway_timeout");
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_upstream_errors_total{kind=\"connect\",route=\"/dead\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_upstream_errors_total{kind=\"timeout\",route=\"/stalled\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_route_ca() {
    let gw_probe = crate::helpers::harness::ConfigDir::new();
    let up = Upstream::start_with_tls(Some(gw_probe.pki.upstream_tls())).await;
    std::fs::write(gw_probe.dir.path().join("up-ca.pem"), &gw_probe.pki.ca_pem).unwrap();
    let ca_path = gw_probe.dir.path().join("up-ca.pem");
    let trusted = format!(
        "[[routes]]\npath = \"/good\"\nupstream = \"https://localhost:{}\"\nauth = \"none\"\nupstream_ca = \"{}\"\n",
        up.addr.port(),
        ca_path.display()
    );
    let untrusted = format!(
        "[[routes]]\npath = \"/bad\"\nupstream = \"https://localhost:{}\"\nauth = \"none\"\n",
        up.addr.port()
    );
    let gw = TestGateway::start("", &format!("{trusted}{untrusted}")).await;
    let c = gw.client(true);
    assert_eq!(c.get(gw.url("/good/x")).send().await.unwrap().status(), 200);
    assert_eq!(up.last().uri, "/good/x");
    assert_eq!(
        c.get(gw.url("/bad/x")).send().await.unwrap().status(),
        502,
        "a certificate from an unknown CA is refused"
    );
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let ws = upstream::websocket_echo().await;
    let gw = TestGateway::start("", &open_route("/ws", ws, "")).await;
    let tls = gw.dir.pki.tls_connect(gw.public).await;
    let url = format!("wss://localhost:{}/ws/echo", gw.public.port());
    let (mut socket, response) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(response.status(), 101);
    socket
        .send(Message::text("hello through the gateway"))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        echoed.into_text().unwrap().as_str(),
        "hello through the gateway"
    );
    socket.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_data().as_ref(), &[1u8, 2, 3]);
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &open_route("/rest", up.addr, "")).await;
    let c = gw.client(true);
    for _ in 0..3 {
        c.get(gw.url("/rest/x")).send().await.unwrap();
    }
    c.get(gw.url("/nowhere")).send().await.unwrap();
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_http_requests_total{method=\"GET\",route=\"/rest\",status=\"200\"}"
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_http_requests_total{method=\"GET\",route=\"none\",status=\"404\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_http_request_duration_seconds_count{route=\"/rest\"}"
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_upstream_request_duration_seconds_count{route=\"/rest\"}"
        ),
        Some(3.0),
        "{m}"
    );
    assert!(m.contains("gatehouse_build_info{version=\""), "{m}");
    assert!(
        m.contains("gatehouse_connections_active{listener=\"https\"}"),
        "{m}"
    );
    assert!(m.contains("process_resident_memory_bytes"), "{m}");
    assert!(!m.contains("/nowhere"), "raw paths never become labels");
    let health = reqwest::get(format!("http://{}/healthz", gw.admin))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("http://{}/readyz", gw.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let public_metrics = c.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(
        public_metrics.status(),
        404,
        "metrics are never on the public listener"
    );
}

#[tokio::test]
async fn not_ready_before_serving() {
    let dir = crate::helpers::harness::ConfigDir::new();
    let path = dir.write("", "");
    let app = gatehouse::App::build(gatehouse::config::Config::load(&path).unwrap())
        .await
        .unwrap();
    assert!(app.gateway().readiness().await.is_err());
}

#[tokio::test]
async fn not_ready_when_the_store_stops_answering() {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &open_route("/", up.addr, "")).await;
    let ready = reqwest::get(format!("http://{}/readyz", gw.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    gw.gateway.store.close().await;
    let ready = reqwest::get(format!("http://{}/readyz", gw.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("store"));
}

#[tokio::test]
async fn plain_redirect_listener_answers_308_to_the_public_url() {
    let gw = TestGateway::start("http_redirect_listen = \"127.0.0.1:0\"", "").await;
    let redirect = gw.redirect.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(format!("http://{redirect}/rest/api/x?y=1"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "https://localhost/rest/api/x?y=1");
}

#[tokio::test]
async fn plain_listener_serves_behind_a_tls_terminating_balancer() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        "plain_listen = \"127.0.0.1:0\"",
        &open_route("/", up.addr, ""),
    )
    .await;
    let plain = gw.plain.unwrap();
    let r = reqwest::get(format!("http://{plain}/p")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().headers["x-forwarded-proto"], "http");
    let m = gw.metrics().await;
    assert!(
        m.contains("gatehouse_connections_active{listener=\"http\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn in_process_shutdown_drains_a_slow_request() {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &open_route("/", up.addr, "")).await;
    let client = gw.client(false);
    let url = gw.url("/slow?ms=700");
    let in_flight =
        tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() });
    crate::helpers::harness::poll_until(Duration::from_secs(5), || async { up.count() == 1 }).await;
    gw.shutdown().await;
    assert_eq!(
        in_flight.await.unwrap(),
        "slow done",
        "the HTTP/2 request finished during the drain"
    );
}
