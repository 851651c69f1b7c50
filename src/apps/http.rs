//! The management API's edge (SPEC §3.3, RFC 6750 §3): bearer authentication of the caller,
//! the 64 KiB body limit (413), the JSON content type (415), and errors in the SPEC's shape
//! `{"error": {"code", "message", "details"}}`. Store failures become 503/500 with the request
//! id; their cause goes to the log only.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Serialize;

use super::validate::Violations;
use crate::auth::context::Ctx;
use crate::auth::{AuthFailure, Principal};
use crate::body::{Body, empty, full};
use crate::body::{ReadError, read_to_limit};
use crate::store::{StoreError, StoreErrorKind};

/// The largest request body the management API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// A failed call, ready to become a response (boxed: errors are rare, `Result`s are not).
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    code: &'static str,
    message: String,
    violations: Violations,
    www_authenticate: Option<HeaderValue>,
    allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            status,
            code,
            message: message.into(),
            violations: Violations::default(),
            www_authenticate: None,
            allow: None,
        }))
    }

    pub fn invalid(violations: Violations) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            violations.message(),
        );
        e.0.violations = violations;
        e
    }

    /// One broken rule of one field.
    pub fn field(field: &str, rule: &str) -> Self {
        let mut v = Violations::default();
        v.add(field, rule);
        Self::invalid(v)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_denied", message)
    }

    /// The caller lacks the privilege a field's value needs (403, each field named).
    pub fn denied(violations: Violations) -> Self {
        let mut e = Self::permission_denied(violations.message());
        e.0.violations = violations;
        e
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("method not allowed here (allowed: {allow})"),
        );
        e.0.allow = Some(allow);
        e
    }

    /// 503: a dependency (the store, or what checks credentials) does not answer.
    fn unavailable(message: &str) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// A refused credential: 401 with its RFC 6750 challenge, or 503 when it could not be
    /// checked.
    fn auth(failure: AuthFailure) -> Self {
        let message = match failure {
            AuthFailure::Unavailable => return Self::unavailable(failure.description()),
            AuthFailure::Missing => "an Authorization: Bearer token is required",
            other => other.description(),
        };
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message);
        e.0.www_authenticate = Some(failure.www_authenticate());
        e
    }

    /// The management API's one mapping of a store failure: 404 and 409 for the caller's own
    /// mistakes, 503 when the store does not answer, 500 otherwise (both logged with the
    /// request id); the client learns only the kind.
    pub fn store(e: &StoreError, request_id: &str) -> Self {
        match e.kind() {
            StoreErrorKind::NotFound => Self::not_found("not found"),
            StoreErrorKind::Conflict => Self::conflict("conflicts with an existing resource"),
            StoreErrorKind::Unavailable => {
                tracing::error!(request_id, error = %e, "management API: the store does not answer");
                Self::unavailable("the service is temporarily unavailable")
            }
            _ => {
                tracing::error!(request_id, error = %e, "management API: store failure");
                Self::internal()
            }
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let Self(inner) = self;
        let this = *inner;
        let mut details = serde_json::Map::new();
        details.insert("requestId".into(), request_id.into());
        if !this.violations.is_empty() {
            let list = this
                .violations
                .0
                .iter()
                .map(|v| serde_json::json!({"field": v.field, "description": v.rule}))
                .collect();
            details.insert("fieldViolations".into(), serde_json::Value::Array(list));
        }
        let body = serde_json::json!({
            "error": { "code": this.code, "message": this.message, "details": details }
        });
        let mut response = json_response(this.status, &body);
        if let Some(v) = this.www_authenticate {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some(allow) = this.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

/// A JSON response; `Cache-Control: no-store` because some carry secrets.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub fn no_content() -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// The caller behind `Authorization: Bearer` (an access token or a PAT); a session cookie
/// does not count, so a browser cannot be made to call this API (no CSRF surface).
pub async fn authenticate(
    ctx: &Ctx<'_>,
    req: &Request<Incoming>,
) -> Result<Arc<Principal>, ApiError> {
    ctx.bearer(req.headers()).await.map_err(ApiError::auth)
}

/// Refuses a caller whose (expanded) scopes do not include `scope`.
pub fn require_scope(ctx: &Ctx<'_>, who: &Principal, scope: &str) -> Result<(), ApiError> {
    let needed = ctx.directory.scopes.lookup(scope);
    match needed {
        Some(s) if who.scopes.satisfies(s) => Ok(()),
        _ => Err(ApiError::permission_denied(format!(
            "this call needs the {scope} scope"
        ))),
    }
}

/// Reads a JSON body: `Content-Type: application/json` (415 otherwise) and at most 64 KiB
/// (413). With `optional`, an empty body needs no content type.
pub async fn json_body(
    req: Request<Incoming>,
    optional: bool,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = read_to_limit(req.into_body(), MAX_BODY, timeout)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge => too_large(),
            ReadError::TimedOut => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_argument",
                "the request body did not arrive within the server's request body timeout",
            ),
            ReadError::Unreadable(_) => ApiError::field("body", "could not be read"),
        })?;
    if optional && bytes.is_empty() && content_type.is_none() {
        return Ok(bytes);
    }
    if !content_type.as_ref().is_some_and(is_json) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be Content-Type: application/json",
        ));
    }
    Ok(bytes)
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body must be at most {MAX_BODY} bytes"),
    )
}

/// `application/json`, any case, with or without parameters such as `charset=utf-8`.
fn is_json(value: &HeaderValue) -> bool {
    value.to_str().is_ok_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in ["application/json", "Application/JSON; charset=utf-8"] {
            assert!(is_json(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/jsonx",
            "application/x-www-form-urlencoded",
        ] {
            assert!(!is_json(&HeaderValue::from_static(bad)), "{bad}");
        }
    }
}
