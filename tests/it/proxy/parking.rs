//! Idle HTTP/1.1 connections over TLS are parked without their HTTP buffers and rebuilt when
//! the client sends again (docs/performance-notes.md; SECURITY.md "Request smuggling and
//! desync"): a parked connection answers what comes next, in order, whether it came whole,
//! pipelined at the park moment or split across it; a response still streaming, or a request
//! whose body may still be read, is never parked; a parked connection still closes on
//! `idle_timeout` and on the drain, with TLS's close_notify, and counts as open meanwhile.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{TestGateway, metric_value, open_route, poll_until};

const SECOND: Duration = Duration::from_secs(1);

/// Longer than the gateway's park delay (one second after the last response, looked at
/// within a second more).
const PAST_PARK: Duration = Duration::from_millis(2600);

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n")
}

fn parked(gw: &TestGateway) -> i64 {
    gw.gateway.metrics.connections_parked.get()
}

fn open(metrics: &str) -> f64 {
    metric_value(metrics, "gatehouse_connections_active{listener=\"https\"}").unwrap_or(-1.0)
}

/// Reads until the echo of each of `paths` has arrived, and returns what came.
async fn answers(stream: &mut Tls, paths: &[&str]) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + 10 * SECOND;
    let last = format!("\"uri\":\"{}\"", paths.last().unwrap());
    while String::from_utf8_lossy(&out).matches("HTTP/1.1 ").count() < paths.len()
        || !String::from_utf8_lossy(&out).contains(&last)
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            other => panic!(
                "waiting for {paths:?}: {other:?} after {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every answer is a 200 echoing its request, in the order asked.
fn assert_in_order(got: &str, paths: &[&str]) {
    assert_eq!(got.matches("HTTP/1.1 200").count(), paths.len(), "{got}");
    let mut from = 0;
    for path in paths {
        let marker = format!("\"uri\":\"{path}\"");
        let at = got[from..]
            .find(&marker)
            .unwrap_or_else(|| panic!("{path} missing or out of order in {got}"));
        from += at + marker.len();
    }
}

async fn wait_parked(gw: &TestGateway, n: i64) {
    poll_until(5 * SECOND, || async { parked(gw) == n }).await;
}

/// Reads to the end: `true` if the gateway closed with TLS's close_notify.
async fn closed_cleanly(stream: &mut Tls, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return true,
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

async fn gateway(server_extra: &str) -> (TestGateway, Upstream) {
    let up = Upstream::start().await;
    let gw = TestGateway::start(server_extra, &open_route("/", up.addr, "")).await;
    (gw, up)
}

#[tokio::test]
async fn a_parked_connection_answers_what_comes_next_in_order_and_stays_counted() {
    let (gw, _up) = gateway("").await;
    let mut s = gw.dir.pki.tls_connect(gw.public).await;
    s.write_all(get("/one").as_bytes()).await.unwrap();
    assert_in_order(&answers(&mut s, &["/one"]).await, &["/one"]);
    wait_parked(&gw, 1).await;
    let metrics = gw.metrics().await;
    assert_eq!(open(&metrics), 1.0, "a parked connection is open");
    assert_eq!(
        metric_value(&metrics, "gatehouse_connections_parked "),
        Some(1.0)
    );
    // A single request, then three pipelined in one write, each after a park.
    s.write_all(get("/two").as_bytes()).await.unwrap();
    assert_in_order(&answers(&mut s, &["/two"]).await, &["/two"]);
    wait_parked(&gw, 1).await;
    let three = format!("{}{}{}", get("/a"), get("/b"), get("/c"));
    s.write_all(three.as_bytes()).await.unwrap();
    assert_in_order(
        &answers(&mut s, &["/a", "/b", "/c"]).await,
        &["/a", "/b", "/c"],
    );
    wait_parked(&gw, 1).await;
    drop(s);
    poll_until(5 * SECOND, || async {
        parked(&gw) == 0 && open(&gw.metrics().await) == 0.0
    })
    .await;
}

/// Pipelined requests sent around the moment the connection parks (several connections, each
/// a little later than the last) get all their answers, in order.
#[tokio::test]
async fn requests_pipelined_at_the_park_moment_are_answered_in_order() {
    let (gw, _up) = gateway("").await;
    let mut clients = Vec::new();
    for i in 0..12u64 {
        let (pki, addr) = (gw.dir.pki.clone(), gw.public);
        clients.push(tokio::spawn(async move {
            let mut s = pki.tls_connect(addr).await;
            s.write_all(get("/first").as_bytes()).await.unwrap();
            answers(&mut s, &["/first"]).await;
            tokio::time::sleep(Duration::from_millis(900 + 100 * i)).await;
            let (x, y) = (format!("/x{i}"), format!("/y{i}"));
            s.write_all(format!("{}{}", get(&x), get(&y)).as_bytes())
                .await
                .unwrap();
            assert_in_order(&answers(&mut s, &[&x, &y]).await, &[&x, &y]);
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
}

/// A request head that is still arriving is not idle: split across the park delay, it is
/// served whole. Bytes of a next head that came with a request are kept across a park too.
#[tokio::test]
async fn a_head_split_across_the_park_delay_is_served_whole() {
    let (gw, _up) = gateway("header_read_timeout = \"10s\"").await;
    let mut s = gw.dir.pki.tls_connect(gw.public).await;
    s.write_all(get("/one").as_bytes()).await.unwrap();
    answers(&mut s, &["/one"]).await;
    s.write_all(b"GET /split HTTP/1.1\r\nhost: loc")
        .await
        .unwrap();
    tokio::time::sleep(PAST_PARK).await;
    assert_eq!(parked(&gw), 0, "parked with a head half received");
    s.write_all(b"alhost\r\n\r\n").await.unwrap();
    assert_in_order(&answers(&mut s, &["/split"]).await, &["/split"]);

    // A request and the start of the next in one write; the rest after the park delay.
    s.write_all(format!("{}GET /rest HT", get("/whole")).as_bytes())
        .await
        .unwrap();
    let first = answers(&mut s, &["/whole"]).await;
    assert_in_order(&first, &["/whole"]);
    tokio::time::sleep(PAST_PARK).await;
    s.write_all(b"TP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_in_order(&answers(&mut s, &["/rest"]).await, &["/rest"]);
}

/// An upstream that answers with a chunked body in two parts, `pause` apart.
async fn pausing_upstream(pause: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = stream
                    .write_all(format!("{head}6\r\nfirst-\r\n").as_bytes())
                    .await;
                tokio::time::sleep(pause).await;
                let _ = stream.write_all(b"4\r\nlast\r\n0\r\n\r\n").await;
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_response_still_streaming_is_not_parked() {
    let slow = pausing_upstream(PAST_PARK + SECOND).await;
    let gw = TestGateway::start("", &open_route("/", slow, "")).await;
    let mut s = gw.dir.pki.tls_connect(gw.public).await;
    s.write_all(get("/stream").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains("first-") {
        let n = tokio::time::timeout(5 * SECOND, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        out.extend_from_slice(&buf[..n]);
    }
    tokio::time::sleep(PAST_PARK).await;
    assert_eq!(parked(&gw), 0, "parked in the middle of a response");
    while !String::from_utf8_lossy(&out).ends_with("0\r\n\r\n") {
        let n = tokio::time::timeout(5 * SECOND, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&out).contains("last"));
    // Once it has ended, the connection parks.
    wait_parked(&gw, 1).await;
}

/// After a request with a body hyper may still be reading that body when the response has
/// ended: such a connection is not parked, until a request without a body follows.
#[tokio::test]
async fn a_connection_whose_last_request_had_a_body_is_not_parked() {
    let (gw, _up) = gateway("").await;
    let mut s = gw.dir.pki.tls_connect(gw.public).await;
    let post = "POST /form HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\n\r\nhello";
    s.write_all(post.as_bytes()).await.unwrap();
    answers(&mut s, &["/form"]).await;
    tokio::time::sleep(PAST_PARK).await;
    assert_eq!(parked(&gw), 0);
    s.write_all(get("/after").as_bytes()).await.unwrap();
    answers(&mut s, &["/after"]).await;
    wait_parked(&gw, 1).await;
}

#[tokio::test]
async fn a_parked_connection_closes_on_idle_timeout_with_close_notify() {
    let (gw, _up) = gateway("idle_timeout = \"4s\"").await;
    let mut s = gw.dir.pki.tls_connect(gw.public).await;
    s.write_all(get("/one").as_bytes()).await.unwrap();
    answers(&mut s, &["/one"]).await;
    let answered = Instant::now();
    wait_parked(&gw, 1).await;
    assert!(closed_cleanly(&mut s, 10 * SECOND).await, "no close_notify");
    let waited = answered.elapsed();
    assert!(
        waited >= Duration::from_millis(3500) && waited < 8 * SECOND,
        "closed after {waited:?}"
    );
    poll_until(5 * SECOND, || async {
        parked(&gw) == 0 && open(&gw.metrics().await) == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_parked_connection_closes_on_the_drain_with_close_notify() {
    let (gw, _up) = gateway("shutdown_grace = \"30s\"").await;
    let mut s = gw.dir.pki.tls_connect(gw.public).await;
    s.write_all(get("/one").as_bytes()).await.unwrap();
    answers(&mut s, &["/one"]).await;
    wait_parked(&gw, 1).await;
    let started = Instant::now();
    let reader = tokio::spawn(async move { closed_cleanly(&mut s, 10 * SECOND).await });
    tokio::time::timeout(10 * SECOND, gw.shutdown())
        .await
        .expect("the drain waited on a parked connection");
    assert!(reader.await.unwrap(), "no close_notify");
    assert!(started.elapsed() < 5 * SECOND);
}
