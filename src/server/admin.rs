//! The admin listener (SPEC §4), plain HTTP and never on the public listener: `/metrics` in
//! the Prometheus text format, `/healthz` (the process serves), `/readyz` (ready to take
//! traffic: listeners bound and dependencies reachable; 503 otherwise).

use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use super::Gateway;
use crate::body::{Body, full};

/// Answers one admin request.
pub async fn handle<B>(gateway: &Gateway, req: Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/metrics" => {
            gateway.auth.refresh_entry_gauge(gateway.clock.now());
            let mut response = Response::new(full(gateway.metrics.render()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match gateway.readiness().await {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {why}\n"),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The plain listener's answer when `http_redirect_listen` is set: 308 to the same path and
/// query on `server.public_url` (never to the client's `Host`, which would be an open redirect).
pub fn redirect_to_https<B>(public_url: &str, req: &Request<B>) -> Response<Body> {
    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    match HeaderValue::from_str(&format!("{public_url}{pq}")) {
        Ok(location) => {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Err(_) => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
}
