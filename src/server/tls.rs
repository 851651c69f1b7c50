//! TLS for the public listener (RFC 8446 via rustls, ALPN h2 and http/1.1 per RFC 7301) and
//! its certificates (SPEC §7.5): the default `server.tls.cert`/`key` and `server.tls.extra`,
//! chosen per handshake by SNI (RFC 6066 §3) on each certificate's SAN DNS names (RFC 6125
//! wildcards included); swapped whole by a reload, and pair by pair by the file watch.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::config::TlsConfig;

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

/// A rustls server config for `cert` and `key` alone, offering h2 and http/1.1 (for tools such
/// as `examples/hyper_floor.rs`). Fails with every problem found: either file cannot be read or
/// parsed, or the key is not the certificate's.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsErrors> {
    let pair = CertPair::load(cert, key)?;
    let resolver = Arc::new(CertResolver::new(Certificates::new(&pair, &[])));
    server_config_with(resolver).map_err(|e| TlsErrors(vec![e.into()]))
}

/// The listener's rustls config: h2 and http/1.1, certificates from `resolver`.
pub fn server_config_with(
    resolver: Arc<CertResolver>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What a certificate file and a key file held when they were read: a change of either
/// makes the watch load the pair again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint([u8; 32], [u8; 32]);

impl Fingerprint {
    fn of(cert: &[u8], key: &[u8]) -> Self {
        Self(Sha256::digest(cert).into(), Sha256::digest(key).into())
    }
}

/// One certificate chain with its key, ready to serve, and the names it is served for.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub certified: Arc<CertifiedKey>,
    /// The end-entity certificate's SAN DNS names, lower case; a wildcard starts with `*.`.
    pub names: Vec<String>,
    /// What the files held.
    pub fingerprint: Fingerprint,
}

impl CertPair {
    /// Reads and parses `cert` and `key`; every problem is named (both files are read before
    /// giving up), including a key that is not the certificate's.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsErrors> {
        let c = cert.display();
        let k = key.display();
        let cert_pem = read_pem(cert).map_err(|e| TlsError::Cert(format!("cannot read {c}: {e}")));
        let key_pem = read_pem(key)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| TlsError::Key(format!("cannot read {k}: {e}")));
        match (cert_pem, key_pem) {
            (Ok(cert_pem), Ok(key_pem)) => Self::parse(cert, &cert_pem, key, &key_pem),
            (cert_pem, key_pem) => Err(TlsErrors(
                cert_pem.err().into_iter().chain(key_pem.err()).collect(),
            )),
        }
    }

    /// Parses the PEM text of `cert` and `key` (read from those paths, which name the files in
    /// problems).
    fn parse(cert: &Path, cert_pem: &[u8], key: &Path, key_pem: &[u8]) -> Result<Self, TlsErrors> {
        let (c, k) = (cert.display(), key.display());
        let (chain, key_der) = match (read_chain(cert, cert_pem), read_key(key, key_pem)) {
            (Ok(chain), Ok(key_der)) => (chain, key_der),
            (chain, key_der) => {
                return Err(TlsErrors(
                    chain.err().into_iter().chain(key_der.err()).collect(),
                ));
            }
        };
        let names = match webpki::EndEntityCert::try_from(&chain[0]) {
            Ok(end_entity) => end_entity
                .valid_dns_names()
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            Err(e) => {
                return Err(TlsErrors(vec![TlsError::Cert(format!(
                    "{c}: not a usable certificate: {e}"
                ))]));
            }
        };
        let certified = CertifiedKey::from_der(chain, key_der, &provider())
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
        Ok(Self {
            certified: Arc::new(certified),
            names,
            fingerprint: Fingerprint::of(cert_pem, key_pem),
        })
    }
}

fn read_chain(cert: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let c = cert.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(format!("{c}: not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Cert(format!(
            "{c}: no PEM certificate (-----BEGIN CERTIFICATE-----) found"
        )));
    }
    Ok(chain)
}

fn read_key(key: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    let k = key.display();
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        TlsError::Key(format!(
            "{k}: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
        ))
    })
}

/// Which certificate a handshake gets: the first (in config order: the default, then each
/// extra) with a SAN DNS name equal to the SNI name; else the first whose wildcard
/// (`*.example.com`, one whole left-most label) covers it; else, and without SNI, the default.
#[derive(Debug)]
pub struct Certificates {
    default: Arc<CertifiedKey>,
    /// No `extra`: every handshake gets the default, without looking at its name.
    default_only: bool,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by what follows `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl Certificates {
    pub fn new(default: &CertPair, extra: &[CertPair]) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for pair in std::iter::once(default).chain(extra) {
            for name in &pair.names {
                let table = match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()),
                    None => exact.entry(name.clone()),
                };
                table.or_insert_with(|| pair.certified.clone());
            }
        }
        Self {
            default: default.certified.clone(),
            default_only: extra.is_empty(),
            exact,
            wildcard,
        }
    }

    /// The certificate for a handshake whose SNI is `server_name`.
    pub fn for_name(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name.filter(|_| !self.default_only) else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(found) = self.exact.get(&name) {
            return found;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

/// rustls's certificate source for the listener: the current [`Certificates`], swapped whole
/// for new handshakes (a handshake in progress and open connections keep what they have).
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<Certificates>,
}

impl CertResolver {
    pub fn new(certificates: Certificates) -> Self {
        Self {
            current: ArcSwap::from_pointee(certificates),
        }
    }

    pub fn replace(&self, certificates: Certificates) {
        self.current.store(Arc::new(certificates));
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .load()
                .for_name(client_hello.server_name())
                .clone(),
        )
    }
}

/// Every certificate of one `[server.tls]`, loaded: what start, a reload and `check-config` get.
#[derive(Clone, Debug)]
pub struct LoadedTls {
    pub config: TlsConfig,
    pub default: CertPair,
    pub extra: Vec<CertPair>,
}

/// Which pair of `[server.tls]` a problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairIndex {
    Default,
    Extra(usize),
}

/// Loads every pair of `config`, or every problem with the pair it is about.
pub fn load(config: &TlsConfig) -> Result<LoadedTls, Vec<(PairIndex, TlsError)>> {
    let mut problems = Vec::new();
    let default = CertPair::load(&config.cert, &config.key)
        .map_err(|e| problems.extend(e.0.into_iter().map(|e| (PairIndex::Default, e))))
        .ok();
    let mut extra = Vec::with_capacity(config.extra.len());
    for (i, pair) in config.extra.iter().enumerate() {
        match CertPair::load(&pair.cert, &pair.key) {
            Ok(loaded) => extra.push(loaded),
            Err(e) => problems.extend(e.0.into_iter().map(|e| (PairIndex::Extra(i), e))),
        }
    }
    match default {
        Some(default) if problems.is_empty() => Ok(LoadedTls {
            config: config.clone(),
            default,
            extra,
        }),
        _ => Err(problems),
    }
}

/// The listener's certificates as they are served: the resolver, and what the watch needs to
/// see a file change (`server.tls.watch`).
pub struct CertStore {
    resolver: Arc<CertResolver>,
    state: std::sync::Mutex<WatchState>,
}

struct WatchState {
    watch: bool,
    slots: Vec<Slot>,
}

/// One pair as the watch follows it.
struct Slot {
    cert: PathBuf,
    key: PathBuf,
    serving: CertPair,
    /// A change that did not load: what the files held, and whether it was warned about.
    rejected: Option<Rejected>,
}

struct Rejected {
    /// What the files held (`None`: one could not be read).
    held: Option<Fingerprint>,
    /// Polls that saw it.
    seen: u32,
}

impl CertStore {
    pub fn new(loaded: LoadedTls) -> Self {
        let resolver = Arc::new(CertResolver::new(Certificates::new(
            &loaded.default,
            &loaded.extra,
        )));
        Self {
            resolver,
            state: std::sync::Mutex::new(WatchState::from(loaded)),
        }
    }

    pub fn resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    /// Serves `loaded` (a reload's certificates) from the next handshake on.
    pub fn replace(&self, loaded: LoadedTls) {
        let certificates = Certificates::new(&loaded.default, &loaded.extra);
        if let Ok(mut state) = self.state.lock() {
            *state = WatchState::from(loaded);
        }
        self.resolver.replace(certificates);
    }

    /// One look at every file (when `watch` is on): a pair whose files changed and load is
    /// served from the next handshake; one that does not load (half written, a key that is
    /// not the certificate's yet) keeps the pair in use, with one warning once the same
    /// content was seen twice (a renewal writing the certificate, then the key, a moment
    /// later, is not worth one). Blocking file reads: call it off the async threads.
    pub fn poll(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if !state.watch {
            return;
        }
        let mut changed = false;
        for slot in &mut state.slots {
            changed |= slot.poll();
        }
        if changed && let Some((default, extra)) = state.slots.split_first() {
            let extra: Vec<CertPair> = extra.iter().map(|s| s.serving.clone()).collect();
            self.resolver
                .replace(Certificates::new(&default.serving, &extra));
        }
    }

    /// Polls every `every` until the task is aborted.
    pub fn spawn_watch(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let store = store.clone();
                let _ = tokio::task::spawn_blocking(move || store.poll()).await;
            }
        })
    }
}

impl From<LoadedTls> for WatchState {
    fn from(loaded: LoadedTls) -> Self {
        let config = loaded.config;
        let mut slots = vec![Slot {
            cert: config.cert.clone(),
            key: config.key.clone(),
            serving: loaded.default,
            rejected: None,
        }];
        for (pair, serving) in config.extra.iter().zip(loaded.extra) {
            slots.push(Slot {
                cert: pair.cert.clone(),
                key: pair.key.clone(),
                serving,
                rejected: None,
            });
        }
        Self {
            watch: config.watch,
            slots,
        }
    }
}

impl Slot {
    /// Whether the pair served changed.
    fn poll(&mut self) -> bool {
        let read = read_pem(&self.cert)
            .and_then(|c| read_pem(&self.key).map(|k| (c, zeroize::Zeroizing::new(k))));
        let held = read
            .as_ref()
            .ok()
            .map(|(cert, key)| Fingerprint::of(cert, key));
        if held == Some(self.serving.fingerprint) {
            self.rejected = None;
            return false;
        }
        let outcome = match &read {
            Ok((cert, key)) => CertPair::parse(&self.cert, cert, &self.key, key),
            Err(e) => Err(TlsErrors(vec![TlsError::Cert(format!(
                "cannot read {} or {}: {e}",
                self.cert.display(),
                self.key.display()
            ))])),
        };
        match outcome {
            Ok(pair) => {
                tracing::info!(
                    cert = %self.cert.display(),
                    names = ?pair.names,
                    "TLS certificate reloaded: new handshakes get it"
                );
                self.serving = pair;
                self.rejected = None;
                true
            }
            Err(problems) => {
                let rejected = match self.rejected.take() {
                    Some(r) if r.held == held => Rejected {
                        held,
                        seen: r.seen.saturating_add(1),
                    },
                    _ => Rejected { held, seen: 1 },
                };
                if rejected.seen == 2 {
                    tracing::warn!(
                        cert = %self.cert.display(),
                        problem = %problems,
                        "TLS certificate changed but does not load; the one in use stays until it does"
                    );
                }
                self.rejected = Some(rejected);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> CertPair {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        CertPair::load(&c, &k).unwrap()
    }

    fn which(certs: &Certificates, pairs: &[&CertPair], name: Option<&str>) -> usize {
        let got = certs.for_name(name);
        pairs
            .iter()
            .position(|p| Arc::ptr_eq(&p.certified, got))
            .unwrap()
    }

    #[test]
    fn sni_picks_exact_names_then_wildcards_then_the_default() {
        let default = pair(&["localhost"]);
        let wild = pair(&["*.example.com", "example.com"]);
        let exact = pair(&["api.example.com"]);
        let other = pair(&["other.test", "*.other.test"]);
        let certs = Certificates::new(&default, &[wild.clone(), exact.clone(), other.clone()]);
        let pairs = [&default, &wild, &exact, &other];
        let cases = [
            (None, 0),
            (Some("localhost"), 0),
            (Some("unknown.test"), 0),
            (Some("example.com"), 1),
            (Some("www.example.com"), 1),
            (Some("WWW.Example.COM."), 1),
            // An exact name wins over an earlier wildcard.
            (Some("api.example.com"), 2),
            // A wildcard covers one label, no more.
            (Some("a.b.example.com"), 0),
            (Some("other.test"), 3),
            (Some("x.other.test"), 3),
            (Some("com"), 0),
        ];
        for (name, want) in cases {
            assert_eq!(which(&certs, &pairs, name), want, "{name:?}");
        }
    }

    /// Every choice agrees with webpki's own name check, which a client runs: the chosen
    /// certificate is valid for the name, or, when none of them is, it is the default.
    #[test]
    fn the_choice_agrees_with_webpkis_name_check() {
        let default = pair(&["localhost"]);
        let extra = [
            pair(&["*.example.com"]),
            pair(&["a.example.com", "*.a.example.com"]),
            pair(&["xn--bcher-kva.example"]),
        ];
        let certs = Certificates::new(&default, &extra);
        let valid_for = |p: &CertPair, name: &str| {
            let end_entity = p.certified.end_entity_cert().unwrap();
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity).unwrap();
            let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
            rustls::client::verify_server_name(&parsed, &name).is_ok()
        };
        for name in [
            "localhost",
            "example.com",
            "b.example.com",
            "a.example.com",
            "z.a.example.com",
            "y.z.a.example.com",
            "xn--bcher-kva.example",
            "x.xn--bcher-kva.example",
            "nothing.test",
        ] {
            let chosen = certs.for_name(Some(name));
            let pair = std::iter::once(&default)
                .chain(&extra)
                .find(|p| Arc::ptr_eq(&p.certified, chosen))
                .unwrap();
            let any = std::iter::once(&default)
                .chain(&extra)
                .any(|p| valid_for(p, name));
            if any {
                assert!(valid_for(pair, name), "{name}: chose one not valid for it");
            } else {
                assert!(Arc::ptr_eq(chosen, &default.certified), "{name}");
            }
        }
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, other.serialize_pem()).unwrap();
        let err = CertPair::load(&c, &k).unwrap_err().to_string();
        assert!(err.contains("does not match the certificate"), "{err}");
    }
}
