//! `GET/POST /login` (SPEC §3.2): the sign-in form with a CSRF token bound to a login cookie
//! (signed double-submit), throttling per user name and per client address (as
//! `server.trusted_proxies` resolves it) that counts each attempt before any password work and
//! forgives it on success, bounded argon2id verification that costs the same for unknown
//! users, one message for every failure, and a fresh session on success.

use askama::Template;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{csrf, page, return_to};
use crate::auth::context::Ctx;
use crate::auth::cookies::{self, LOGIN_COOKIE, SESSION_COOKIE};
use crate::auth::password::VerifyError;
use crate::auth::session;
use crate::auth::throttle::{Key, ThrottlePolicy};
use crate::body::Body;
use crate::body::{ReadError, read_to_limit};
use crate::oauth::params::{MAX_FORM_BYTES, Params};

/// The one answer to a wrong user name, a wrong password, or both.
pub const FAILED: &str = "Invalid user name or password.";
const THROTTLED: &str = "Too many failed sign-in attempts. Please wait and try again.";
const EXPIRED: &str = "This sign-in form has expired. Please try again.";
const BUSY: &str = "The service is busy. Please try again in a moment.";
/// The login cookie lives long enough for a form left open over a day.
const LOGIN_COOKIE_TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf_token: &'a str,
    return_to: &'a str,
    username: &'a str,
    error: Option<&'a str>,
}

pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    match *req.method() {
        Method::GET | Method::HEAD => {
            let params = Params::parse(req.uri().query().unwrap_or_default()).unwrap_or_default();
            let to = return_to::sanitize_for(params.get("return_to"), &ctx.config.forward_auth);
            form(ctx, req.headers(), StatusCode::OK, to, "", None)
        }
        Method::POST => submit(ctx, req).await,
        _ => page::method_not_allowed("GET, HEAD, POST", ctx.request_id()),
    }
}

/// The form, with a login cookie if the browser has none yet.
fn form(
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
    status: StatusCode,
    return_to: &str,
    username: &str,
    error: Option<&str>,
) -> Response<Body> {
    let (secret, set_cookie) = match cookies::get(headers, LOGIN_COOKIE) {
        // Reused so that several open tabs keep valid forms.
        Some(v) => (v.to_owned(), None),
        None => match crate::auth::secret::random_token::<32>() {
            Ok(v) => {
                let c = cookies::set(LOGIN_COOKIE, &v, "/login", "Lax", LOGIN_COOKIE_TTL);
                (v, Some(c))
            }
            Err(_) => {
                return page::internal("the random number generator failed", ctx.request_id());
            }
        },
    };
    let Some(token) = csrf::token(&secret, csrf::LOGIN) else {
        return page::internal("deriving a CSRF token failed", ctx.request_id());
    };
    let view = LoginPage {
        csrf_token: &token,
        return_to,
        username,
        error,
    };
    let mut response = page::render(status, &view, None, ctx.request_id());
    if let Some(c) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

async fn submit(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let params = match read_form(body, ctx.config.server.request_body_timeout).await {
        Ok(p) => p,
        Err(status) => {
            return page::error(
                status,
                "Bad request",
                "The sign-in form could not be read.",
                None,
                ctx.request_id(),
            );
        }
    };
    let headers = &parts.headers;
    let to = return_to::sanitize_for(params.get("return_to"), &ctx.config.forward_auth);
    let username = params.get("username").unwrap_or_default();
    let presented = params.get("csrf_token").unwrap_or_default();
    let csrf_ok = cookies::get(headers, LOGIN_COOKIE)
        .is_some_and(|secret| csrf::verify(secret, csrf::LOGIN, presented));
    if !csrf_ok {
        count(ctx, "invalid_csrf");
        return form(
            ctx,
            headers,
            StatusCode::BAD_REQUEST,
            to,
            username,
            Some(EXPIRED),
        );
    }
    let guard = &ctx.login;
    let addr = ctx.client_addr(headers);
    let now = ctx.clock.now();
    let policy = ThrottlePolicy::from_config(ctx.config);
    // Registered before the password is looked at and judged as if the attempts under way
    // failed (record, then judge): parallel guesses get no more tries than sequential ones.
    let user_key = Key::user(username);
    let keys = [user_key, Key::addr(addr)];
    let attempt = match guard.throttle.attempt(&policy, keys, now).await {
        Ok(attempt) => attempt,
        Err(t) => {
            count(ctx, "throttled");
            tracing::warn!(request_id = ctx.request_id(), %addr, "login throttled");
            let mut r = form(
                ctx,
                headers,
                StatusCode::TOO_MANY_REQUESTS,
                to,
                username,
                Some(THROTTLED),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(t.retry_after_secs()));
            return r;
        }
    };
    let password = params.get("password").unwrap_or_default();
    let user = ctx.directory.user(username);
    let hash = user.map(|u| u.password_hash.expose());
    match guard.verifier.verify(password, hash).await {
        Ok(true) => {
            // Not a failure, and the name's earlier failures are forgotten. The address keeps
            // its count: one valid account must not reset the counter of someone guessing.
            attempt.forgive();
            guard.throttle.forget(&user_key).await;
        }
        Ok(false) => {
            attempt.failed().await;
            count(ctx, "failure");
            tracing::info!(request_id = ctx.request_id(), %addr, "login failed");
            return form(
                ctx,
                headers,
                StatusCode::UNAUTHORIZED,
                to,
                username,
                Some(FAILED),
            );
        }
        Err(VerifyError::Busy) => {
            // Never checked: not a failure.
            attempt.forgive();
            count(ctx, "unavailable");
            return form(
                ctx,
                headers,
                StatusCode::SERVICE_UNAVAILABLE,
                to,
                username,
                Some(BUSY),
            );
        }
        Err(VerifyError::Internal) => {
            attempt.forgive();
            count(ctx, "unavailable");
            return page::internal("the password verification task failed", ctx.request_id());
        }
    }
    match session::start(ctx, username, cookies::get(headers, SESSION_COOKIE)).await {
        Ok(cookie) => {
            count(ctx, "success");
            tracing::info!(request_id = ctx.request_id(), user = username, "login");
            let mut r = page::see_other(to);
            if let Some(clear) = session::clear_host_only_cookie(ctx.config) {
                r.headers_mut().append(header::SET_COOKIE, clear);
            }
            r.headers_mut().append(header::SET_COOKIE, cookie);
            r
        }
        Err(e) => {
            count(ctx, "unavailable");
            page::store_failure(&e, ctx.request_id())
        }
    }
}

/// Reads an `application/x-www-form-urlencoded` body of at most 64 KiB that arrives within
/// `timeout` (`server.request_body_timeout`).
pub async fn read_form(body: Incoming, timeout: std::time::Duration) -> Result<Params, StatusCode> {
    let bytes = match read_to_limit(body, MAX_FORM_BYTES, timeout).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => return Err(StatusCode::PAYLOAD_TOO_LARGE),
        Err(ReadError::TimedOut) => return Err(StatusCode::REQUEST_TIMEOUT),
        Err(ReadError::Unreadable(_)) => return Err(StatusCode::BAD_REQUEST),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| StatusCode::BAD_REQUEST)?;
    Params::parse(text).map_err(|_| StatusCode::BAD_REQUEST)
}

fn count(ctx: &Ctx<'_>, result: &str) {
    ctx.metrics
        .login_attempts
        .with_label_values(&[result])
        .inc();
}
