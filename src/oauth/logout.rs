//! `GET /oauth2/logout` (SPEC §3.1, after OpenID Connect RP-Initiated Logout 1.0 §2–3): ends
//! the login session (`gatehouse_session`) and sends the browser to the app's
//! `post_logout_redirect_uri` — only one of its registered `allowedLogoutUrls`, compared
//! exactly — with `state`. Anything else is an error page (400) that never redirects.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::params::Params;
use super::redirect::with_params;
use crate::body::Body;
use crate::server::own::Ctx;
use crate::ui::cookies::{self, SESSION_COOKIE};
use crate::ui::{page, session, store_failure};

pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        let mut r = refuse(
            ctx,
            StatusCode::METHOD_NOT_ALLOWED,
            "This page only answers GET.",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    let params = match req.uri().query().map(Params::parse).transpose() {
        Ok(p) => p.unwrap_or_default(),
        Err(_) => {
            return refuse(
                ctx,
                StatusCode::BAD_REQUEST,
                "The sign-out request is malformed.",
            );
        }
    };
    let (Some(client_id), Some(target)) = (
        params.get("client_id"),
        params.get("post_logout_redirect_uri"),
    ) else {
        return refuse(
            ctx,
            StatusCode::BAD_REQUEST,
            "The sign-out request needs client_id and post_logout_redirect_uri.",
        );
    };
    let app = match ctx.gateway.store.get_app_by_client_id(client_id).await {
        Ok(app) => app.filter(|a| a.active),
        Err(e) => return store_failure(ctx, &e),
    };
    let Some(app) = app else {
        return refuse(ctx, StatusCode::BAD_REQUEST, "The application is unknown.");
    };
    if !app.allowed_logout_urls.iter().any(|u| u == target) {
        return refuse(
            ctx,
            StatusCode::BAD_REQUEST,
            "This sign-out redirect address is not registered for the application.",
        );
    }
    let cleared = match cookies::get(req.headers(), SESSION_COOKIE) {
        Some(value) => match session::end(ctx, value).await {
            Ok(cookie) => Some(cookie),
            Err(e) => return store_failure(ctx, &e),
        },
        None => None,
    };
    let location = match params.get("state") {
        Some(state) => with_params(target, &[("state", state)]),
        None => target.to_owned(),
    };
    let mut response = page::see_other(&location);
    if let Some(cookie) = cleared {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

fn refuse(ctx: &Ctx<'_>, status: StatusCode, message: &str) -> Response<Body> {
    page::error(status, "Sign-out failed", message, None, ctx.request_id())
}
