//! The authorization server's router (SPEC §3.1): each endpoint in its own module.

use http::{Request, Response};
use hyper::body::Incoming;

use super::caches::OAuthCaches;
use crate::auth::context::Ctx;
use crate::body::Body;

const CONFLUENCE_ALIASES: [&str; 4] = [
    "/rest/oauth2/latest/authorize",
    "/rest/oauth2/latest/token",
    "/rest/oauth2/1.0/authorize",
    "/rest/oauth2/1.0/token",
];

/// Whether `path` is one of the authorization server's: `/oauth2/*`, the RFC 8414 metadata, and
/// with `confluence_paths` the Confluence aliases.
pub fn is_oauth_path(path: &str, confluence_paths: bool) -> bool {
    path.starts_with("/oauth2/")
        || path == "/.well-known/oauth-authorization-server"
        || (confluence_paths && CONFLUENCE_ALIASES.contains(&path))
}

/// The Confluence alias's standard path (`/rest/oauth2/latest/token` → `/oauth2/token`).
pub fn canonical_oauth_path(path: &str) -> &str {
    match path {
        "/rest/oauth2/latest/authorize" | "/rest/oauth2/1.0/authorize" => "/oauth2/authorize",
        "/rest/oauth2/latest/token" | "/rest/oauth2/1.0/token" => "/oauth2/token",
        other => other,
    }
}

/// Answers a request under `/oauth2/`, the metadata path, or a Confluence alias. `oauth` is
/// this replica's authorization-server state.
pub async fn handle(ctx: &Ctx<'_>, oauth: &OAuthCaches, req: Request<Incoming>) -> Response<Body> {
    let path = canonical_oauth_path(req.uri().path()).to_string();
    match path.as_str() {
        "/oauth2/token" => super::token::handle(ctx, oauth, req).await,
        "/oauth2/revoke" => super::revoke::handle(ctx, oauth, req).await,
        "/oauth2/introspect" => super::introspect::handle(ctx, oauth, req).await,
        "/oauth2/jwks" | "/.well-known/oauth-authorization-server" => {
            super::metadata::handle(ctx, req).await
        }
        _ => super::reply::not_found(ctx.request_id()),
    }
}
