//! The demo's Confluence-style sample backend: an in-memory content API
//! (`GET/POST /rest/api/content`, `GET/PUT/DELETE /rest/api/content/{id}`, `GET /rest/admin/…`)
//! that trusts the gateway's identity headers and shows in every answer whom it was told about.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[derive(Default)]
struct Pages {
    next_id: u64,
    pages: BTreeMap<u64, Value>,
}

/// Starts the backend on `127.0.0.1:0` and returns its address; it runs until the process ends.
pub async fn start() -> std::io::Result<SocketAddr> {
    start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts the backend on `addr` (`gatehouse sample-backend --listen ADDR`) and returns the
/// address it listens on; it runs until the process ends.
pub async fn start_on(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let mut seed = Pages {
        next_id: 1,
        pages: BTreeMap::new(),
    };
    for (title, body) in [
        ("Welcome", "This space is served through gatehouse."),
        ("Release notes", "Nothing to see yet."),
    ] {
        let id = seed.next_id;
        seed.next_id += 1;
        seed.pages.insert(id, json!({"id": id.to_string(), "type": "page", "title": title, "body": body, "createdBy": "system"}));
    }
    let pages = Arc::new(Mutex::new(seed));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let pages = pages.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(req, pages.clone()));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Whom the gateway said the caller is.
fn seen_by(req: &Request<Incoming>) -> Value {
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    json!({ "user": h("x-auth-user"), "scopes": h("x-auth-scopes"), "clientId": h("x-auth-client-id") })
}

async fn answer(
    req: Request<Incoming>,
    pages: Arc<Mutex<Pages>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let who = seen_by(&req);
    let user = who["user"].as_str().unwrap_or("anonymous").to_owned();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let id = path
        .strip_prefix("/rest/api/content/")
        .and_then(|s| s.parse::<u64>().ok());
    let (status, mut body) = if path.starts_with("/rest/admin") {
        (
            StatusCode::OK,
            json!({"admin": true, "message": "administration endpoint"}),
        )
    } else if path == "/rest/api/content" && method == Method::GET {
        let list: Vec<Value> = pages
            .lock()
            .map(|p| p.pages.values().cloned().collect())
            .unwrap_or_default();
        (StatusCode::OK, json!({"results": list, "size": list.len()}))
    } else if path == "/rest/api/content" && method == Method::POST {
        match read_json(req).await {
            Some(input) => {
                let mut p = match pages.lock() {
                    Ok(p) => p,
                    Err(_) => return Ok(reply(StatusCode::INTERNAL_SERVER_ERROR, json!({}))),
                };
                let id = p.next_id;
                p.next_id += 1;
                let page = json!({"id": id.to_string(), "type": "page", "title": input["title"], "body": input["body"], "createdBy": user});
                p.pages.insert(id, page.clone());
                (StatusCode::CREATED, page)
            }
            None => (
                StatusCode::BAD_REQUEST,
                json!({"message": "expected a JSON body with title and body"}),
            ),
        }
    } else if let Some(id) = id {
        match method {
            Method::GET => match pages.lock().ok().and_then(|p| p.pages.get(&id).cloned()) {
                Some(page) => (StatusCode::OK, page),
                None => (StatusCode::NOT_FOUND, json!({"message": "no such page"})),
            },
            Method::PUT => {
                let input = read_json(req).await.unwrap_or(Value::Null);
                let mut p = match pages.lock() {
                    Ok(p) => p,
                    Err(_) => return Ok(reply(StatusCode::INTERNAL_SERVER_ERROR, json!({}))),
                };
                match p.pages.get_mut(&id) {
                    Some(page) => {
                        if let Some(t) = input.get("title") {
                            page["title"] = t.clone();
                        }
                        if let Some(b) = input.get("body") {
                            page["body"] = b.clone();
                        }
                        page["updatedBy"] = json!(user);
                        (StatusCode::OK, page.clone())
                    }
                    None => (StatusCode::NOT_FOUND, json!({"message": "no such page"})),
                }
            }
            Method::DELETE => match pages.lock().ok().and_then(|mut p| p.pages.remove(&id)) {
                Some(_) => (StatusCode::OK, json!({"deleted": id.to_string()})),
                None => (StatusCode::NOT_FOUND, json!({"message": "no such page"})),
            },
            _ => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"message": "method not allowed"}),
            ),
        }
    } else {
        (StatusCode::NOT_FOUND, json!({"message": "not found"}))
    };
    body["seenBy"] = who;
    Ok(reply(status, body))
}

async fn read_json(req: Request<Incoming>) -> Option<Value> {
    let bytes = Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
        .ok()?
        .to_bytes();
    serde_json::from_slice(&bytes).ok()
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
