//! Responses of the token, revocation and introspection endpoints: JSON that is never cached
//! (RFC 6749 §5.1 `Cache-Control: no-store`, `Pragma: no-cache`), RFC 6749 §5.2 errors with
//! their status and `WWW-Authenticate: Basic` (§5.2, RFC 7617), and store failures mapped to
//! `temporarily_unavailable`/`server_error` without internal detail.

use http::{HeaderValue, Response, StatusCode, header};

use super::error::{OAuthError, OAuthErrorCode};
use crate::body::{Body, full};
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

/// An RFC 6749 §5.2 error. `basic` says the client tried `Authorization: Basic`, in which
/// case `invalid_client` carries a Basic challenge.
pub fn error(e: &OAuthError, basic: bool) -> Response<Body> {
    let mut response = json(e.code.status(), e.to_json());
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
    let e = OAuthError::new(
        OAuthErrorCode::InvalidRequest,
        format!("use {allow} on this endpoint"),
    );
    let mut response = json(StatusCode::METHOD_NOT_ALLOWED, e.to_json());
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
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
