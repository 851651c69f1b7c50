//! Forward-auth (SPEC §7.4, SECURITY.md "Talking to other identity systems"): `/auth/verify`
//! answers an ingress's authorization sub-request (nginx `auth_request`, Traefik `forwardAuth`,
//! Caddy `forward_auth`, Envoy `ext_authz` in HTTP mode) for the original request it describes.
//! Only a peer in `server.trusted_proxies` may describe one. The original path goes through the
//! proxy's own route selection (`pipeline::select`) and the caller through its own check
//! (`guard::check`), so a decision here is the decision a proxied request would get, with the
//! same token cache and metrics. The body is never read.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::guard::{self, Decision, Refusal};
use super::pipeline::{ConnInfo, Routed, State, identity, select};
use crate::auth::AuthFailure;
use crate::auth::context::Ctx;
use crate::body::Body;
use crate::config::AuthMode;
use crate::error::{GatewayError, json_error};

/// The path of the endpoint; Envoy appends the original path to it.
pub const PATH: &str = "/auth/verify";

/// Whether `path` is `/auth/verify` or below it (Envoy's `/auth/verify/<original path>`).
pub fn is_verify_path(path: &str) -> bool {
    path.strip_prefix(PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");

/// The request the ingress asks about, as one of its styles describes it.
#[derive(Debug, PartialEq, Eq)]
struct Original {
    method: Method,
    /// `https` or `http`.
    scheme: String,
    /// `host[:port]` as the client sent it, lower-cased.
    authority: String,
    /// The request target's path and query, as the client sent them.
    path_and_query: String,
}

impl Original {
    fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// The host without its port, for host-specific routes.
    fn host(&self) -> &str {
        match self.authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => &self.authority,
        }
    }

    /// The URL the browser asked for, where the login sends it back to.
    fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme, self.authority, self.path_and_query
        )
    }
}

/// Answers one forward-auth check.
pub async fn handle(
    ctx: &Ctx<'_>,
    state: &State,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Routed {
    let request_id = ctx.request_id();
    if !state.headers.is_trusted(conn.peer.ip()) {
        // Anyone else could name any original request and learn or fake decisions.
        tracing::warn!(peer = %conn.peer.ip(), "forward-auth check from a peer outside server.trusted_proxies");
        let r = json_error(
            StatusCode::FORBIDDEN,
            "permission_denied",
            "only a proxy in server.trusted_proxies may ask for a forward-auth decision",
            request_id,
        );
        return Routed::early(Ok(r), None);
    }
    let original = match original(&req) {
        Ok(o) => o,
        Err(why) => return Routed::early(Err(GatewayError::BadPath(why)), None),
    };
    let route = match select(&state.routes, original.path(), || Some(original.host())) {
        Ok((route, _)) => route,
        Err(e) => return Routed::early(Err(e), None),
    };
    if route.auth == AuthMode::None {
        return Routed::early(Ok(allowed()), None);
    }
    // Boxed, as on the proxy path: a session lookup is a large future.
    match Box::pin(guard::check(ctx, &route, &original.method, req.headers())).await {
        Decision::Allow(principal) => {
            let mut response = allowed();
            let id = identity(ctx, &route, &principal);
            if route.config.assertion && id.assertion.is_none() {
                return Routed::early(Err(GatewayError::Internal), None);
            }
            state
                .headers
                .set_identity_answer(response.headers_mut(), &id);
            let mut routed = Routed::early(Ok(response), None);
            routed.principal = Some(principal.clone());
            routed
        }
        Decision::Login => {
            let redirect = query_has(req.uri().query(), "rd", "1") && !has_suffix(&req);
            let response = login(ctx, &original, redirect);
            Routed::early(Ok(response), None)
        }
        Decision::Deny(response) => Routed::early(Ok(response), None),
    }
}

/// 200 with no body: the ingress lets the request through.
fn allowed() -> Response<Body> {
    let mut response = Response::new(crate::body::empty());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A browser without a session: 401 (with the challenge of any missing credential) carrying
/// the login page in `Location`, which nginx's `error_page 401 = @login` sends it to; with
/// `redirect` (`?rd=1`, for Traefik and Caddy, which relay the answer as it is) a 302 there.
fn login(ctx: &Ctx<'_>, original: &Original, redirect: bool) -> Response<Body> {
    let location = format!(
        "{}/login?return_to={}",
        ctx.config.server.public_url,
        crate::ui::return_to::percent_encode(&original.url())
    );
    let mut response = if redirect {
        let mut r = Response::new(crate::body::empty());
        *r.status_mut() = StatusCode::FOUND;
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    } else {
        guard::refuse(Refusal::Credential(AuthFailure::Missing), ctx.request_id())
    };
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Whether the request is Envoy's `/auth/verify/<original path>`.
fn has_suffix(req: &Request<Incoming>) -> bool {
    req.uri().path().len() > PATH.len()
}

/// Whether `query` has `key=value`.
fn query_has(query: Option<&str>, key: &str, value: &str) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split_once('=') == Some((key, value)))
    })
}

/// The original request from the headers of the ingress's style, or why it cannot be known
/// (400). Every style present must name the same request.
fn original(req: &Request<Incoming>) -> Result<Original, &'static str> {
    let headers = req.headers();
    let mut described: Vec<Original> = Vec::new();
    if let Some(url) = one(headers, &X_ORIGINAL_URL)? {
        described.push(nginx_style(req, url)?);
    }
    if let Some(uri) = one(headers, &X_FORWARDED_URI)? {
        described.push(forwarded_style(req, uri)?);
    }
    if has_suffix(req) {
        described.push(envoy_style(req)?);
    }
    let mut styles = described.into_iter();
    let Some(first) = styles.next() else {
        return Err(
            "no original request: send X-Original-URL (nginx), X-Forwarded-Uri with X-Forwarded-Host (Traefik, Caddy) or /auth/verify/<path> (Envoy)",
        );
    };
    if styles.any(|other| other != first) {
        return Err("the forwarding headers describe different original requests");
    }
    Ok(first)
}

/// The one value of header `name`, if any; two are an error.
fn one<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, &'static str> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err("a forwarding header is repeated"),
        (Some(v), None) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| "a forwarding header is not visible ASCII"),
    }
}

/// The method in `name` (`X-Original-Method`, `X-Forwarded-Method`), else the check's own.
fn method(req: &Request<Incoming>, name: &HeaderName) -> Result<Method, &'static str> {
    match one(req.headers(), name)? {
        Some(m) => {
            Method::from_bytes(m.as_bytes()).map_err(|_| "the original method is not a method")
        }
        None => Ok(req.method().clone()),
    }
}

/// nginx: `X-Original-URL` (an absolute URL: `$scheme://$http_host$request_uri`) and
/// `X-Original-Method`.
fn nginx_style(req: &Request<Incoming>, url: &str) -> Result<Original, &'static str> {
    const NOT_ABSOLUTE: &str =
        "X-Original-URL must be an absolute http(s) URL such as $scheme://$http_host$request_uri";
    let uri: http::Uri = url.parse().map_err(|_| NOT_ABSOLUTE)?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(NOT_ABSOLUTE);
    };
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    Ok(Original {
        method: method(req, &X_ORIGINAL_METHOD)?,
        scheme: scheme_of(scheme)?,
        authority: authority_of(authority.as_str())?,
        path_and_query: path_and_query_of(path_and_query)?,
    })
}

/// Traefik and Caddy: `X-Forwarded-Uri`, `-Host`, `-Proto` and `-Method`.
fn forwarded_style(req: &Request<Incoming>, uri: &str) -> Result<Original, &'static str> {
    let headers = req.headers();
    let Some(host) = one(headers, &X_FORWARDED_HOST)? else {
        return Err("X-Forwarded-Uri needs X-Forwarded-Host");
    };
    Ok(Original {
        method: method(req, &X_FORWARDED_METHOD)?,
        scheme: scheme_of(one(headers, &X_FORWARDED_PROTO)?.unwrap_or("https"))?,
        authority: authority_of(host)?,
        path_and_query: path_and_query_of(uri)?,
    })
}

/// Envoy `ext_authz` (HTTP mode): the original path and query after `/auth/verify`, the
/// original method and `Host`, and `X-Forwarded-Proto` when Envoy sets it.
fn envoy_style(req: &Request<Incoming>) -> Result<Original, &'static str> {
    let target = req.uri().path_and_query().map_or("", |pq| pq.as_str());
    let suffix = target.get(PATH.len()..).unwrap_or("/");
    let host =
        super::routes::request_host(req.uri(), req.headers()).ok_or("the check has no Host")?;
    let authority = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(host),
    };
    let proto = one(req.headers(), &X_FORWARDED_PROTO)?.unwrap_or("https");
    Ok(Original {
        method: req.method().clone(),
        scheme: scheme_of(proto)?,
        authority: authority_of(authority)?,
        path_and_query: path_and_query_of(suffix)?,
    })
}

fn scheme_of(scheme: &str) -> Result<String, &'static str> {
    match scheme.to_ascii_lowercase().as_str() {
        s @ ("https" | "http") => Ok(s.to_string()),
        _ => Err("the original scheme is not http or https"),
    }
}

/// A `host[:port]` without user information, lower-cased.
fn authority_of(text: &str) -> Result<String, &'static str> {
    const BAD: &str = "the original host is not a valid host[:port]";
    let authority: http::uri::Authority = text.parse().map_err(|_| BAD)?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(BAD);
    }
    Ok(authority.as_str().to_ascii_lowercase())
}

/// An origin-form request target (`/path?query`).
fn path_and_query_of(text: &str) -> Result<String, &'static str> {
    const BAD: &str = "the original request target is not a path such as /x?y";
    let pq: http::uri::PathAndQuery = text.parse().map_err(|_| BAD)?;
    if !pq.path().starts_with('/') {
        return Err(BAD);
    }
    Ok(pq.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verify_path_and_its_envoy_form() {
        assert!(is_verify_path("/auth/verify"));
        assert!(is_verify_path("/auth/verify/rest/api"));
        assert!(!is_verify_path("/auth/verifyx"));
        assert!(!is_verify_path("/auth"));
    }

    #[test]
    fn rd_is_read_from_the_query() {
        assert!(query_has(Some("rd=1"), "rd", "1"));
        assert!(query_has(Some("a=b&rd=1"), "rd", "1"));
        assert!(!query_has(Some("rd=0"), "rd", "1"));
        assert!(!query_has(None, "rd", "1"));
    }

    #[test]
    fn hosts_and_targets_are_checked() {
        assert_eq!(
            authority_of("App.Example.com:8443").unwrap(),
            "app.example.com:8443"
        );
        assert!(authority_of("user@app.example.com").is_err());
        assert!(authority_of("a b").is_err());
        assert!(path_and_query_of("/x?y=1").is_ok());
        assert!(path_and_query_of("x").is_err());
        assert!(scheme_of("ftp").is_err());
    }
}
