//! Forwarding to upstreams: a pooled hyper-util client per trust configuration (the platform's
//! roots, or a route's own CA), bodies streamed both ways, WebSocket upgrades tunnelled
//! (RFC 6455 §4, RFC 9110 §7.8), per-route timeouts that become 504, unreachable upstreams 502.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::headers::{ClientFacts, HeaderPolicy, Identity, connection_has, prepare_response};
use super::routes::Route;
use crate::body::{Body, boxed};
use crate::config::RouteConfig;
use crate::error::GatewayError;

type UpstreamClient = Client<HttpsConnector<HttpConnector>, Incoming>;

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
    #[error("TLS client setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// The upstream clients, built once: one with the platform's roots, one per distinct
/// `upstream_ca`.
pub struct Forwarder {
    default: UpstreamClient,
    with_ca: HashMap<PathBuf, UpstreamClient>,
}

impl Forwarder {
    pub fn new(routes: &[RouteConfig]) -> Result<Self, ForwarderError> {
        let mut platform = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A malformed platform certificate must not stop the gateway; it just isn't trusted.
            let _ = platform.add(cert);
        }
        let default = build_client(platform)?;
        let mut with_ca = HashMap::new();
        for path in routes.iter().filter_map(|r| r.upstream_ca.as_ref()) {
            if !with_ca.contains_key(path) {
                with_ca.insert(path.clone(), build_client(read_ca(path)?)?);
            }
        }
        Ok(Self { default, with_ca })
    }

    fn client_for(&self, route: &Route) -> &UpstreamClient {
        route
            .config
            .upstream_ca
            .as_ref()
            .and_then(|p| self.with_ca.get(p))
            .unwrap_or(&self.default)
    }

    /// Sends `req` to `route`'s upstream and returns its response, streaming both bodies.
    pub async fn forward(
        &self,
        route: &Route,
        mut req: Request<Incoming>,
        rewritten_path: Option<&str>,
        policy: &HeaderPolicy,
        facts: &ClientFacts<'_>,
        identity: Option<&Identity<'_>>,
    ) -> Result<Response<Body>, GatewayError> {
        let upgrade = req.version() == Version::HTTP_11
            && req.headers().contains_key(http::header::UPGRADE)
            && connection_has(req.headers(), "upgrade");
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        *req.uri_mut() = upstream_uri(route, req.uri(), rewritten_path)?;
        *req.version_mut() = Version::HTTP_11;
        policy.prepare_request(req.headers_mut(), facts, upgrade, identity);

        let started = Instant::now();
        let sent = tokio::time::timeout(route.timeout, self.client_for(route).request(req)).await;
        route
            .upstream_duration
            .observe(started.elapsed().as_secs_f64());
        let mut response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let kind = if e.is_connect() {
                    "connect"
                } else {
                    "protocol"
                };
                tracing::warn!(route = %route.label, kind, error = %e, error_source = ?std::error::Error::source(&e), "upstream request failed");
                return Err(GatewayError::UpstreamUnreachable).inspect_err(|_| count(route, kind));
            }
            Err(_) => {
                tracing::warn!(route = %route.label, timeout = ?route.timeout, "upstream timed out");
                count(route, "timeout");
                return Err(GatewayError::UpstreamTimeout);
            }
        };
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (true, Some(client_side)) = (switching, client_upgrade) {
            let upstream_side = hyper::upgrade::on(&mut response);
            tokio::spawn(tunnel(client_side, upstream_side));
        }
        prepare_response(
            response.headers_mut(),
            facts.request_id,
            switching && upgrade,
        );
        Ok(response.map(boxed))
    }
}

fn count(route: &Route, kind: &'static str) {
    route
        .upstream_errors
        .with_label_values(&[route.label.as_str(), kind])
        .inc();
}

/// Copies bytes both ways between the client's and the upstream's upgraded connections.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended with an error");
    }
}

/// The upstream URL: the route's scheme and authority, its base path, then the normalized path
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
    Uri::builder()
        .scheme(route.scheme.clone())
        .authority(route.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| GatewayError::Internal)
}

fn read_ca(path: &Path) -> Result<rustls::RootCertStore, ForwarderError> {
    let pem = std::fs::read(path).map_err(|source| ForwarderError::CaFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(ForwarderError::CaEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

fn build_client(roots: rustls::RootCertStore) -> Result<UpstreamClient, ForwarderError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(https))
}

/// Used by the server to mark a response as carrying the request id when no upstream answered.
pub fn with_request_id(mut response: Response<Body>, request_id: &HeaderValue) -> Response<Body> {
    response
        .headers_mut()
        .insert(super::headers::X_REQUEST_ID.clone(), request_id.clone());
    response
}
