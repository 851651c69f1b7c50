//! The authentication and scope check in front of protected routes (SPEC §3.4, RFC 6750 §3):
//! bearer tokens or PATs on `bearer` routes, the login session or a bearer token on `session`
//! routes, then the scope the route needs for the method. Every decision is counted, and every
//! refusal is answered by [`refuse`].

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use crate::auth::context::Ctx;
use crate::auth::{AuthFailure, Credential, Principal};
use crate::body::Body;
use crate::config::AuthMode;
use crate::error::{GatewayError, json_error};
use crate::proxy::routes::Route;

/// Lets the request through as `Principal`, sends a browser to sign in, or answers it.
pub enum Decision {
    Allow(Arc<Principal>),
    /// A browser (`Accept: text/html`, GET or HEAD) without a session on a `session` route:
    /// the caller says where the login should send it back to (a proxied request its own path,
    /// a forward-auth check the original URL).
    Login,
    Deny(Response<Body>),
}

/// Decides whether a request with `method` and `headers` may use `route`: the one check of
/// proxied requests and forward-auth decisions (`/auth/verify`) alike.
pub async fn check(ctx: &Ctx<'_>, route: &Route, method: &Method, headers: &HeaderMap) -> Decision {
    let (result, decision) = decide(ctx, route, method, headers).await;
    ctx.metrics
        .auth_decisions
        .with_label_values(&[route.label.as_str(), result])
        .inc();
    decision
}

async fn decide(
    ctx: &Ctx<'_>,
    route: &Route,
    method: &Method,
    headers: &HeaderMap,
) -> (&'static str, Decision) {
    let request_id = ctx.request_id();
    let Some(rule) = route.scopes.for_method(method) else {
        let r = refuse(Refusal::Method, request_id);
        return ("method_not_allowed", Decision::Deny(r));
    };
    let now = ctx.clock.now();
    let principal =
        if route.auth == AuthMode::Session && !headers.contains_key(header::AUTHORIZATION) {
            match session(ctx, headers, now).await {
                Ok(Some(p)) => Ok(p),
                Ok(None) if wants_html(method, headers) => {
                    return ("login_redirect", Decision::Login);
                }
                Ok(None) => Err(AuthFailure::Missing),
                Err(f) => Err(f),
            }
        } else {
            let accept = crate::auth::foreign::Accept::Route {
                issuers: &route.config.issuers,
                wait: route.config.timeout,
            };
            ctx.auth
                .from_headers(headers, ctx.directory, ctx.keys, ctx.store, now, accept)
                .await
        };
    let principal = match principal {
        Ok(p) => p,
        Err(failure) => {
            let r = refuse(Refusal::Credential(failure), request_id);
            return (failure.label(), Decision::Deny(r));
        }
    };
    if !principal.scopes.satisfies(rule.required) {
        return (
            "insufficient_scope",
            Decision::Deny(refuse(Refusal::Scope(&rule.name), request_id)),
        );
    }
    if !admitted(route, &principal) {
        let response = if principal.credential == Credential::Session && wants_html(method, headers)
        {
            crate::ui::page::error(
                StatusCode::FORBIDDEN,
                "Access denied",
                "Your account may not use this page. Ask the administrator for access.",
                None,
                request_id,
            )
        } else {
            refuse(Refusal::NotListed, request_id)
        };
        return ("not_allowed", Decision::Deny(response));
    }
    ("allowed", Decision::Allow(principal))
}

/// SPEC §7.3: a route with `allow_users` or `allow_groups` admits, after the scope check, only
/// the users it names and the members of the groups it names (either list suffices).
fn admitted(route: &Route, principal: &Principal) -> bool {
    let (users, groups) = (&route.config.allow_users, &route.config.allow_groups);
    (users.is_empty() && groups.is_empty())
        || users.iter().any(|u| u == principal.user())
        || principal.in_any_group(groups)
}

/// The user of a valid `gatehouse_session` cookie, holding the user's `max_scope`.
async fn session(
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<Option<Arc<Principal>>, AuthFailure> {
    let found = crate::auth::session::find(ctx.store, ctx.directory, headers, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "session lookup: the store does not answer");
            AuthFailure::Unavailable
        })?;
    let Some(crate::auth::session::Found { user, session, .. }) = found else {
        return Ok(None);
    };
    let text = ctx.directory.scopes.to_names(user.max_scope);
    // A session's principal lives for one request and is not cached: nothing to share.
    let principal = Principal::unshared(
        Credential::Session,
        &user.name,
        user.groups,
        user.max_scope,
        &text,
        session.expire_time,
    );
    Ok(principal.map(Arc::new))
}

fn wants_html(method: &Method, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

/// 303 to the login page, which sends the browser back to `target` (the request's path and
/// query).
pub fn login_redirect(target: &str) -> Response<Body> {
    let location = format!(
        "/login?return_to={}",
        crate::ui::return_to::percent_encode(target)
    );
    let mut response = Response::new(crate::body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Why the guard turns a request away.
pub enum Refusal<'a> {
    /// The route has no scope for this method.
    Method,
    /// No usable credential, or it could not be checked.
    Credential(AuthFailure),
    /// The credential lacks the named scope.
    Scope(&'a str),
    /// The caller is neither in the route's `allow_users` nor in one of its `allow_groups`.
    NotListed,
}

/// The one place a refusal on a proxied route becomes a response: SPEC §3.3's JSON (through
/// [`GatewayError`] where the gateway has a kind for it) and RFC 6750 §3's `WWW-Authenticate`
/// on 401 and 403.
pub fn refuse(refusal: Refusal<'_>, request_id: &str) -> Response<Body> {
    let (mut response, challenge) = match refusal {
        Refusal::Method => (
            GatewayError::MethodNotAllowed.into_response(request_id),
            None,
        ),
        Refusal::Credential(AuthFailure::Unavailable) => {
            let e = GatewayError::Unavailable("authentication is temporarily unavailable");
            (e.into_response(request_id), None)
        }
        Refusal::Credential(failure) => {
            let message = match failure {
                AuthFailure::Missing => "a bearer token is required",
                other => other.description(),
            };
            let r = json_error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                message,
                request_id,
            );
            (r, Some(failure.www_authenticate()))
        }
        Refusal::Scope(scope) => {
            let message = format!("this request needs the {scope} scope");
            let r = json_error(
                StatusCode::FORBIDDEN,
                "permission_denied",
                &message,
                request_id,
            );
            let challenge = format!(
                "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"{scope}\""
            );
            (r, HeaderValue::from_str(&challenge).ok())
        }
        Refusal::NotListed => {
            let r = json_error(
                StatusCode::FORBIDDEN,
                "permission_denied",
                "this route admits only the users and groups it names",
                request_id,
            );
            let challenge = HeaderValue::from_static(
                "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", error_description=\"user or group not allowed\"",
            );
            (r, Some(challenge))
        }
    };
    if let Some(v) = challenge {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}
