//! The upstream connection pool (RFC 9112 §9.3): connections are reused, one the upstream
//! closed while idle is not used, one whose response was abandoned mid-body is never reused
//! (its unread bytes would answer the next request), `Connection: close` is honoured, and the
//! upstream sees an origin-form target with its own `Host`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::harness::process::GatewayProcess;
use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{ConfigDir, TestGateway, open_route, poll_until};

/// What a scripted upstream does with each connection after answering its first request.
#[derive(Clone, Copy)]
enum Script {
    /// Answer every request on the connection, keep-alive.
    KeepAlive,
    /// Answer one request, then close the connection's write half (an upstream idle timeout)
    /// and wait for the gateway to close its end.
    CloseWhenIdle,
    /// Answer with `Connection: close` and close.
    ConnectionClose,
    /// Answer the first request on a connection with a chunked body that starts and never
    /// ends, then wait for the gateway to close the connection (or, wrongly, to send another
    /// request on it); answer later connections' requests normally.
    StallFirstBody,
    /// Answer as an HTTP/1.0 server and close.
    Http10,
}

/// A raw HTTP/1.1 upstream that follows `script`, counts the connections it accepts and those
/// the gateway closed while the script waited for it, and keeps every request head it reads.
struct Scripted {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    closed_by_gateway: Arc<AtomicUsize>,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Scripted {
    async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let closed_by_gateway = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, closed, seen) = (
            connections.clone(),
            closed_by_gateway.clone(),
            heads.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let shared = Shared {
                    closed: closed.clone(),
                    heads: seen.clone(),
                };
                tokio::spawn(serve(stream, script, n == 0, shared));
            }
        });
        Self {
            addr,
            connections,
            closed_by_gateway,
            heads,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn closed_by_gateway(&self) -> usize {
        self.closed_by_gateway.load(Ordering::SeqCst)
    }
}

/// What every connection of a scripted upstream reports to.
struct Shared {
    closed: Arc<AtomicUsize>,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Shared {
    /// Waits for the gateway to close the connection, counting it; a request arriving
    /// instead is kept with the others (the caller decides what to answer).
    async fn await_close(&self, stream: &mut TcpStream) -> Option<String> {
        match read_head(stream).await {
            None => {
                self.closed.fetch_add(1, Ordering::SeqCst);
                None
            }
            Some(head) => {
                self.heads.lock().unwrap().push(head.clone());
                Some(head)
            }
        }
    }
}

/// Reads one request head (these tests send no bodies), or `None` at end of stream.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn serve(mut stream: TcpStream, script: Script, first_connection: bool, shared: Shared) {
    while let Some(head) = read_head(&mut stream).await {
        shared.heads.lock().unwrap().push(head);
        match script {
            Script::KeepAlive => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            }
            Script::CloseWhenIdle => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                // Our FIN, and then the gateway's: a request instead would meet a closed
                // write half, so it can only fail.
                let _ = stream.shutdown().await;
                shared.await_close(&mut stream).await;
                return;
            }
            Script::ConnectionClose => {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                    )
                    .await;
                return;
            }
            Script::StallFirstBody if first_connection => {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
                    )
                    .await;
                // Keep the connection open with the body unfinished until the gateway closes
                // it. If it sent the next request here instead, it would read "HTTP/1.1 200"
                // as chunk data and fail.
                if shared.await_close(&mut stream).await.is_some() {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwrong")
                        .await;
                }
                return;
            }
            Script::Http10 => {
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                return;
            }
            Script::StallFirstBody => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
                    .await;
            }
        }
    }
}

/// A scripted upstream and a gateway routing everything to it.
async fn behind_gateway(script: Script) -> (Scripted, TestGateway) {
    let up = Scripted::start(script).await;
    let gw = TestGateway::start("", &open_route("/", up.addr, "")).await;
    (up, gw)
}

async fn get_text(client: &reqwest::Client, url: &str) -> (u16, String) {
    let r = client.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let (up, gw) = behind_gateway(Script::KeepAlive).await;
    let client = gw.client(true);
    for _ in 0..20 {
        assert_eq!(get_text(&client, &gw.url("/x")).await, (200, "ok".into()));
    }
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn concurrent_requests_open_at_most_one_connection_each_and_then_reuse_them() {
    let (up, gw) = behind_gateway(Script::KeepAlive).await;
    let client = gw.client(false);
    for _round in 0..3 {
        let requests = (0..16).map(|_| {
            let (client, url) = (client.clone(), gw.url("/x"));
            tokio::spawn(async move { get_text(&client, &url).await })
        });
        for r in futures_util::future::join_all(requests).await {
            assert_eq!(r.unwrap(), (200, "ok".into()));
        }
    }
    let opened = up.connections();
    assert!(
        (1..=16).contains(&opened),
        "48 requests, at most 16 at a time, opened {opened} upstream connections"
    );
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_not_used() {
    let (up, gw) = behind_gateway(Script::CloseWhenIdle).await;
    let client = gw.client(true);
    for round in 1..=3 {
        assert_eq!(get_text(&client, &gw.url("/x")).await, (200, "ok".into()));
        // The gateway noticed the upstream's FIN on the idle connection and closed its end:
        // the connection has left its pool.
        poll_until(Duration::from_secs(10), || async {
            up.closed_by_gateway() == round
        })
        .await;
    }
    assert_eq!(up.connections(), 3);
}

#[tokio::test]
async fn connection_close_from_the_upstream_is_honoured() {
    let (up, gw) = behind_gateway(Script::ConnectionClose).await;
    let client = gw.client(true);
    for _ in 0..3 {
        assert_eq!(get_text(&client, &gw.url("/x")).await, (200, "ok".into()));
    }
    assert_eq!(up.connections(), 3);
}

#[tokio::test]
async fn a_response_abandoned_mid_body_never_lends_its_connection_to_the_next_request() {
    let (up, gw) = behind_gateway(Script::StallFirstBody).await;
    let first = gw.client(true);
    let mut response = first.get(gw.url("/first")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.chunk().await.unwrap().unwrap(), "first");
    drop(response);
    drop(first);
    // The gateway saw the client leave and closed the upstream connection, mid-body as it is,
    // rather than keeping it for another request.
    poll_until(Duration::from_secs(10), || async {
        up.closed_by_gateway() == 1
    })
    .await;
    // A new client connection, whose request must go on a new upstream connection.
    let second = gw.client(true);
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        get_text(&second, &gw.url("/second")),
    )
    .await
    .expect("the second request must not wait for the first one's upstream connection");
    assert_eq!(answered, (200, "second".into()));
    assert_eq!(up.connections(), 2);
}

#[tokio::test]
async fn the_upstream_gets_an_origin_form_target_and_its_own_host() {
    let up = Scripted::start(Script::KeepAlive).await;
    let route = format!(
        "[[routes]]\npath = \"/api\"\nupstream = \"http://{}/base/\"\nauth = \"none\"\n",
        up.addr
    );
    let gw = TestGateway::start("", &route).await;
    for client in [gw.client(true), gw.client(false)] {
        let (status, _) = get_text(&client, &gw.url("/api/x?y=1")).await;
        assert_eq!(status, 200);
        let head = up.heads.lock().unwrap().pop().unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("GET /base/api/x?y=1 HTTP/1.1"));
        let hosts: Vec<&str> = lines.filter_map(|l| l.strip_prefix("host: ")).collect();
        assert_eq!(hosts, [up.addr.to_string()], "{head}");
    }
}

#[tokio::test]
async fn large_bodies_stream_both_ways_on_pooled_connections_over_h1_and_h2() {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &open_route("/", up.addr, "")).await;
    let size = 3 * 1024 * 1024 + 17;
    for client in [gw.client(true), gw.client(false)] {
        for _ in 0..2 {
            let download = client
                .get(gw.url(&format!("/files/download?bytes={size}")))
                .send()
                .await
                .unwrap();
            assert_eq!(download.status(), 200);
            assert_eq!(download.bytes().await.unwrap().len(), size);
            let upload = client
                .post(gw.url("/files/upload"))
                .body(vec![b'u'; size])
                .send()
                .await
                .unwrap();
            assert_eq!(upload.status(), 200);
            let counted: serde_json::Value = upload.json().await.unwrap();
            assert_eq!(counted["bytes"], size);
        }
    }
}

#[tokio::test]
async fn an_http10_upstream_does_not_end_the_clients_keep_alive() {
    let (up, gw) = behind_gateway(Script::Http10).await;
    let answer = gw
        .raw(
            b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\nGET /b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    assert!(!answer.contains("HTTP/1.0"), "{answer}");
    assert_eq!(up.connections(), 2);
}

/// Each pooled connection keeps one timer across requests (`Link::poll_deadline`): a timer
/// left over from an earlier request must neither cut a new request short nor let it outlive
/// its own, shorter, deadline.
#[tokio::test]
async fn route_timeouts_hold_on_reused_connections() {
    let up = Upstream::start().await;
    let routes = format!(
        "{}{}",
        open_route("/long", up.addr, "timeout = \"10s\""),
        open_route("/short", up.addr, "timeout = \"1s\"")
    );
    let gw = TestGateway::start("", &routes).await;
    let client = gw.client(true);
    let status = |path: &'static str| {
        let (client, url) = (client.clone(), gw.url(path));
        async move {
            let started = std::time::Instant::now();
            let status = client.get(url).send().await.unwrap().status().as_u16();
            (status, started.elapsed())
        }
    };
    // The connection's timer, set by this request, fires while the connection is idle...
    assert_eq!(status("/short/a").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // ...and is not taken for the next request's deadline.
    assert_eq!(status("/short/b").await.0, 200);
    // A request whose deadline is earlier than the timer's (10 s, from /long) gets its own.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status("/long/c").await.0, 200);
    let (code, waited) = status("/short/stall").await;
    assert_eq!(code, 504);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "504 after {waited:?}"
    );
    // The deadline still holds on the connection made after that one was dropped.
    let (code, waited) = status("/long/slow?ms=1200").await;
    assert_eq!((code, waited < Duration::from_secs(8)), (200, true));
}

/// A reload keeps the pools of upstreams the new config still names: the idle connection made
/// before the SIGHUP serves the requests after it.
#[tokio::test]
async fn a_reload_keeps_the_connections_of_unchanged_upstreams() {
    let up = Scripted::start(Script::KeepAlive).await;
    let dir = ConfigDir::new();
    let path = dir.write("", &open_route("/", up.addr, ""));
    let gw = GatewayProcess::start(&path);
    let client = dir.pki.client(gw.public, true);
    let url = |p: &str| format!("https://localhost:{}{p}", gw.public.port());
    assert_eq!(get_text(&client, &url("/before")).await, (200, "ok".into()));
    dir.write(
        "",
        &format!(
            "{}{}",
            open_route("/", up.addr, ""),
            open_route("/other", up.addr, "timeout = \"5s\"")
        ),
    );
    gw.signal("HUP");
    poll_until(Duration::from_secs(10), || async {
        gw.log_lines().iter().any(|l| l.contains("config reloaded"))
    })
    .await;
    for path in ["/after", "/other/x", "/after"] {
        assert_eq!(get_text(&client, &url(path)).await, (200, "ok".into()));
    }
    assert_eq!(up.connections(), 1, "the pool was rebuilt on the reload");
}
