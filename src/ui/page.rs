//! HTML responses of the login, logout, consent and error pages (SECURITY.md "Browser
//! pages"): askama templates (auto-escaping), and the headers every page carries — a strict
//! `Content-Security-Policy` with no external resources and `frame-ancestors 'none'`,
//! `X-Frame-Options: DENY`, `Cache-Control: no-store`, `Referrer-Policy: no-referrer`.
//! The browser surface's one error mapping lives here too: every error page (not found,
//! method not allowed, store failure, unavailable, internal) is built by [`error`].

use askama::Template;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};

use crate::body::{Body, full};
use crate::store::{StoreError, StoreErrorKind};

/// The CSP of every page; `form-action` may add the one origin a consent form redirects to
/// (browsers apply `form-action` to the redirect that follows a form POST).
fn csp(form_origin: Option<&str>) -> HeaderValue {
    let base = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; \
                base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
    let value = match form_origin {
        Some(origin) => format!("{base} {origin}"),
        None => base.to_owned(),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// An HTML page with the security headers.
pub fn html(status: StatusCode, body: String, form_origin: Option<&str>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_SECURITY_POLICY, csp(form_origin));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Renders `template` as a page, or a plain 500 if rendering fails (logged).
pub fn render(
    status: StatusCode,
    template: &impl Template,
    form_origin: Option<&str>,
    request_id: &str,
) -> Response<Body> {
    match template.render() {
        Ok(body) => html(status, body, form_origin),
        Err(e) => {
            tracing::error!(request_id, error = %e, "rendering a page failed");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!DOCTYPE html><title>Error</title><p>Internal error.</p>".to_owned(),
                None,
            )
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    error_code: Option<&'a str>,
    request_id: &'a str,
}

/// The error page: never a redirect (RFC 6749 §4.1.2.1 when the client or redirect URI is
/// not known good), fixed wording, the request id for the operator.
pub fn error(
    status: StatusCode,
    title: &str,
    message: &str,
    error_code: Option<&str>,
    request_id: &str,
) -> Response<Body> {
    let page = ErrorPage {
        title,
        message,
        error_code,
        request_id,
    };
    render(status, &page, None, request_id)
}

/// 404 for a path no page answers.
pub fn not_found(request_id: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page.",
        None,
        request_id,
    )
}

/// 405 with the `Allow` header (RFC 9110 §15.5.6) naming the methods the page answers.
pub fn method_not_allowed(allow: &'static str, request_id: &str) -> Response<Body> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "This page does not answer that method.",
        None,
        request_id,
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A 500 page; `cause` goes to the log with the request id, never to the client.
pub fn internal(cause: &str, request_id: &str) -> Response<Body> {
    tracing::error!(request_id, cause, "internal error");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The request could not be completed.",
        None,
        request_id,
    )
}

/// The page for a store failure (logged): 503 when the store cannot be reached, 500 for
/// anything else — a browser page never learns the store's not-found or conflict.
pub fn store_failure(e: &StoreError, request_id: &str) -> Response<Body> {
    tracing::error!(request_id, error = %e, "store failure");
    let status = match e.kind() {
        StoreErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        StoreErrorKind::NotFound
        | StoreErrorKind::Conflict
        | StoreErrorKind::Incompatible
        | StoreErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(
        status,
        "Temporarily unavailable",
        "The service cannot complete this request right now. Please try again.",
        None,
        request_id,
    )
}

/// 503 when credentials cannot be checked right now (the store behind them does not answer).
pub fn auth_unavailable(request_id: &str) -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "Authentication is temporarily unavailable. Please try again.",
        None,
        request_id,
    )
}

/// A 303 to `location` (a path or URL the caller has checked), never cached.
pub fn see_other(location: &str) -> Response<Body> {
    let mut response = Response::new(crate::body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    match HeaderValue::from_str(location) {
        Ok(v) => {
            response.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            response
                .headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/"));
        }
    }
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
