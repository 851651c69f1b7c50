//! The route table of SPEC §3.4: routes match by optional host, then by the longest path
//! prefix on whole segments (`/rest/api` matches `/rest/api/x`, never `/rest/apix`).

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use prometheus::Histogram;

use crate::auth::rules::RouteScopes;
use crate::auth::scope::ScopeSet;
use crate::config::{AuthMode, RouteConfig};
use crate::metrics::Metrics;

/// One configured route, with what the hot path needs precomputed.
#[derive(Debug)]
pub struct Route {
    pub config: RouteConfig,
    /// The route's position in the config, which indexes the forwarder's pools.
    pub index: usize,
    /// The label in metrics and logs.
    pub label: String,
    /// The upstream URL's path without its trailing `/`; empty when it is just `/`.
    pub base_path: String,
    pub timeout: Duration,
    pub auth: AuthMode,
    /// The scope each method needs (empty for `auth = "none"`).
    pub scopes: RouteScopes,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    pub upstream_errors: prometheus::IntCounterVec,
}

impl Route {
    fn new(index: usize, config: RouteConfig, scope_set: &ScopeSet, metrics: &Metrics) -> Self {
        let scopes = RouteScopes::new(&config.scopes, scope_set).unwrap_or_else(|e| {
            // The config check refuses unknown scopes first; should they disagree, the route
            // allows no method rather than any.
            tracing::error!(route = %config.path, error = %e, "route scopes could not be resolved");
            RouteScopes::default()
        });
        let label = config.label();
        let base_path = config
            .upstream
            .as_ref()
            .map_or("", |u: &Uri| u.path())
            .trim_end_matches('/')
            .to_string();
        Self {
            request_duration: metrics
                .http_request_duration
                .with_label_values(&[label.as_str()]),
            upstream_duration: metrics
                .upstream_request_duration
                .with_label_values(&[label.as_str()]),
            upstream_errors: metrics.upstream_errors.clone(),
            index,
            timeout: config.timeout,
            auth: config.auth,
            scopes,
            label,
            base_path,
            config,
        }
    }

    /// Whether `path` is this route's prefix or below it, on whole segments.
    fn matches_path(&self, path: &str) -> bool {
        let prefix = self.config.path.as_str();
        prefix == "/"
            || (path.starts_with(prefix)
                && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
    }

    fn matches_host(&self, host: Option<&str>) -> bool {
        self.config.host.is_empty()
            || host.is_some_and(|h| h.eq_ignore_ascii_case(&self.config.host))
    }
}

/// Routes ordered so that the first match is the right one: host-specific routes before
/// any-host routes, longer prefixes before shorter ones.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    /// Whether any route names a host; if none does, the request's host is never looked at.
    any_host: bool,
}

impl RouteTable {
    pub fn new(configs: &[RouteConfig], scope_set: &ScopeSet, metrics: &Metrics) -> Self {
        let mut routes: Vec<Arc<Route>> = configs
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, c)| Arc::new(Route::new(i, c, scope_set, metrics)))
            .collect();
        routes.sort_by(|a, b| {
            let key = |r: &Route| {
                (
                    r.config.host.is_empty(),
                    std::cmp::Reverse(r.config.path.len()),
                )
            };
            key(a).cmp(&key(b))
        });
        let any_host = routes.iter().any(|r| !r.config.host.is_empty());
        Self { routes, any_host }
    }

    /// Whether matching needs the request's host (some route names one).
    pub fn matches_hosts(&self) -> bool {
        self.any_host
    }

    /// The route for a request to `host` (without port) and normalized `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .find(|r| r.matches_host(host) && r.matches_path(path))
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

/// The host of a request without its port: `:authority` for HTTP/2, else the `Host` header.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a http::HeaderMap) -> Option<&'a str> {
    let authority = match uri.authority() {
        Some(a) => a.as_str(),
        None => headers.get(http::header::HOST)?.to_str().ok()?,
    };
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    Some(host.rsplit_once('@').map_or(host, |(_, h)| h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthMode;
    use std::collections::BTreeMap;

    fn route(path: &str, host: &str, upstream: &str) -> RouteConfig {
        RouteConfig {
            path: path.into(),
            host: host.into(),
            upstream: Some(upstream.parse().unwrap()),
            auth: AuthMode::None,
            scopes: BTreeMap::new(),
            timeout: Duration::from_secs(30),
            forward_authorization: false,
            assertion: false,
            upstream_ca: None,
            allow_groups: Vec::new(),
            allow_users: Vec::new(),
        }
    }

    fn table() -> RouteTable {
        let m = Metrics::new().unwrap();
        RouteTable::new(
            &[
                route("/", "", "http://root"),
                route("/rest/api", "", "http://api"),
                route("/rest", "", "http://rest"),
                route("/rest/api", "wiki.example.com", "http://wiki"),
            ],
            &ScopeSet::default_confluence(),
            &m,
        )
    }

    fn upstream(t: &RouteTable, host: Option<&str>, path: &str) -> String {
        let route = t.find(host, path).unwrap();
        route
            .config
            .upstream
            .as_ref()
            .unwrap()
            .authority()
            .unwrap()
            .to_string()
    }

    #[test]
    fn longest_prefix_on_whole_segments() {
        let t = table();
        assert_eq!(upstream(&t, None, "/rest/api"), "api");
        assert_eq!(upstream(&t, None, "/rest/api/content/1"), "api");
        assert_eq!(upstream(&t, None, "/rest/apix"), "rest");
        assert_eq!(upstream(&t, None, "/restx"), "root");
        assert_eq!(upstream(&t, None, "/"), "root");
    }

    #[test]
    fn host_specific_routes_win_and_compare_case_insensitively() {
        let t = table();
        assert_eq!(
            upstream(&t, Some("WIKI.example.com"), "/rest/api/x"),
            "wiki"
        );
        assert_eq!(
            upstream(&t, Some("other.example.com"), "/rest/api/x"),
            "api"
        );
        assert_eq!(upstream(&t, Some("wiki.example.com"), "/rest/x"), "rest");
    }

    #[test]
    fn no_route_without_a_root_route() {
        let m = Metrics::new().unwrap();
        let t = RouteTable::new(
            &[route("/rest/api", "", "http://api")],
            &ScopeSet::default_confluence(),
            &m,
        );
        assert!(t.find(None, "/rest/apix").is_none());
        assert!(t.find(None, "/rest").is_none());
    }

    #[test]
    fn host_without_port() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::HOST, "Wiki.Example.com:8443".parse().unwrap());
        assert_eq!(
            request_host(&"/x".parse().unwrap(), &h),
            Some("Wiki.Example.com")
        );
        assert_eq!(
            request_host(&"https://[::1]:8443/x".parse().unwrap(), &h),
            Some("[::1]")
        );
    }
}
