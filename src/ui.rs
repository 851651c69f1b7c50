//! ui: the browser pages (SPEC §3.2, SECURITY.md "Browser pages") — `/login` and `/logout`,
//! and the pieces the consent page shares with them: askama templates with strict security
//! headers, cookies, CSRF tokens, login sessions and `return_to` checks.

pub mod app_logout;
pub mod authorize;
pub mod consent;
pub mod csrf;
pub mod login;
pub mod logout;
pub mod page;
pub mod provider_flow;
pub mod provider_login;
pub mod return_to;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::auth::context::Ctx;
use crate::body::Body;

pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/login" => login::handle(ctx, req).await,
        "/logout" => logout::handle(ctx, req).await,
        path => match path.strip_prefix("/login/") {
            Some(rest) => {
                let rest = rest.to_owned();
                provider_login::handle(ctx, &rest, req).await
            }
            None => page::not_found(ctx.request_id()),
        },
    }
}
