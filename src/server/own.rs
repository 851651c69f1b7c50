//! The gateway's own endpoints on the public listener (SPEC §3.1–3.3): the authorization
//! server, the login pages and the management API. They are matched on the exact request
//! path before any route, so no `[[routes]]` entry can shadow them.

use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::Gateway;
use super::conn::ConnInfo;
use super::reload::Live;
use crate::body::Body;

/// What an own-endpoint handler gets besides the request.
pub struct Ctx<'a> {
    pub gateway: &'a Gateway,
    pub live: Arc<Live>,
    pub conn: &'a ConnInfo,
    pub request_id: &'a HeaderValue,
}

impl Ctx<'_> {
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }
}

/// Which family of endpoints a path belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/oauth2/*`, `/.well-known/oauth-authorization-server`, Confluence aliases.
    OAuth,
    /// `/v1/*`: the management API.
    Apps,
    /// `/login`, `/logout`.
    Ui,
}

impl Endpoint {
    /// The `route` label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::OAuth => "gatehouse:oauth2",
            Self::Apps => "gatehouse:v1",
            Self::Ui => "gatehouse:login",
        }
    }
}

const CONFLUENCE_ALIASES: [&str; 4] = [
    "/rest/oauth2/latest/authorize",
    "/rest/oauth2/latest/token",
    "/rest/oauth2/1.0/authorize",
    "/rest/oauth2/1.0/token",
];

/// The own endpoint family `path` belongs to, if any.
pub fn classify(path: &str, confluence_paths: bool) -> Option<Endpoint> {
    if path.starts_with("/oauth2/") || path == "/.well-known/oauth-authorization-server" {
        return Some(Endpoint::OAuth);
    }
    if confluence_paths && CONFLUENCE_ALIASES.contains(&path) {
        return Some(Endpoint::OAuth);
    }
    if path.starts_with("/v1/") || path == "/v1" {
        return Some(Endpoint::Apps);
    }
    if path == "/login" || path == "/logout" {
        return Some(Endpoint::Ui);
    }
    None
}

/// The Confluence alias's standard path (`/rest/oauth2/latest/token` → `/oauth2/token`).
pub fn canonical_oauth_path(path: &str) -> &str {
    match path {
        "/rest/oauth2/latest/authorize" | "/rest/oauth2/1.0/authorize" => "/oauth2/authorize",
        "/rest/oauth2/latest/token" | "/rest/oauth2/1.0/token" => "/oauth2/token",
        other => other,
    }
}

/// Answers a request for one of the gateway's own endpoints.
pub async fn handle(endpoint: Endpoint, ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    match endpoint {
        Endpoint::OAuth => crate::oauth::endpoints::handle(ctx, req).await,
        Endpoint::Apps => crate::apps::api::handle(ctx, req).await,
        Endpoint::Ui => crate::ui::handle(ctx, req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_paths_are_recognized_exactly() {
        assert_eq!(classify("/oauth2/token", true), Some(Endpoint::OAuth));
        assert_eq!(
            classify("/.well-known/oauth-authorization-server", true),
            Some(Endpoint::OAuth)
        );
        assert_eq!(
            classify("/rest/oauth2/latest/token", true),
            Some(Endpoint::OAuth)
        );
        assert_eq!(classify("/rest/oauth2/latest/token", false), None);
        assert_eq!(classify("/v1/oauthApps", true), Some(Endpoint::Apps));
        assert_eq!(classify("/login", true), Some(Endpoint::Ui));
        assert_eq!(classify("/loginx", true), None);
        assert_eq!(classify("/rest/api", true), None);
        assert_eq!(
            canonical_oauth_path("/rest/oauth2/1.0/authorize"),
            "/oauth2/authorize"
        );
    }
}
