//! CORS (Fetch standard, "CORS protocol") for the token, revocation and introspection
//! endpoints (SPEC §3.1): a browser origin is allowed when it is exactly one of an app's
//! `allowedWebOrigins` — the calling app's when the request names one, otherwise any active
//! app's (a preflight carries no credentials). Every answer says `Vary: Origin`.

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;

use super::caches::OAuthCaches;
use crate::auth::context::Ctx;
use crate::body::{Body, empty};
use crate::store::App;

/// Apps read per page when looking for an origin.
const PAGE: u32 = 500;

/// Serves one of the CORS-enabled endpoints: answers a preflight itself; otherwise runs
/// `endpoint` (which says which app it authenticated, if any) and adds the CORS headers for
/// the request's origin.
pub async fn serve(
    ctx: &Ctx<'_>,
    oauth: &OAuthCaches,
    req: Request<Incoming>,
    endpoint: impl AsyncFnOnce(Request<Incoming>) -> (Response<Body>, Option<Arc<App>>),
) -> Response<Body> {
    if req.method() == Method::OPTIONS {
        return preflight(ctx, oauth, req.headers()).await;
    }
    let origin = origin(req.headers());
    let (mut response, app) = endpoint(req).await;
    let ok = match &origin {
        Some(o) => allowed(ctx, oauth, o, app.as_deref()).await,
        None => false,
    };
    decorate(&mut response, origin.as_deref(), ok);
    response
}

/// The request's `Origin`, if it has exactly one.
pub fn origin(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all(header::ORIGIN).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(str::to_owned)
}

/// Whether `origin` may read the answer: the app's own list when known, else any active app's.
pub async fn allowed(ctx: &Ctx<'_>, oauth: &OAuthCaches, origin: &str, app: Option<&App>) -> bool {
    match app {
        Some(app) => app.active && app.allowed_web_origins.iter().any(|o| o == origin),
        None => allowed_by_any_app(ctx, oauth, origin).await,
    }
}

async fn allowed_by_any_app(ctx: &Ctx<'_>, oauth: &OAuthCaches, origin: &str) -> bool {
    if let Some(known) = oauth.origin(origin) {
        return known;
    }
    let mut after = None;
    let found = loop {
        let page = match ctx.store.list_apps(after.as_ref(), PAGE).await {
            Ok(page) => page,
            Err(e) => {
                // Refuse rather than allow, and do not remember the refusal.
                tracing::warn!(error = %e, "CORS: cannot read the apps");
                return false;
            }
        };
        if page
            .iter()
            .any(|a| a.active && a.allowed_web_origins.iter().any(|o| o == origin))
        {
            break true;
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => {
                after = Some(crate::store::AppCursor::after(last));
            }
            _ => break false,
        }
    };
    oauth.remember_origin(origin, found);
    found
}

/// Adds the CORS headers for an allowed origin, and `Vary: Origin` always.
pub fn decorate(response: &mut Response<Body>, origin: Option<&str>, allowed: bool) {
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let (Some(origin), true) = (origin, allowed)
        && let Ok(value) = HeaderValue::from_str(origin)
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
}

/// Answers an `OPTIONS` preflight: 204, with the CORS grant only for an allowed origin.
pub async fn preflight(ctx: &Ctx<'_>, oauth: &OAuthCaches, headers: &HeaderMap) -> Response<Body> {
    let origin = origin(headers);
    let ok = match &origin {
        Some(o) => allowed(ctx, oauth, o, None).await,
        None => false,
    };
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    decorate(&mut response, origin.as_deref(), ok);
    if ok {
        let h = response.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    response
}
