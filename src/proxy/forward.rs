//! Forwarding to upstreams: one connection pool per distinct upstream (trusting the platform's
//! roots, or a route's own CA, for `https://`), bodies streamed both ways, WebSocket upgrades
//! tunnelled (RFC 6455 §4, RFC 9110 §7.8), per-route timeouts that become 504, unreachable
//! upstreams 502. Requests go upstream in origin form with the upstream's `Host`
//! (RFC 9112 §3.2.1, RFC 9110 §7.2).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::Digest;

use super::headers::{ClientFacts, HeaderPolicy, Identity, connection_has, prepare_response};
use super::routes::Route;
use super::tunnel::Tunnels;
use super::upstream::{Endpoint, UpstreamError, UpstreamPool};
use crate::body::{Body, boxed};
use crate::config::RouteConfig;
use crate::error::GatewayError;

/// Why the forwarder could not be built (a startup error).
#[derive(Debug, thiserror::Error)]
pub enum ForwarderError {
    #[error("{path}: cannot read upstream CA: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    CaEmpty { path: PathBuf },
    #[error("{path}: not a usable CA certificate: {reason}")]
    CaInvalid { path: PathBuf, reason: String },
    #[error("TLS client setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("upstream {upstream}: {reason}")]
    Upstream { upstream: String, reason: String },
}

/// The upstream connection pools, built once per config: one per distinct upstream scheme,
/// authority and trust (the platform's roots or an `upstream_ca`), shared by the routes that
/// name it.
pub struct Forwarder {
    /// Indexed like the config's routes (`Route::index`); `None` for a forward-auth-only route
    /// (`upstream = ""`), which has nothing to connect to.
    pools: Vec<Option<Arc<UpstreamPool>>>,
    /// The same pools by what they connect to, for the next config to take over.
    by_key: HashMap<PoolKey, Arc<UpstreamPool>>,
}

/// What makes two routes' upstream connections interchangeable: the origin, and for `https://`
/// the roots its certificate is checked against, by source (a CA file's path, or `None` for the
/// platform's) and content digest, so that a reload picks up a replaced CA file or an updated
/// system trust store.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    origin: String,
    trust: Option<(Option<PathBuf>, [u8; 32])>,
}

impl Forwarder {
    /// Builds the pools for `routes`. `previous` is the running config's forwarder on a reload:
    /// its pools, with their idle connections, carry over to the routes whose upstream and
    /// trust are unchanged, so a reload does not make every upstream connection anew.
    pub fn new(
        routes: &[RouteConfig],
        previous: Option<&Forwarder>,
    ) -> Result<Self, ForwarderError> {
        let mut tls_configs: HashMap<(Option<PathBuf>, [u8; 32]), Arc<rustls::ClientConfig>> =
            HashMap::new();
        // Read at most once per config, and only if a route needs it.
        let mut platform: Option<(rustls::RootCertStore, [u8; 32])> = None;
        let mut by_key: HashMap<PoolKey, Arc<UpstreamPool>> = HashMap::new();
        let mut pools = Vec::with_capacity(routes.len());
        for route in routes {
            let Some(upstream) = &route.upstream else {
                pools.push(None);
                continue;
            };
            let https = upstream.scheme() == Some(&http::uri::Scheme::HTTPS);
            let authority = upstream
                .authority()
                .cloned()
                .unwrap_or_else(|| http::uri::Authority::from_static("127.0.0.1"));
            let ca = match route.upstream_ca.as_ref().filter(|_| https) {
                Some(path) => Some((path, read_ca_file(path)?)),
                None => None,
            };
            let trust = match (&ca, https) {
                (_, false) => None,
                (Some((path, pem)), true) => {
                    Some((Some((*path).clone()), crate::auth::secret::sha256(pem)))
                }
                (None, true) => Some((None, platform.get_or_insert_with(platform_roots).1)),
            };
            let key = PoolKey {
                origin: format!("{}://{authority}", if https { "https" } else { "http" }),
                trust,
            };
            let existing = by_key
                .get(&key)
                .or_else(|| previous.and_then(|p| p.by_key.get(&key)))
                .cloned();
            if let Some(pool) = existing {
                by_key.insert(key, pool.clone());
                pools.push(Some(pool));
                continue;
            }
            let tls = match &key.trust {
                None => None,
                Some(trust) => Some(match tls_configs.get(trust) {
                    Some(config) => config.clone(),
                    None => {
                        let roots = match &ca {
                            Some((path, pem)) => parse_ca(path, pem)?,
                            None => platform.get_or_insert_with(platform_roots).0.clone(),
                        };
                        let config = client_tls(roots)?;
                        tls_configs.insert(trust.clone(), config.clone());
                        config
                    }
                }),
            };
            let endpoint = Endpoint::new(&authority, https, tls).map_err(|reason| {
                ForwarderError::Upstream {
                    upstream: upstream.to_string(),
                    reason,
                }
            })?;
            let pool = UpstreamPool::new(endpoint);
            by_key.insert(key, pool.clone());
            pools.push(Some(pool));
        }
        Ok(Self { pools, by_key })
    }

    /// Sends `req` to `route`'s upstream and returns its response, streaming both bodies, with
    /// the time from sending to the response head (or the failure), which the route's upstream
    /// histogram has also observed; `None` when nothing was sent.
    // Each argument is a different owner's (route, request, reload state, connection); the
    // proxy pipeline's own type is the architecture issue's to introduce.
    #[allow(clippy::too_many_arguments)]
    pub async fn forward(
        &self,
        route: &Route,
        mut req: Request<Incoming>,
        rewritten_path: Option<&str>,
        policy: &HeaderPolicy,
        facts: &ClientFacts<'_>,
        identity: Option<&Identity<'_>>,
        tunnels: &Tunnels,
    ) -> (Result<Response<Body>, GatewayError>, Option<Duration>) {
        let upgrade = is_websocket_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let pool = match self.pools.get(route.index) {
            Some(Some(pool)) => pool,
            // A forward-auth-only route proxies nothing: the pipeline answers it before here.
            Some(None) => return (Err(GatewayError::NoRoute), None),
            None => return (Err(GatewayError::Internal), None),
        };
        match upstream_uri(route, req.uri(), rewritten_path) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(e) => return (Err(e), None),
        }
        *req.version_mut() = Version::HTTP_11;
        policy.prepare_request(
            req.headers_mut(),
            pool.host_header(),
            facts,
            upgrade,
            route.config.forward_authorization,
            identity,
        );

        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started) + route.timeout;
        let sent = if upgrade {
            match tokio::time::timeout_at(deadline, Box::pin(pool.send_upgrade(req))).await {
                Ok(sent) => sent.map(|r| r.map(boxed)),
                Err(_) => Err(UpstreamError::TimedOut),
            }
        } else {
            pool.send(req, deadline).await.map(|r| r.map(boxed))
        };
        let elapsed = started.elapsed();
        route.upstream_duration.observe(elapsed.as_secs_f64());
        (
            answer(route, sent, upgrade, client_upgrade, facts, tunnels),
            Some(elapsed),
        )
    }
}

/// The client's answer to what the upstream sent.
fn answer(
    route: &Route,
    sent: Result<Response<Body>, UpstreamError>,
    upgrade: bool,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    facts: &ClientFacts<'_>,
    tunnels: &Tunnels,
) -> Result<Response<Body>, GatewayError> {
    let mut response = match sent {
        Ok(response) => response,
        Err(UpstreamError::TimedOut) => {
            tracing::warn!(route = %route.label, timeout = ?route.timeout, "upstream timed out");
            count(route, "timeout");
            return Err(GatewayError::UpstreamTimeout);
        }
        Err(e) => {
            let kind = if e.is_connect() {
                "connect"
            } else {
                "protocol"
            };
            tracing::warn!(route = %route.label, kind, error = %e, error_source = ?std::error::Error::source(&e), "upstream request failed");
            return Err(GatewayError::UpstreamUnreachable).inspect_err(|_| count(route, kind));
        }
    };
    // The client gets the gateway's HTTP version, not the upstream's (RFC 9110 §6.2): an
    // HTTP/1.0 upstream must not turn keep-alive off on the client's connection.
    *response.version_mut() = Version::HTTP_11;
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching && !upgrade {
        // A 101 nobody asked for (the h2c smuggling answer): what follows on that
        // connection is not HTTP the gateway has checked.
        tracing::warn!(route = %route.label, "the upstream switched protocols unasked");
        count(route, "protocol");
        return Err(GatewayError::UpstreamUnreachable);
    }
    if let (true, Some(client_side)) = (switching, client_upgrade) {
        let upstream_side = hyper::upgrade::on(&mut response);
        tunnels.open(client_side, upstream_side);
    }
    prepare_response(
        response.headers_mut(),
        facts.request_id,
        switching && upgrade,
    );
    Ok(response)
}

/// A WebSocket handshake (RFC 6455 §4.1): the only upgrade that passes (SPEC §3.4). Any other
/// `Upgrade`, `h2c` above all, is stripped, so the upstream never opens a tunnel in which
/// requests would escape the gateway's checks.
fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    let mut upgrades = req.headers().get_all(http::header::UPGRADE).iter();
    let only = match (upgrades.next(), upgrades.next()) {
        (Some(only), None) => only,
        _ => return false,
    };
    req.version() == Version::HTTP_11
        && only
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"websocket")
        && connection_has(req.headers(), "upgrade")
}

fn count(route: &Route, kind: &'static str) {
    route
        .upstream_errors
        .with_label_values(&[route.label.as_str(), kind])
        .inc();
}

/// The upstream request target in origin form: the route's base path, then the normalized path
/// and the original query.
fn upstream_uri(
    route: &Route,
    original: &Uri,
    rewritten_path: Option<&str>,
) -> Result<Uri, GatewayError> {
    let path = rewritten_path.unwrap_or(original.path());
    let path_and_query = match (
        route.base_path.is_empty() && rewritten_path.is_none(),
        original.path_and_query(),
    ) {
        (true, Some(pq)) => pq.clone(),
        _ => {
            let query = original.query();
            let mut s = String::with_capacity(
                route.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
            );
            s.push_str(&route.base_path);
            s.push_str(path);
            if let Some(q) = query {
                s.push('?');
                s.push_str(q);
            }
            PathAndQuery::try_from(s).map_err(|_| GatewayError::BadPath("the path is malformed"))?
        }
    };
    Ok(Uri::from(path_and_query))
}

/// The roots in a route's `upstream_ca` file: read and parsed as [`Forwarder::new`] does, for
/// checking a config before it is used.
pub fn load_ca(path: &Path) -> Result<rustls::RootCertStore, ForwarderError> {
    parse_ca(path, &read_ca_file(path)?)
}

fn read_ca_file(path: &Path) -> Result<Vec<u8>, ForwarderError> {
    std::fs::read(path).map_err(|source| ForwarderError::CaFile {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_ca(path: &Path, pem: &[u8]) -> Result<rustls::RootCertStore, ForwarderError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem).flatten() {
        roots.add(cert).map_err(|e| ForwarderError::CaInvalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(ForwarderError::CaEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

/// The platform's trusted roots, and a digest of them that tells a reload whether they changed.
fn platform_roots() -> (rustls::RootCertStore, [u8; 32]) {
    let mut platform = rustls::RootCertStore::empty();
    let mut digest = sha2::Sha256::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        digest.update((cert.len() as u64).to_be_bytes());
        digest.update(&cert);
        // A malformed platform certificate must not stop the gateway; it just isn't trusted.
        let _ = platform.add(cert);
    }
    (platform, digest.finalize().into())
}

fn client_tls(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, ForwarderError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// Used by the server to mark a response as carrying the request id when no upstream answered.
pub fn with_request_id(mut response: Response<Body>, request_id: &HeaderValue) -> Response<Body> {
    response
        .headers_mut()
        .insert(super::headers::X_REQUEST_ID.clone(), request_id.clone());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthMode;
    use std::time::Duration;

    fn route(upstream: &str, upstream_ca: Option<PathBuf>) -> RouteConfig {
        RouteConfig {
            path: "/".into(),
            host: String::new(),
            upstream: Some(upstream.parse().unwrap()),
            auth: AuthMode::None,
            scopes: Default::default(),
            timeout: Duration::from_secs(30),
            forward_authorization: false,
            assertion: false,
            upstream_ca,
            allow_groups: Vec::new(),
            allow_users: Vec::new(),
        }
    }

    fn write_ca(path: &Path) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(path, cert.cert.pem()).unwrap();
    }

    #[test]
    fn pools_carry_over_a_reload_unless_the_upstream_or_its_ca_changed() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        write_ca(&ca);
        let routes = [
            route("http://127.0.0.1:1", None),
            route("https://localhost:2", Some(ca.clone())),
            route("http://127.0.0.1:1/other", None),
        ];
        let first = Forwarder::new(&routes, None).unwrap();
        assert!(
            Arc::ptr_eq(
                first.pools[0].as_ref().unwrap(),
                first.pools[2].as_ref().unwrap()
            ),
            "shared"
        );
        let same = Forwarder::new(&routes, Some(&first)).unwrap();
        for i in 0..3 {
            assert!(
                Arc::ptr_eq(
                    first.pools[i].as_ref().unwrap(),
                    same.pools[i].as_ref().unwrap()
                ),
                "route {i}"
            );
        }
        // A replaced CA file (same path) must not keep connections its old roots verified.
        write_ca(&ca);
        let renewed = Forwarder::new(&routes, Some(&same)).unwrap();
        assert!(Arc::ptr_eq(
            same.pools[0].as_ref().unwrap(),
            renewed.pools[0].as_ref().unwrap()
        ));
        assert!(!Arc::ptr_eq(
            same.pools[1].as_ref().unwrap(),
            renewed.pools[1].as_ref().unwrap()
        ));
        let moved = Forwarder::new(&[route("http://127.0.0.1:3", None)], Some(&renewed)).unwrap();
        assert!(!Arc::ptr_eq(
            renewed.pools[0].as_ref().unwrap(),
            moved.pools[0].as_ref().unwrap()
        ));
    }
}
