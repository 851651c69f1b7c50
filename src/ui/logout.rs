//! Signing out (SPEC §3.1–3.2): `GET/POST /logout`, and the confirmation it shares with
//! `/oauth2/logout` — a page whose form carries a CSRF token bound to the session, and the
//! POST that checks the token before it deletes the session from the store and clears the
//! cookie. A link alone (a GET, a cross-site form without the token) never ends a session.

use askama::Template;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{csrf, page};
use crate::auth::context::Ctx;
use crate::auth::cookies::{self, SESSION_COOKIE};
use crate::auth::session;
use crate::auth::session::Current;
use crate::body::Body;
use crate::oauth::params::Params;

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    user: &'a str,
    csrf_token: &'a str,
    action: &'a str,
    app: Option<&'a str>,
    fields: &'a [(&'a str, &'a str)],
}

/// What a sign-out confirmation page shows and where its form goes.
pub struct Confirmation<'a> {
    /// The path the form posts to (`/logout`, `/oauth2/logout`).
    pub action: &'a str,
    /// The app that asked for the sign-out, named on the page.
    pub app: Option<&'a str>,
    /// Hidden fields the POST needs besides `csrf_token` (already validated).
    pub fields: &'a [(&'a str, &'a str)],
    /// The origin the POST's answer redirects to, added to the CSP `form-action`.
    pub redirect_origin: Option<&'a str>,
}

/// The confirmation page for the signed-in `session`.
pub fn confirmation_page(ctx: &Ctx<'_>, session: &Current, c: &Confirmation<'_>) -> Response<Body> {
    let Some(token) = csrf::token(&session.secret, csrf::LOGOUT) else {
        return page::internal("deriving a CSRF token failed", ctx.request_id());
    };
    let view = LogoutPage {
        user: &session.user,
        csrf_token: &token,
        action: c.action,
        app: c.app,
        fields: c.fields,
    };
    page::render(StatusCode::OK, &view, c.redirect_origin, ctx.request_id())
}

/// Reads the confirmation form (or answers with the page saying it could not be read).
pub async fn read_confirmation(ctx: &Ctx<'_>, body: Incoming) -> Result<Params, Response<Body>> {
    let timeout = ctx.config.server.request_body_timeout;
    super::login::read_form(body, timeout)
        .await
        .map_err(|status| {
            page::error(
                status,
                "Bad request",
                "The form could not be read.",
                None,
                ctx.request_id(),
            )
        })
}

/// Ends `session` if `presented` is its sign-out CSRF token, returning the `Set-Cookie` that
/// clears the cookie; otherwise the 400 page, and the session lives on.
pub async fn end_confirmed(
    ctx: &Ctx<'_>,
    session: &Current,
    presented: &str,
) -> Result<HeaderValue, Response<Body>> {
    if !csrf::verify(&session.secret, csrf::LOGOUT, presented) {
        return Err(page::error(
            StatusCode::BAD_REQUEST,
            "Sign-out not confirmed",
            "This sign-out form is not valid for your session. Open the sign-out page again.",
            None,
            ctx.request_id(),
        ));
    }
    match session::end(ctx, &session.secret).await {
        Ok(clear) => {
            tracing::info!(request_id = ctx.request_id(), user = %session.user, "logout");
            Ok(clear)
        }
        Err(e) => Err(page::store_failure(&e, ctx.request_id())),
    }
}

/// The `Set-Cookie` that clears a session cookie naming no live session, if one was sent.
pub fn clear_stale(ctx: &Ctx<'_>, headers: &HeaderMap) -> Option<HeaderValue> {
    cookies::get(headers, SESSION_COOKIE).map(|_| session::clear_cookie(ctx.config))
}

const FORM: Confirmation<'static> = Confirmation {
    action: "/logout",
    app: None,
    fields: &[],
    redirect_origin: None,
};

pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let current = match session::current(ctx, &parts.headers).await {
        Ok(c) => c,
        Err(e) => return page::store_failure(&e, ctx.request_id()),
    };
    match parts.method {
        Method::GET | Method::HEAD => match current {
            None => page::see_other("/login"),
            Some(s) => confirmation_page(ctx, &s, &FORM),
        },
        Method::POST => {
            let Some(s) = current else {
                // Nothing to end; a stale cookie is cleared anyway.
                let mut r = page::see_other("/login");
                if let Some(clear) = clear_stale(ctx, &parts.headers) {
                    r.headers_mut().append(header::SET_COOKIE, clear);
                }
                return r;
            };
            let params = match read_confirmation(ctx, body).await {
                Ok(p) => p,
                Err(r) => return r,
            };
            let presented = params.get("csrf_token").unwrap_or_default();
            match end_confirmed(ctx, &s, presented).await {
                Ok(clear) => {
                    let mut r = page::see_other("/login");
                    r.headers_mut().append(header::SET_COOKIE, clear);
                    r
                }
                Err(r) => r,
            }
        }
        _ => page::method_not_allowed("GET, HEAD, POST", ctx.request_id()),
    }
}
