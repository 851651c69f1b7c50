//! A real upstream for the tests: records every request it receives and answers by the path's
//! last segment: `…/slow?ms=N` after N ms, `/stall` never, `/download?bytes=N` with N streamed bytes,
//! `/upload` with the byte count of the streamed request body, anything else with a JSON echo.
//! `ws` is a WebSocket echo server on its own port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub records: Arc<Mutex<Vec<Recorded>>>,
}

impl Upstream {
    /// A plain-HTTP upstream.
    pub async fn start() -> Self {
        Self::start_with_tls(None).await
    }

    /// An upstream, over TLS when `tls` is given.
    pub async fn start_with_tls(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let rec = records.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let rec = rec.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, rec.clone()));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(config) => {
                            let Ok(s) =
                                tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                            else {
                                return;
                            };
                            let _ = builder.serve_connection(TokioIo::new(s), service).await;
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Self { addr, records }
    }

    pub fn last(&self) -> Recorded {
        self.records
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream received no request")
    }

    pub fn count(&self) -> usize {
        self.records.lock().unwrap().len()
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn query_number(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn answer(
    req: Request<Incoming>,
    records: Arc<Mutex<Vec<Recorded>>>,
) -> Result<Response<Body>, Infallible> {
    let recorded = Recorded {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
    };
    records.lock().unwrap().push(recorded.clone());
    let last_segment = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let body = match last_segment.as_str() {
        "slow" => {
            tokio::time::sleep(Duration::from_millis(query_number(&req, "ms"))).await;
            full("slow done")
        }
        "stall" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            full("")
        }
        "download" => {
            let total = query_number(&req, "bytes");
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = total.div_ceil(chunk.len() as u64);
            let stream = futures_util::stream::iter(0..chunks).map(move |i| {
                let left = total - i * chunk.len() as u64;
                let part = chunk.slice(..usize::try_from(left.min(chunk.len() as u64)).unwrap());
                Ok::<_, Infallible>(Frame::data(part))
            });
            BodyExt::boxed(StreamBody::new(stream))
        }
        "upload" => {
            let mut body = req.into_body();
            let mut n = 0usize;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map(|f| f.into_data()) {
                    n += data.map_or(0, |d| d.len());
                } else {
                    break;
                }
            }
            full(&format!("{{\"bytes\":{n}}}"))
        }
        _ => {
            let headers: Vec<(String, String)> = recorded
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let echo = serde_json::json!({ "method": recorded.method, "uri": recorded.uri, "headers": headers });
            full(&echo.to_string())
        }
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert("connection", "x-upstream-private".parse().unwrap());
    response
        .headers_mut()
        .insert("x-upstream-private", "secret".parse().unwrap());
    response
        .headers_mut()
        .insert("x-upstream", "yes".parse().unwrap());
    Ok(response)
}

fn full(s: &str) -> Body {
    BodyExt::boxed(Full::new(Bytes::from(s.to_string())))
}

/// A WebSocket server that echoes every text and binary message.
pub async fn websocket_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if ws.send(msg).await.is_err() {
                            return;
                        }
                    } else if msg.is_close() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A TCP server that accepts and then never reads or writes (a stalled upstream).
pub async fn black_hole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

/// An address where nothing listens (a dead upstream).
pub async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
