//! `/oauth2/logout` (SPEC §3.1, after OpenID Connect RP-Initiated Logout 1.0 §2–3, with the
//! user's confirmation its §2 allows): `client_id`, `post_logout_redirect_uri` — only one of
//! the app's registered `allowedLogoutUrls`, compared exactly — and `state`. The GET shows a
//! sign-out confirmation (`ui::logout`) carrying them with a CSRF token bound to the session,
//! so a cross-site link never ends a session; the confirmed POST ends it and redirects (303)
//! with `state`. Bad parameters get an error page (400) that never redirects; without a
//! session there is nothing to confirm and the browser goes straight back.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::logout::{Confirmation, clear_stale, confirmation_page, end_confirmed};
use super::{logout, page};
use crate::auth::context::Ctx;
use crate::auth::session;
use crate::body::Body;
use crate::oauth::params::Params;
use crate::oauth::redirect::{origin, with_params};
use crate::store::App;

pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let confirmed = match parts.method {
        Method::GET | Method::HEAD => false,
        Method::POST => true,
        _ => return page::method_not_allowed("GET, HEAD, POST", ctx.request_id()),
    };
    let params = if confirmed {
        match logout::read_confirmation(ctx, body).await {
            Ok(p) => p,
            Err(r) => return r,
        }
    } else {
        match parts.uri.query().map(Params::parse).transpose() {
            Ok(p) => p.unwrap_or_default(),
            Err(_) => {
                return refuse(
                    ctx,
                    StatusCode::BAD_REQUEST,
                    "The sign-out request is malformed.",
                );
            }
        }
    };
    let (app, target) = match checked(ctx, &params).await {
        Ok(ok) => ok,
        Err(r) => return r,
    };
    let state = params.get("state");
    let current = match session::current(ctx, &parts.headers).await {
        Ok(c) => c,
        Err(e) => return page::store_failure(&e, ctx.request_id()),
    };
    let Some(current) = current else {
        return back(target, state, clear_stale(ctx, &parts.headers));
    };
    if confirmed {
        let presented = params.get("csrf_token").unwrap_or_default();
        return match end_confirmed(ctx, &current, presented).await {
            Ok(clear) => back(target, state, Some(clear)),
            Err(r) => r,
        };
    }
    let mut fields = vec![
        ("client_id", app.client_id.as_str()),
        ("post_logout_redirect_uri", target),
    ];
    if let Some(s) = state {
        fields.push(("state", s));
    }
    let form = Confirmation {
        action: "/oauth2/logout",
        app: Some(&app.display_name),
        fields: &fields,
        redirect_origin: origin(target),
    };
    confirmation_page(ctx, &current, &form)
}

/// The active app named by `client_id` and the `post_logout_redirect_uri`, which must be one
/// of its `allowedLogoutUrls`; anything else is the error page.
async fn checked<'p>(ctx: &Ctx<'_>, params: &'p Params) -> Result<(App, &'p str), Response<Body>> {
    let (Some(client_id), Some(target)) = (
        params.get("client_id"),
        params.get("post_logout_redirect_uri"),
    ) else {
        return Err(refuse(
            ctx,
            StatusCode::BAD_REQUEST,
            "The sign-out request needs client_id and post_logout_redirect_uri.",
        ));
    };
    let app = match ctx.store.get_app_by_client_id(client_id).await {
        Ok(app) => app.filter(|a| a.active),
        Err(e) => return Err(page::store_failure(&e, ctx.request_id())),
    };
    let Some(app) = app else {
        return Err(refuse(
            ctx,
            StatusCode::BAD_REQUEST,
            "The application is unknown.",
        ));
    };
    if !app.allowed_logout_urls.iter().any(|u| u == target) {
        return Err(refuse(
            ctx,
            StatusCode::BAD_REQUEST,
            "This sign-out redirect address is not registered for the application.",
        ));
    }
    Ok((app, target))
}

/// The 303 back to the app's registered `target`, with `state`.
fn back(target: &str, state: Option<&str>, set_cookie: Option<HeaderValue>) -> Response<Body> {
    let location = match state {
        Some(state) => with_params(target, &[("state", state)]),
        None => target.to_owned(),
    };
    let mut response = page::see_other(&location);
    if let Some(cookie) = set_cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

fn refuse(ctx: &Ctx<'_>, status: StatusCode, message: &str) -> Response<Body> {
    page::error(status, "Sign-out failed", message, None, ctx.request_id())
}
