//! The gateway's own endpoints on the public listener (SPEC §3.1–3.3): the authorization
//! server, the login pages and the management API. They are matched on the exact request
//! path before any route, so no `[[routes]]` entry can shadow them.

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::Gateway;
use super::conn::ConnInfo;
use super::reload::Snapshot;
use crate::auth::context::{Caller, Ctx};
use crate::body::Body;
use crate::oauth::endpoints::{canonical_oauth_path, is_oauth_path};

impl Gateway {
    /// One request's [`Ctx`]: the gateway's services and `live`'s config snapshot.
    pub fn ctx<'a>(
        &'a self,
        live: &'a Snapshot,
        peer: std::net::SocketAddr,
        request_id: &'a HeaderValue,
    ) -> Ctx<'a> {
        Ctx {
            store: &self.store,
            clock: &self.clock,
            metrics: &self.metrics,
            keys: &self.keys,
            auth: &self.auth,
            login: &self.login,
            config: &live.config,
            directory: &live.directory,
            peer,
            request_id,
            caller: std::sync::Mutex::default(),
        }
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
    /// `/auth/verify` and `/auth/verify/<original path>`: forward-auth (SPEC §7.4).
    Verify,
}

impl Endpoint {
    /// The `route` label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::OAuth => "gatehouse:oauth2",
            Self::Apps => "gatehouse:v1",
            Self::Ui => "gatehouse:login",
            Self::Verify => "gatehouse:verify",
        }
    }
}

/// The own endpoint family `path` belongs to, if any.
pub fn classify(path: &str, confluence_paths: bool) -> Option<Endpoint> {
    if is_oauth_path(path, confluence_paths) {
        return Some(Endpoint::OAuth);
    }
    if path.starts_with("/v1/") || path == "/v1" {
        return Some(Endpoint::Apps);
    }
    if path == "/login" || path == "/logout" {
        return Some(Endpoint::Ui);
    }
    if crate::proxy::verify::is_verify_path(path) {
        return Some(Endpoint::Verify);
    }
    None
}

/// Answers a request for one of the gateway's own endpoints: each family gets the request's
/// [`Ctx`] (the services and the config snapshot of `live`), and the authorization server its
/// own state besides.
pub async fn handle(
    endpoint: Endpoint,
    gateway: &Gateway,
    live: &Snapshot,
    conn: &ConnInfo,
    request_id: &HeaderValue,
    req: Request<Incoming>,
) -> Response<Body> {
    let ctx = gateway.ctx(live, conn.peer, request_id);
    let mut response = match endpoint {
        // The two authorization-server endpoints a browser sees are pages (ui); the rest
        // answer machines (oauth).
        Endpoint::OAuth => match canonical_oauth_path(req.uri().path()) {
            "/oauth2/authorize" => crate::ui::authorize::handle(&ctx, req).await,
            "/oauth2/logout" => crate::ui::app_logout::handle(&ctx, req).await,
            _ => crate::oauth::endpoints::handle(&ctx, &gateway.oauth, req).await,
        },
        Endpoint::Apps => crate::apps::api::handle(&ctx, req).await,
        Endpoint::Ui => crate::ui::handle(&ctx, req).await,
        Endpoint::Verify => {
            let routed = crate::proxy::verify::handle(&ctx, &live.proxy, conn, req).await;
            routed
                .response
                .unwrap_or_else(|e| e.into_response(ctx.request_id()))
        }
    };
    // Who it was, for the access log (read back by `dispatch`).
    let caller = ctx.take_caller();
    if caller != Caller::default() {
        response.extensions_mut().insert(caller);
    }
    response
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
        assert_eq!(classify("/auth/verify", true), Some(Endpoint::Verify));
        assert_eq!(
            classify("/auth/verify/rest/api", true),
            Some(Endpoint::Verify)
        );
        assert_eq!(classify("/auth/verifyx", true), None);
        assert_eq!(classify("/rest/api", true), None);
        assert_eq!(
            canonical_oauth_path("/rest/oauth2/1.0/authorize"),
            "/oauth2/authorize"
        );
    }
}
