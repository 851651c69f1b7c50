//! The authorization server's router (SPEC §3.1): each endpoint in its own module.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::Body;
use crate::error::json_error;
use crate::server::own::{Ctx, canonical_oauth_path};

/// Answers a request under `/oauth2/`, the metadata path, or a Confluence alias.
pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    let path = canonical_oauth_path(req.uri().path()).to_string();
    match path.as_str() {
        "/oauth2/authorize" => super::authorize::handle(ctx, req).await,
        "/oauth2/token" => super::token::handle(ctx, req).await,
        "/oauth2/revoke" => super::revoke::handle(ctx, req).await,
        "/oauth2/introspect" => super::introspect::handle(ctx, req).await,
        "/oauth2/jwks" | "/.well-known/oauth-authorization-server" => {
            super::metadata::handle(ctx, req).await
        }
        "/oauth2/logout" => super::logout::handle(ctx, req).await,
        _ => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
            ctx.request_id(),
        ),
    }
}
