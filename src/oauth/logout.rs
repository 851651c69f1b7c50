//! `GET /oauth2/logout` (SPEC §3.1, after OpenID Connect RP-Initiated Logout 1.0 §2–3): ends
//! the login session (`gatehouse_session`) and sends the browser to the app's
//! `post_logout_redirect_uri` — only one of its registered `allowedLogoutUrls`, compared
//! exactly — with `state`. Anything else is an error page (400) that never redirects.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::params::Params;
use crate::body::{Body, full};
use crate::server::guard::{percent_encode, session_cookie};
use crate::server::own::Ctx;
use crate::store::secret_hash;

pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        let mut r = page(
            StatusCode::METHOD_NOT_ALLOWED,
            "This page only answers GET.",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    let params = match req.uri().query().map(Params::parse).transpose() {
        Ok(p) => p.unwrap_or_default(),
        Err(_) => return page(StatusCode::BAD_REQUEST, "The logout request is malformed."),
    };
    let (Some(client_id), Some(target)) = (
        params.get("client_id"),
        params.get("post_logout_redirect_uri"),
    ) else {
        return page(
            StatusCode::BAD_REQUEST,
            "The logout request needs client_id and post_logout_redirect_uri.",
        );
    };
    let app = match ctx.gateway.store.get_app_by_client_id(client_id).await {
        Ok(app) => app.filter(|a| a.active),
        Err(e) => return unavailable(&e),
    };
    let Some(app) = app else {
        return page(StatusCode::BAD_REQUEST, "The application is unknown.");
    };
    if !app.allowed_logout_urls.iter().any(|u| u == target) {
        return page(
            StatusCode::BAD_REQUEST,
            "This logout redirect address is not registered for the application.",
        );
    }
    if let Some(value) = session_cookie(req.headers())
        && let Err(e) = ctx.gateway.store.delete_session(&secret_hash(value)).await
    {
        return unavailable(&e);
    }
    let location = match params.get("state") {
        Some(state) => {
            let sep = if target.contains('?') { '&' } else { '?' };
            format!("{target}{sep}state={}", percent_encode(state))
        }
        None => target.to_owned(),
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return page(StatusCode::BAD_REQUEST, "The logout request is malformed.");
    };
    let mut response = page(StatusCode::SEE_OTHER, "Signed out.");
    let h = response.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::SET_COOKIE, HeaderValue::from_static(clear_cookie()));
    response
}

const fn clear_cookie() -> &'static str {
    "gatehouse_session=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax"
}

fn unavailable(e: &crate::store::StoreError) -> Response<Body> {
    tracing::error!(error = %e, "logout: store failure");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The service is temporarily unavailable. Please try again.",
    )
}

/// A small fixed page: `message` is always one of this module's constants, never input.
fn page(status: StatusCode, message: &'static str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>gatehouse</title></head>\
         <body><main><h1>Sign out</h1><p>{message}</p></main></body></html>"
    );
    let mut response = Response::new(full(html));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cleared_cookie_names_the_session_cookie() {
        assert!(
            super::clear_cookie()
                .starts_with(&format!("{}=;", crate::proxy::headers::SESSION_COOKIE))
        );
    }
}
