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
pub mod return_to;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::auth::context::Ctx;
use crate::body::Body;
use crate::store::StoreError;

pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/login" => login::handle(ctx, req).await,
        "/logout" => logout::handle(ctx, req).await,
        _ => page::error(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such page.",
            None,
            ctx.request_id(),
        ),
    }
}

pub(crate) fn method_not_allowed(ctx: &Ctx<'_>) -> Response<Body> {
    page::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "This page does not answer that method.",
        None,
        ctx.request_id(),
    )
}

/// A 500 page; `cause` goes to the log with the request id, never to the client.
pub(crate) fn internal(ctx: &Ctx<'_>, cause: &str) -> Response<Body> {
    tracing::error!(request_id = ctx.request_id(), cause, "internal error");
    page::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The request could not be completed.",
        None,
        ctx.request_id(),
    )
}

/// The page for a store failure: 503 when the store cannot be reached, 500 otherwise.
pub(crate) fn store_failure(ctx: &Ctx<'_>, e: &StoreError) -> Response<Body> {
    tracing::error!(request_id = ctx.request_id(), error = %e, "store failure");
    let status = StatusCode::from_u16(e.http_status())
        .ok()
        .filter(|s| s.is_server_error())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    page::error(
        status,
        "Temporarily unavailable",
        "The service cannot complete this request right now. Please try again.",
        None,
        ctx.request_id(),
    )
}
