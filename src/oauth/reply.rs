//! Responses of the token, revocation and introspection endpoints: JSON that is never cached
//! (RFC 6749 §5.1 `Cache-Control: no-store`, `Pragma: no-cache`), RFC 6749 §5.2 errors with
//! their status and `WWW-Authenticate: Basic` (§5.2, RFC 7617), and store failures mapped to
//! `temporarily_unavailable`/`server_error` without internal detail. The authorization
//! server's error responses are built here and nowhere else.

use http::{HeaderValue, Response, StatusCode, header};

use super::error::{OAuthError, OAuthErrorCode};
use crate::body::{Body, full};
use crate::error::json_error;
use crate::store::StoreError;

/// A JSON answer with the no-store headers every token-carrying response needs.
pub fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// 200 with no body (RFC 7009 §2.2), still never cached.
pub fn empty_ok() -> Response<Body> {
    let mut response = json(StatusCode::OK, String::new());
    response.headers_mut().remove(header::CONTENT_TYPE);
    response
}

/// An RFC 6749 §5.2 error at the status its code calls for. `basic` says the client tried
/// `Authorization: Basic`, in which case `invalid_client` carries a Basic challenge.
pub fn error(e: &OAuthError, basic: bool) -> Response<Body> {
    error_at(e.code.status(), e, basic)
}

/// The one place an RFC 6749 error becomes a response: `status` is the code's own, or the one
/// the HTTP layer decided (405, 408, 413, 429).
pub fn error_at(status: StatusCode, e: &OAuthError, basic: bool) -> Response<Body> {
    let mut response = json(status, e.to_json());
    if e.code == OAuthErrorCode::InvalidClient && basic {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"gatehouse\", charset=\"UTF-8\""),
        );
    }
    response
}

/// 405 for a method the endpoint does not serve.
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let e = invalid_request(format!("use {allow} on this endpoint"));
    let mut response = error_at(StatusCode::METHOD_NOT_ALLOWED, &e, false);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// 429 with `Retry-After`: a client refused before its credentials are checked.
pub fn throttled(e: &OAuthError, basic: bool, retry_after_secs: u64) -> Response<Body> {
    let mut response = error_at(StatusCode::TOO_MANY_REQUESTS, e, basic);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// 404 for a path under `/oauth2/` that is no endpoint: not an RFC 6749 error (there is no
/// client request to answer), so SPEC §3.3's JSON shape.
pub fn not_found(request_id: &str) -> Response<Body> {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint",
        request_id,
    )
}

/// Logs a store failure and turns it into what the client may see: 503 when the store is
/// unreachable (retry later), 500 otherwise.
pub fn store_failure(e: &StoreError) -> OAuthError {
    tracing::error!(error = %e, "authorization server: store failure");
    if e.is_unavailable() {
        OAuthError::new(
            OAuthErrorCode::TemporarilyUnavailable,
            "the service is temporarily unavailable",
        )
    } else {
        OAuthError::new(OAuthErrorCode::ServerError, "internal error")
    }
}

/// Shorthands for the common errors.
pub fn invalid_request(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidRequest, description)
}

pub fn invalid_grant(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidGrant, description)
}

pub fn invalid_client(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidClient, description)
}

pub fn invalid_scope(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidScope, description)
}

pub fn server_error(what: &str) -> OAuthError {
    tracing::error!(what, "authorization server: internal failure");
    OAuthError::new(OAuthErrorCode::ServerError, "internal error")
}
