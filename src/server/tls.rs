//! TLS for the public listener (RFC 8446 via rustls, ALPN h2 and http/1.1 per RFC 7301),
//! loaded from PEM files and swappable at run time for certificate reloads.

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate or key that could not be loaded; each problem names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain (`server.tls.cert`).
    #[error("{0}")]
    Cert(String),
    /// The private key (`server.tls.key`), including one that does not match the certificate.
    #[error("{0}")]
    Key(String),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Every problem with the certificate and key (both files are read before giving up).
#[derive(Debug)]
pub struct TlsErrors(pub Vec<TlsError>);

impl std::fmt::Display for TlsErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TlsErrors {}

/// Largest certificate chain or key file read: far more than any real chain.
const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// The bytes of a PEM file, refusing one larger than [`MAX_PEM_FILE_BYTES`] (a path such as
/// `/dev/zero` must not hang the start).
fn read_pem(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(std::io::Error::other("larger than 1 MiB: not a PEM file"));
    }
    Ok(bytes)
}

/// The process-wide crypto provider: ring only, chosen explicitly so that no dependency's
/// feature can make the choice ambiguous.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server config for `cert` and `key`, offering h2 and http/1.1. Fails with every
/// problem found: either file cannot be read or parsed, or the key is not the certificate's.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsErrors> {
    let (chain, key_der) = match (read_chain(cert), read_key(key)) {
        (Ok(chain), Ok(key_der)) => (chain, key_der),
        (chain, key_der) => {
            return Err(TlsErrors(
                chain.err().into_iter().chain(key_der.err()).collect(),
            ));
        }
    };
    let (c, k) = (cert.display(), key.display());
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsErrors(vec![e.into()]))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                TlsError::Key(format!("{k}: does not match the certificate in {c}"))
            }
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                TlsError::Cert(format!("{c}: not a usable certificate: {e}"))
            }
            other => TlsError::Key(format!("{k}: not a usable private key: {other}")),
        })
        .map_err(|e| TlsErrors(vec![e]))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_chain(cert: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let c = cert.display();
    let pem = read_pem(cert).map_err(|e| TlsError::Cert(format!("cannot read {c}: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(format!("{c}: not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Cert(format!(
            "{c}: no PEM certificate (-----BEGIN CERTIFICATE-----) found"
        )));
    }
    Ok(chain)
}

fn read_key(key: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let k = key.display();
    let pem = zeroize::Zeroizing::new(
        read_pem(key).map_err(|e| TlsError::Key(format!("cannot read {k}: {e}")))?,
    );
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        TlsError::Key(format!(
            "{k}: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
        ))
    })
}
