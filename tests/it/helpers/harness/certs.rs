//! A throwaway PKI for tests: a CA, a server certificate for `localhost` / 127.0.0.1 (and the
//! forward-auth tests' `app.localhost` / `gw.localhost`), clients
//! that trust the CA, and Ed25519 signing keys.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The names the server certificate holds: `localhost` and its address for most tests, and two
/// more hosts under `localhost` for the forward-auth tests (an application host behind an
/// ingress and the gateway's own host, both resolved to 127.0.0.1 by the clients).
pub const SERVER_NAMES: &[&str] = &["localhost", "127.0.0.1", "app.localhost", "gw.localhost"];

pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestPki {
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "gatehouse test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(
            SERVER_NAMES
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let server_cert = params.signed_by(&server_key, &issuer).unwrap();
        Self {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            issuer,
        }
    }

    /// A new certificate from this CA for `names` (SAN DNS names or IP addresses) and its
    /// key, both PEM.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn client(&self, addr: SocketAddr, http1_only: bool) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap();
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(ca)
            .resolve("localhost", addr)
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .timeout(std::time::Duration::from_secs(30));
        if http1_only {
            builder = builder.http1_only();
        }
        builder.build().unwrap()
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A TLS connection speaking HTTP/1.1 (ALPN) to `addr`.
    pub async fn tls_connect(&self, addr: SocketAddr) -> TlsStream<TcpStream> {
        self.tls_over(TcpStream::connect(addr).await.unwrap()).await
    }

    /// The TLS handshake (HTTP/1.1 by ALPN) over a TCP connection already made.
    pub async fn tls_over(&self, tcp: TcpStream) -> TlsStream<TcpStream> {
        let connector = tokio_rustls::TlsConnector::from(self.client_config(&[b"http/1.1"]));
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// A server config for an https upstream, with a certificate from this CA.
    pub fn upstream_tls(&self) -> Arc<rustls::ServerConfig> {
        let chain = vec![CertificateDer::from_pem_slice(self.server_cert_pem.as_bytes()).unwrap()];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }
}

/// A fresh Ed25519 private key in PKCS#8 PEM.
pub fn ed25519_pem() -> String {
    KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .unwrap()
        .serialize_pem()
}
