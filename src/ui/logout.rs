//! `GET/POST /logout` (SPEC §3.2): a sign-out form whose CSRF token is bound to the session;
//! the POST deletes the session from the store, clears the cookie, and goes to `/login`.

use askama::Template;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::cookies::{self, SESSION_COOKIE};
use super::{csrf, page, session};
use crate::body::Body;
use crate::server::own::Ctx;

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    user: &'a str,
    csrf_token: &'a str,
}

pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    let current = match session::current(ctx, req.headers()).await {
        Ok(c) => c,
        Err(e) => return super::store_failure(ctx, &e),
    };
    match *req.method() {
        Method::GET | Method::HEAD => match current {
            None => page::see_other("/login"),
            Some(s) => match csrf::token(&s.secret, csrf::LOGOUT) {
                Some(token) => {
                    let view = LogoutPage {
                        user: &s.user,
                        csrf_token: &token,
                    };
                    page::render(StatusCode::OK, &view, None, ctx.request_id())
                }
                None => super::internal(ctx, "deriving a CSRF token failed"),
            },
        },
        Method::POST => {
            let Some(s) = current else {
                // Nothing to end; a stale cookie is cleared anyway.
                let mut r = page::see_other("/login");
                if cookies::get(req.headers(), SESSION_COOKIE).is_some() {
                    r.headers_mut().append(
                        header::SET_COOKIE,
                        cookies::clear(SESSION_COOKIE, "/", "Lax"),
                    );
                }
                return r;
            };
            let timeout = ctx.gateway.config.server.request_body_timeout;
            let params = match super::login::read_form(req.into_body(), timeout).await {
                Ok(p) => p,
                Err(status) => {
                    return page::error(
                        status,
                        "Bad request",
                        "The form could not be read.",
                        None,
                        ctx.request_id(),
                    );
                }
            };
            let presented = params.get("csrf_token").unwrap_or_default();
            if !csrf::verify(&s.secret, csrf::LOGOUT, presented) {
                return page::error(
                    StatusCode::BAD_REQUEST,
                    "Sign-out not confirmed",
                    "This sign-out form is not valid for your session. Open the sign-out page again.",
                    None,
                    ctx.request_id(),
                );
            }
            match session::end(ctx, &s.secret).await {
                Ok(clear) => {
                    tracing::info!(request_id = ctx.request_id(), user = %s.user, "logout");
                    let mut r = page::see_other("/login");
                    r.headers_mut().append(header::SET_COOKIE, clear);
                    r
                }
                Err(e) => super::store_failure(ctx, &e),
            }
        }
        _ => super::method_not_allowed(ctx),
    }
}
