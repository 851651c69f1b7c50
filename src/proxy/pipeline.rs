//! The whole proxied request (SPEC §3.4), from route match to the upstream's answer: the path
//! made canonical, the route chosen, the caller checked against the route (`guard`), the
//! identity headers and assertion made, and the request forwarded. The server hands every
//! request that is not one of the gateway's own endpoints here.

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::forward::{Forwarder, ForwarderError};
use super::guard;
use super::headers::{ClientFacts, HeaderPolicy, Identity};
use super::path::normalize;
use super::routes::{Route, RouteTable, request_host};
use super::tunnel::Tunnels;
use crate::auth::Principal;
use crate::auth::context::Ctx;
use crate::auth::directory::Directory;
use crate::auth::jwt::AssertionClaims;
use crate::body::Body;
use crate::config::{AuthMode, Config};
use crate::error::GatewayError;
use crate::metrics::Metrics;

/// What the proxy keeps per config: the route table, the upstream connection pools and the
/// header policy. A reload builds a new one, taking over the pools of unchanged upstreams.
pub struct State {
    pub routes: RouteTable,
    pub forwarder: Forwarder,
    pub headers: HeaderPolicy,
}

impl State {
    /// `previous`: the state being replaced on a reload.
    pub fn build(
        config: &Config,
        directory: &Directory,
        metrics: &Metrics,
        previous: Option<&State>,
    ) -> Result<Self, ForwarderError> {
        let forwarder = Forwarder::new(&config.routes, previous.map(|p| &p.forwarder))?;
        let auth = &config.auth;
        let headers = HeaderPolicy::new(
            &[
                &auth.user_header,
                &auth.scopes_header,
                &auth.client_id_header,
                &auth.groups_header,
            ],
            config.server.trusted_proxies.clone(),
        )
        .forwarding_groups(auth.forward_groups.clone());
        let routes = RouteTable::new(&config.routes, &directory.scopes, metrics);
        Ok(Self {
            routes,
            forwarder,
            headers,
        })
    }
}

/// What the proxy knows about the client connection a request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: std::net::SocketAddr,
    /// The peer's address as a header value, made once per connection.
    pub peer_value: HeaderValue,
    /// `"https"` for the TLS listener, `"http"` for the plain one.
    pub scheme: &'static str,
    /// Where an upgraded request's tunnel runs.
    pub tunnels: Tunnels,
}

impl ConnInfo {
    pub fn new(peer: std::net::SocketAddr, scheme: &'static str, tunnels: Tunnels) -> Self {
        Self {
            peer,
            peer_value: super::headers::ip_header_value(peer.ip()),
            scheme,
            tunnels,
        }
    }
}

/// The answer, with what the metrics and the access log say of it.
pub struct Routed {
    pub response: Result<Response<Body>, GatewayError>,
    /// The route it went through, once one matched.
    pub route: Option<Arc<Route>>,
    /// Who the gateway let through, on a protected route.
    pub principal: Option<Arc<Principal>>,
    /// From the start of forwarding to the upstream's response head (or the failure).
    pub upstream: Option<std::time::Duration>,
}

impl Routed {
    /// An answer given before anything was forwarded.
    pub fn early(
        response: Result<Response<Body>, GatewayError>,
        route: Option<Arc<Route>>,
    ) -> Self {
        Self {
            response,
            route,
            principal: None,
            upstream: None,
        }
    }
}

/// The route for a request whose path is `raw_path` and whose host `host` gives (asked only
/// when some route names a host), with the path made canonical (SPEC §3.4): the one decision
/// that a proxied request and a forward-auth check (`verify`) share. A path that normalization
/// refuses is 400; no route is 404.
pub fn select<'p, 'h>(
    routes: &RouteTable,
    raw_path: &'p str,
    host: impl FnOnce() -> Option<&'h str>,
) -> Result<(Arc<Route>, Cow<'p, str>), GatewayError> {
    let path = normalize(raw_path).map_err(|e| GatewayError::BadPath(e.message()))?;
    let host = if routes.matches_hosts() { host() } else { None };
    match routes.find(host, &path) {
        Some(route) => Ok((route.clone(), path)),
        None => Err(GatewayError::NoRoute),
    }
}

/// Answers one proxied request.
pub async fn handle(
    ctx: &Ctx<'_>,
    state: &State,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Routed {
    let request_id = ctx.request_id;
    let (route, path) = match select(&state.routes, req.uri().path(), || {
        request_host(req.uri(), req.headers())
    }) {
        Ok(found) => found,
        Err(e) => return Routed::early(Err(e), None),
    };
    if route.config.upstream.is_none() {
        // A forward-auth-only route (`upstream = ""`): nothing behind it to proxy to, so no
        // route for a proxied request, decided before any credential is looked at.
        return Routed::early(Err(GatewayError::NoRoute), None);
    }
    let principal = if route.auth == AuthMode::None {
        None
    } else {
        // Boxed: a session lookup is a large future, which the common path should not carry.
        match Box::pin(guard::check(ctx, &route, req.method(), req.headers())).await {
            guard::Decision::Allow(p) => Some(p),
            guard::Decision::Login => {
                let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
                let response = guard::login_redirect(target);
                return Routed::early(Ok(response), Some(route));
            }
            guard::Decision::Deny(response) => return Routed::early(Ok(response), Some(route)),
        }
    };
    // Owned only when normalization rewrote the path; the common case stays allocation-free.
    let rewritten = match path {
        Cow::Borrowed(_) => None,
        Cow::Owned(p) => Some(p),
    };
    let facts = ClientFacts {
        peer: conn.peer.ip(),
        peer_value: &conn.peer_value,
        scheme: conn.scheme,
        host: forwarded_host(&req),
        request_id,
    };
    let identity = principal.as_deref().map(|p| identity(ctx, &route, p));
    if route.config.assertion && identity.as_ref().is_some_and(|i| i.assertion.is_none()) {
        // The upstream relies on the assertion: fail closed rather than forward without it.
        return Routed::early(Err(GatewayError::Internal), Some(route));
    }
    let (result, upstream) = state
        .forwarder
        .forward(
            &route,
            req,
            rewritten.as_deref(),
            &state.headers,
            &facts,
            identity.as_ref(),
            &conn.tunnels,
        )
        .await;
    Routed {
        response: result,
        route: Some(route),
        principal,
        upstream,
    }
}

/// The identity headers for `principal` on `route`, with a fresh assertion where asked for.
pub fn identity<'a>(ctx: &Ctx<'_>, route: &Route, principal: &'a Principal) -> Identity<'a> {
    let assertion = route
        .config
        .assertion
        .then(|| assertion(ctx, route, principal))
        .flatten();
    Identity {
        user: principal.user_value(),
        scopes: &principal.scopes_value,
        client_id: principal.client_id_value(),
        groups: principal.groups(),
        assertion,
    }
}

/// A 60-second JWT saying who the gateway vouches for, addressed to the route's upstream.
fn assertion(ctx: &Ctx<'_>, route: &Route, principal: &Principal) -> Option<HeaderValue> {
    let jti = crate::auth::secret::new_id().ok()?;
    let scope = principal.scopes_value.to_str().ok()?;
    let audience = route.config.upstream.as_ref()?.to_string();
    let claims = AssertionClaims::new(
        &ctx.config.server.public_url,
        principal.user(),
        audience.trim_end_matches('/'),
        scope,
        principal.client_id(),
        ctx.clock.unix_seconds(),
        jti,
    );
    match ctx.keys.sign_assertion(&claims) {
        Ok(jwt) => HeaderValue::from_str(&jwt).ok(),
        Err(e) => {
            tracing::error!(error = %e, "signing the assertion failed");
            None
        }
    }
}

/// The host the client asked for, as `X-Forwarded-Host` carries it (with its port, if any).
fn forwarded_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(http::header::HOST).cloned(),
    }
}
