//! The holes a hostile review found in the proxy path and the connection layer, each sent to the
//! real gateway (SPEC §3.4, §5; SECURITY.md "Paths and routing", "Headers between client and
//! upstream", "Resources"): route confusion through `;` segments, identity headers of any name,
//! h2c smuggling, `Authorization` leaking to public upstreams, invalid `Host`, pooled upstream
//! connections still sending a body, tunnels outside the limits, session fixation by an
//! upstream, stalled request bodies, lost early answers and the waits of a connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::harness::tokens;
use crate::helpers::harness::upstream::{self, Upstream};
use crate::helpers::harness::{
    TestGateway, USERS, metric_value, open_route, poll_until, read_until_close,
};

const SECOND: Duration = Duration::from_secs(1);

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n{extra}connection: close\r\n\r\n")
}

/// Reads until `needle` has arrived (or the stream ends, or `limit` passes).
async fn read_until<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    needle: &str,
    limit: Duration,
) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + limit;
    while !String::from_utf8_lossy(&out).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A hyper upstream whose every answer is `headers` with body `ok`.
async fn answering_upstream(headers: &'static [(&'static str, &'static str)]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |_req| async move {
                    let mut response = http::Response::new(Full::new(Bytes::from_static(b"ok")));
                    for (k, v) in headers {
                        response
                            .headers_mut()
                            .append(*k, http::HeaderValue::from_static(v));
                    }
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Reads one request head from a raw upstream connection; `None` at EOF.
async fn read_head(stream: &mut tokio::net::TcpStream, buffered: &mut Vec<u8>) -> Option<String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffered[..end]).into_owned();
            buffered.drain(..end + 4);
            return Some(head);
        }
        match stream.read(&mut buf).await {
            Ok(n) if n > 0 => buffered.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn semicolon_segments_cannot_reach_a_weaker_route() {
    let public = Upstream::start().await;
    let admin = Upstream::start().await;
    let config = format!(
        "{USERS}\n{}[[routes]]\npath = \"/rest/admin\"\nupstream = \"http://{}\"\nauth = \"bearer\"\nscope = \"ADMIN\"\n",
        open_route("/", public.addr, ""),
        admin.addr
    );
    let gw = TestGateway::start("", &config).await;
    let (pat, _) = tokens::pat(&gw.gateway, "root", "ADMIN").await;
    let tricks = [
        "/;/rest/admin/x",
        "/;x/rest/admin/x",
        "/rest/;/admin/x",
        "/rest;a/admin;b/x",
    ];
    for path in tricks {
        let answer = gw.raw(get(path, "").as_bytes(), 5 * SECOND).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
    }
    assert_eq!(public.count(), 0, "a ';' trick reached the public route");
    for path in tricks {
        let auth = format!("authorization: Bearer {pat}\r\n");
        let answer = gw.raw(get(path, &auth).as_bytes(), 5 * SECOND).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        assert_eq!(admin.last().uri, "/rest/admin/x", "{path}");
    }
    assert_eq!(public.count(), 0);
}

#[tokio::test]
async fn identity_headers_are_stripped_whatever_their_first_letter() {
    let up = Upstream::start().await;
    let config = format!(
        "{USERS}\n[auth]\nuser_header = \"Remote-User\"\nscopes_header = \"Remote-Scopes\"\nclient_id_header = \"Client-Id\"\n\n{}[[routes]]\npath = \"/api\"\nupstream = \"http://{}\"\nauth = \"bearer\"\nscope = \"READ\"\n",
        open_route("/open", up.addr, ""),
        up.addr
    );
    let gw = TestGateway::start("", &config).await;
    let forged = "Remote-User: admin\r\nremote_user: admin\r\nREMOTE.USER: admin\r\nRemote-Scopes: SYSTEM_ADMIN\r\nclient_id: evil\r\n";
    let answer = gw.raw(get("/open/x", forged).as_bytes(), 5 * SECOND).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = up.last().headers;
    for name in [
        "remote-user",
        "remote_user",
        "remote.user",
        "remote-scopes",
        "client_id",
    ] {
        assert!(seen.get(name).is_none(), "{name} reached a public upstream");
    }
    let (pat, _) = tokens::pat(&gw.gateway, "alice", "READ").await;
    let with_token = format!("{forged}authorization: Bearer {pat}\r\n");
    let answer = gw
        .raw(get("/api/x", &with_token).as_bytes(), 5 * SECOND)
        .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = up.last().headers;
    let users: Vec<_> = seen.get_all("remote-user").iter().collect();
    assert_eq!(users, ["alice"], "only the gateway's own value");
    assert_eq!(seen["remote-scopes"], "READ");
    assert!(seen.get("remote_user").is_none() && seen.get("remote.user").is_none());
}

#[tokio::test]
async fn h2c_upgrades_never_reach_the_upstream_and_an_unasked_101_is_refused() {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &open_route("/", up.addr, "")).await;
    let h2c = "upgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
    let request = format!(
        "GET /smuggle HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade, HTTP2-Settings\r\n{h2c}\r\n"
    );
    let answer = read_until_close(
        &mut {
            let mut s = gw.dir.pki.tls_connect(gw.public).await;
            s.write_all(request.as_bytes()).await.unwrap();
            s
        },
        2 * SECOND,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = up.last().headers;
    assert!(seen.get("upgrade").is_none(), "{seen:?}");
    assert!(seen.get("http2-settings").is_none(), "{seen:?}");

    // An upstream that switches protocols for anyone: the gateway must not open the tunnel.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let switcher = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffered = Vec::new();
                if read_head(&mut s, &mut buffered).await.is_some() {
                    let _ = s
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n")
                        .await;
                    let _ = s.read(&mut [0u8; 1024]).await;
                }
            });
        }
    });
    let gw = TestGateway::start("", &open_route("/", switcher, "")).await;
    let answer = gw.raw(request.as_bytes(), 5 * SECOND).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
}

#[tokio::test]
async fn authorization_never_reaches_a_public_upstream_unless_the_route_says_so() {
    let up = Upstream::start().await;
    let routes = format!(
        "{}{}",
        open_route("/public", up.addr, ""),
        open_route("/passing", up.addr, "forward_authorization = true")
    );
    let gw = TestGateway::start("", &routes).await;
    let auth = "authorization: Bearer a-personal-access-token\r\n";
    let answer = gw.raw(get("/public/x", auth).as_bytes(), 5 * SECOND).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(up.last().headers.get("authorization").is_none());
    let answer = gw.raw(get("/passing/x", auth).as_bytes(), 5 * SECOND).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        up.last().headers["authorization"],
        "Bearer a-personal-access-token"
    );
}

#[tokio::test]
async fn an_invalid_host_gets_400() {
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &open_route("/", up.addr, "")).await;
    for host in [
        "user@localhost",
        "local host",
        "localhost/x",
        "[::1",
        "localhost:8x",
    ] {
        let request = format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        let answer = gw.raw(request.as_bytes(), 5 * SECOND).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{host}: {answer}");
    }
    // The gateway's own endpoints too.
    let request = "GET /oauth2/jwks HTTP/1.1\r\nhost: user@localhost\r\nconnection: close\r\n\r\n";
    let answer = gw.raw(request.as_bytes(), 5 * SECOND).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn an_upstream_connection_still_receiving_a_body_is_not_reused() {
    // An upstream that answers before reading the body, then reads it to keep the connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffered = Vec::new();
                while let Some(head) = read_head(&mut s, &mut buffered).await {
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if s.write_all(reply).await.is_err() {
                        return;
                    }
                    let mut left = content_length(&head).saturating_sub(buffered.len());
                    buffered.clear();
                    let mut buf = [0u8; 8192];
                    while left > 0 {
                        match s.read(&mut buf).await {
                            Ok(n) if n > 0 => left = left.saturating_sub(n),
                            _ => return,
                        }
                    }
                }
            });
        }
    });
    let gw = TestGateway::start("", &open_route("/", addr, "timeout = \"3s\"")).await;
    // The first client announces 100 kB and sends 10 bytes, then holds its connection open.
    let mut slow = gw.dir.pki.tls_connect(gw.public).await;
    slow.write_all(
        b"POST /early HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let answer = read_until(&mut slow, "\r\n\r\nok", 5 * SECOND).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The next request must not wait behind the rest of that body.
    let started = Instant::now();
    let r = gw.client(true).get(gw.url("/next")).send().await.unwrap();
    assert_eq!(r.status(), 200, "after {:?}", started.elapsed());
    drop(slow);
}

async fn open_websocket(
    gw: &TestGateway,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tls = gw.dir.pki.tls_connect(gw.public).await;
    let url = format!("wss://localhost:{}/ws/echo", gw.public.port());
    let (mut socket, response) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(response.status(), 101);
    socket.send(Message::text("ping")).await.unwrap();
    let echoed = tokio::time::timeout(5 * SECOND, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "ping");
    socket
}

fn https_connections(metrics: &str) -> f64 {
    metric_value(metrics, "gatehouse_connections_active{listener=\"https\"}").unwrap_or(-1.0)
}

/// Whether the tunnel has ended: the next read sees a close, an error or the end.
async fn tunnel_ended<S>(socket: &mut S, limit: Duration) -> bool
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(limit, socket.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_))) => return true,
            Ok(Some(Ok(m))) if m.is_close() => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test]
async fn tunnels_hold_their_connection_slot_and_close_when_idle() {
    let ws = upstream::websocket_echo().await;
    let gw = TestGateway::start("idle_timeout = \"1s\"", &open_route("/ws", ws, "")).await;
    let mut socket = open_websocket(&gw).await;
    assert_eq!(
        https_connections(&gw.metrics().await),
        1.0,
        "the tunnel is a connection"
    );
    // Traffic keeps it open past the idle bound...
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        socket.send(Message::text(format!("m{i}"))).await.unwrap();
        let echoed = tokio::time::timeout(5 * SECOND, socket.next()).await;
        assert!(matches!(echoed, Ok(Some(Ok(_)))), "{echoed:?}");
    }
    // ...silence closes it, and frees the slot.
    let started = Instant::now();
    assert!(
        tunnel_ended(&mut socket, 10 * SECOND).await,
        "an idle tunnel stayed open"
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
    poll_until(5 * SECOND, || async {
        https_connections(&gw.metrics().await) == 0.0
    })
    .await;
}

#[tokio::test]
async fn tunnels_end_with_the_drain() {
    let ws = upstream::websocket_echo().await;
    let gw = TestGateway::start("shutdown_grace = \"30s\"", &open_route("/ws", ws, "")).await;
    let mut socket = open_websocket(&gw).await;
    let started = Instant::now();
    tokio::time::timeout(10 * SECOND, gw.shutdown())
        .await
        .expect("the drain waited on the tunnel");
    assert!(started.elapsed() < 10 * SECOND);
    assert!(
        tunnel_ended(&mut socket, 5 * SECOND).await,
        "the tunnel survived the drain"
    );
}

#[tokio::test]
async fn a_tunnel_counts_against_max_connections() {
    let ws = upstream::websocket_echo().await;
    let up = Upstream::start().await;
    let routes = format!(
        "{}{}",
        open_route("/ws", ws, ""),
        open_route("/", up.addr, "")
    );
    let gw = TestGateway::start("max_connections = 1", &routes).await;
    let mut socket = open_websocket(&gw).await;
    // The one slot is the tunnel's: a new connection is served only once the tunnel ends.
    let pending = {
        let (pki, addr) = (gw.dir.pki.clone(), gw.public);
        tokio::spawn(async move {
            let mut s = pki.tls_connect(addr).await;
            s.write_all(get("/after", "").as_bytes()).await.unwrap();
            read_until_close(&mut s, 20 * SECOND).await
        })
    };
    // The pending connection is queued, not served, while the tunnel carries traffic.
    for i in 0..3 {
        socket.send(Message::text(format!("m{i}"))).await.unwrap();
        let _ = tokio::time::timeout(5 * SECOND, socket.next()).await;
    }
    assert_eq!(up.count(), 0, "a connection beyond the cap was served");
    socket.close(None).await.unwrap();
    drop(socket);
    let answer = tokio::time::timeout(20 * SECOND, pending)
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn an_upstream_cannot_set_the_session_cookie() {
    let addr = answering_upstream(&[
        (
            "set-cookie",
            "gatehouse_session=fixed-by-the-upstream; Path=/",
        ),
        ("set-cookie", " gatehouse_session =x"),
        ("set-cookie", "theirs=1; Path=/"),
    ])
    .await;
    let gw = TestGateway::start("", &open_route("/", addr, "")).await;
    let r = gw.client(true).get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookies: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies, ["theirs=1; Path=/"]);
}

#[tokio::test]
async fn stalled_bodies_to_the_gateways_own_endpoints_get_408() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        "request_body_timeout = \"500ms\"",
        &format!("{USERS}\n{}", open_route("/", up.addr, "")),
    )
    .await;
    for (path, content_type) in [
        ("/oauth2/token", "application/x-www-form-urlencoded"),
        ("/login", "application/x-www-form-urlencoded"),
        ("/oauth2/revoke", "application/x-www-form-urlencoded"),
    ] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: {content_type}\r\ncontent-length: 65536\r\n\r\nabc"
        );
        let started = Instant::now();
        let answer = gw.raw(request.as_bytes(), 10 * SECOND).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(started.elapsed() < 5 * SECOND, "{path}");
    }
}

#[tokio::test]
async fn an_early_413_reaches_a_client_still_sending() {
    // A client that writes its whole body before it reads (as most simple HTTP clients do): the
    // gateway answers 413 after 64 KiB, and must keep reading long enough for the client to
    // finish writing and read that answer, instead of resetting the connection under it.
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &open_route("/", up.addr, "")).await;
    let body_len = 4 * 1024 * 1024;
    for round in 0..5 {
        let mut stream = gw.dir.pki.tls_connect(gw.public).await;
        let head = format!(
            "POST /oauth2/token HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {body_len}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let written = stream.write_all(&vec![b'a'; body_len]).await;
        assert!(written.is_ok(), "round {round}: {written:?}");
        stream.flush().await.unwrap();
        let answer = read_until_close(&mut stream, 10 * SECOND).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "round {round}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_gets_the_header_read_bound() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        "header_read_timeout = \"500ms\"\nidle_timeout = \"60s\"",
        &open_route("/", up.addr, ""),
    )
    .await;
    let mut stream = gw.dir.pki.tls_connect(gw.public).await;
    let started = Instant::now();
    let answer = read_until_close(&mut stream, 20 * SECOND).await;
    let waited = started.elapsed();
    assert!(answer.is_empty(), "{answer}");
    assert!(
        waited >= Duration::from_millis(300) && waited < 5 * SECOND,
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn keep_alive_waits_follow_idle_timeout_not_header_read_timeout() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(
        "header_read_timeout = \"200ms\"\nidle_timeout = \"1500ms\"",
        &open_route("/", up.addr, ""),
    )
    .await;
    let mut stream = gw.dir.pki.tls_connect(gw.public).await;
    let request = b"GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n";
    stream.write_all(request).await.unwrap();
    let first = read_until(&mut stream, "\"uri\":\"/hello\"", 5 * SECOND).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Three header-read periods pass between the requests: the connection is still there.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream.write_all(request).await.unwrap();
    let second = read_until(&mut stream, "\"uri\":\"/hello\"", 5 * SECOND).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    let started = Instant::now();
    let rest = read_until_close(&mut stream, 20 * SECOND).await;
    let waited = started.elapsed();
    assert!(rest.is_empty(), "{rest}");
    assert!(
        waited >= Duration::from_millis(1200) && waited < 10 * SECOND,
        "closed after {waited:?}"
    );
}

/// On the TLS listener ALPN alone decides the protocol (RFC 7301; RFC 9113 §3.2): a client
/// that offers nothing speaks HTTP/1.1, one that offers h2 speaks HTTP/2, and HTTP/1.1 by ALPN
/// is not taken for HTTP/2 whatever its first bytes.
#[tokio::test]
async fn alpn_decides_the_protocol_on_the_tls_listener() {
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::pki_types::ServerName;
    let up = Upstream::start().await;
    let gw = TestGateway::start("", &open_route("/", up.addr, "")).await;
    let name = || ServerName::try_from("localhost").unwrap();
    let tcp = || tokio::net::TcpStream::connect(gw.public);

    let none = TlsConnector::from(gw.dir.pki.client_config(&[]));
    let mut s = none.connect(name(), tcp().await.unwrap()).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), None);
    s.write_all(get("/plain", "").as_bytes()).await.unwrap();
    let answer = read_until_close(&mut s, 5 * SECOND).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let h2 = TlsConnector::from(gw.dir.pki.client_config(&[b"h2"]));
    let s = h2.connect(name(), tcp().await.unwrap()).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("https://localhost/two")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(up.last().uri, "/two");

    let mut s = gw.dir.pki.tls_connect(gw.public).await;
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_close(&mut s, 5 * SECOND).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 "),
        "an HTTP/1.1 connection answered {answer:?}"
    );
}
