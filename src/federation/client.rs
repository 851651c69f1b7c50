//! The outbound HTTPS client for identity providers (SPEC §7.1, §7.2): hyper-util's pooled
//! client over rustls, trusting either the system roots or the provider's own `ca` (PEM),
//! HTTPS only, one deadline for connect + response + body, a cap on the response size, and JSON
//! bodies (RFC 8259). Redirects are not followed: a provider's metadata names final URLs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The largest response body read from a provider (metadata, JWKS, token, introspection).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The default deadline for one call, connect included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which certificates a provider's TLS certificate must chain to.
#[derive(Clone, Debug)]
pub enum Trust {
    /// The platform's trusted roots.
    System,
    /// Only the certificates in this PEM (a provider's `ca`); `source` names it in errors.
    Pem { source: String, pem: Vec<u8> },
}

impl Trust {
    /// `ca = ""` means the system roots; otherwise the PEM file at `path` is read now.
    pub fn from_ca_path(path: &std::path::Path) -> Result<Self, OutboundError> {
        if path.as_os_str().is_empty() {
            return Ok(Self::System);
        }
        let pem = std::fs::read(path).map_err(|e| OutboundError::Ca {
            source_name: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self::Pem {
            source: path.display().to_string(),
            pem,
        })
    }

    fn roots(&self) -> Result<rustls::RootCertStore, OutboundError> {
        let mut roots = rustls::RootCertStore::empty();
        match self {
            Self::System => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    // A malformed platform certificate must not stop the gateway; it is just not trusted.
                    let _ = roots.add(cert);
                }
            }
            Self::Pem { source, pem } => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| OutboundError::Ca {
                        source_name: source.clone(),
                        reason: e.to_string(),
                    })?;
                    roots.add(cert).map_err(|e| OutboundError::Ca {
                        source_name: source.clone(),
                        reason: e.to_string(),
                    })?;
                }
                if roots.is_empty() {
                    return Err(OutboundError::Ca {
                        source_name: source.clone(),
                        reason: "no certificate in the file".into(),
                    });
                }
            }
        }
        Ok(roots)
    }
}

/// Why a call to a provider failed. None of these carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("{source_name}: not a usable CA: {reason}")]
    Ca { source_name: String, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{url}: not an https URL")]
    NotHttps { url: String },
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: response larger than {MAX_RESPONSE_BYTES} bytes or cut short")]
    Body { url: String },
    #[error("{url}: response is not a JSON object: {reason}")]
    Json { url: String, reason: String },
}

/// A provider's answer: its status and its JSON object (`Null` when the body was empty or not
/// JSON; the token endpoint's error answers are JSON with a 400).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub json: serde_json::Value,
}

/// An HTTPS client for one provider's trust. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Outbound {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// A client that trusts `trust` and gives each call at most `timeout`.
    pub fn new(trust: &Trust, timeout: Duration) -> Result<Self, OutboundError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // ALPN (http/1.1) is set by the connector builder below.
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(trust.roots()?)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(4)
            .build(https);
        Ok(Self { client, timeout })
    }

    /// The deadline of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET url` (with `Authorization: Bearer` when given, as userinfo wants) expecting a 2xx
    /// JSON object; any other status is an error.
    pub async fn get_json(
        &self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<serde_json::Value, OutboundError> {
        let mut req = request(Method::GET, url)?;
        if let Some(token) = bearer {
            let value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|e| {
                OutboundError::Request {
                    url: url.to_string(),
                    reason: e.to_string(),
                }
            })?;
            req.headers_mut().insert(AUTHORIZATION, value);
        }
        let reply = self.send(url, req).await?;
        if !reply.status.is_success() {
            return Err(OutboundError::Status {
                url: url.to_string(),
                status: reply.status,
            });
        }
        if !reply.json.is_object() {
            return Err(OutboundError::Json {
                url: url.to_string(),
                reason: "expected an object".into(),
            });
        }
        Ok(reply.json)
    }

    /// `POST url` with an `application/x-www-form-urlencoded` body, optionally with HTTP Basic
    /// client authentication (RFC 6749 §2.3.1: id and secret form-encoded, then Base64). Any
    /// status comes back; the caller decides (a token endpoint's 400 carries an error object).
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<Reply, OutboundError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = request(Method::POST, url)?;
        *req.body_mut() = Full::new(Bytes::from(body));
        req.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        if let Some((id, secret)) = basic {
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{}:{}", encode(id), encode(secret)),
            );
            let value = HeaderValue::try_from(format!("Basic {credentials}")).map_err(|e| {
                OutboundError::Request {
                    url: url.to_string(),
                    reason: e.to_string(),
                }
            })?;
            req.headers_mut().insert(AUTHORIZATION, value);
        }
        self.send(url, req).await
    }

    async fn send(&self, url: &str, req: Request<Full<Bytes>>) -> Result<Reply, OutboundError> {
        let call = async {
            let response = self
                .client
                .request(req)
                .await
                .map_err(|e| OutboundError::Request {
                    url: url.to_string(),
                    reason: error_chain(&e),
                })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|_| OutboundError::Body {
                    url: url.to_string(),
                })?
                .to_bytes();
            Ok::<_, OutboundError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| OutboundError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            })??;
        let json = if body.is_empty() {
            serde_json::Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(json) => json,
                Err(e) if status.is_success() => {
                    return Err(OutboundError::Json {
                        url: url.to_string(),
                        reason: e.to_string(),
                    });
                }
                Err(_) => serde_json::Value::Null,
            }
        };
        Ok(Reply { status, json })
    }
}

fn request(method: Method, url: &str) -> Result<Request<Full<Bytes>>, OutboundError> {
    if !url.starts_with("https://") {
        return Err(OutboundError::NotHttps {
            url: url.to_string(),
        });
    }
    Request::builder()
        .method(method)
        .uri(url)
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::new()))
        .map_err(|e| OutboundError::Request {
            url: url.to_string(),
            reason: e.to_string(),
        })
}

/// The error and its sources on one line ("client error (Connect): tcp connect error: …").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let trust = Trust::Pem {
            source: "ca.pem".into(),
            pem: b"not a certificate".to_vec(),
        };
        let err = Outbound::new(&trust, DEFAULT_TIMEOUT).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    #[tokio::test]
    async fn plain_http_is_refused_before_connecting() {
        let client = Outbound::new(&Trust::System, DEFAULT_TIMEOUT).unwrap();
        let err = client
            .get_json("http://127.0.0.1:9/.well-known/jwks.json", None)
            .await
            .unwrap_err();
        assert!(matches!(err, OutboundError::NotHttps { .. }), "{err}");
    }
}
