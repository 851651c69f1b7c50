//! One issuer's signing keys (RFC 7517 JWKS) and the verification of the JWTs it signs
//! (RFC 7515, RFC 7519, RFC 8725; SPEC §7.1 ID tokens and §7.2 access tokens).
//!
//! Keys: RSA (RS*/PS*), EC P-256 (ES256) and P-384 (ES384), OKP Ed25519 (EdDSA); a key whose
//! `kty`/`crv` does not fit the token's `alg`, or whose own `alg` differs, is never used; `none`
//! and HMAC are never accepted (an HMAC "signed" with a public key is the classic confusion).
//! The set is fetched in the background every `jwks_refresh`, and at once when a token names
//! an unknown `kid` — at most once per [`FORCED_REFRESH_INTERVAL`], so made-up `kid`s cannot
//! hammer the issuer. A failed fetch keeps the last good keys. An issuer with no keys at all is
//! [`VerifyError::NoKeys`] (the caller answers 503), anything wrong with the token is a 401.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use prometheus::IntCounterVec;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::client::{Outbound, OutboundError};
use super::discovery::{self, DiscoveryError};

/// The shortest time between two refreshes caused by unknown `kid`s (SPEC §7.2).
pub const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// How soon a key set that could not be fetched at all is tried again (doubling up to the
/// refresh interval).
const FIRST_RETRY: Duration = Duration::from_secs(2);

/// RSA moduli below this many bits are not trusted (RFC 8725 §3.5 / NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// Where the JWKS is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A configured `jwks_uri`.
    Uri(String),
    /// The `jwks_uri` of the issuer's metadata (RFC 8414, then OpenID Connect Discovery).
    Discover,
}

/// What a token must satisfy besides its signature.
#[derive(Clone, Copy, Debug)]
pub struct Expectations<'a> {
    /// `iss` must equal this exactly.
    pub issuer: &'a str,
    /// `aud` must contain at least one of these.
    pub audiences: &'a [String],
    /// The header's `alg` must be one of these (HMAC ones are refused regardless).
    pub algorithms: &'a [Algorithm],
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway: u64,
    /// The gateway's clock (`Clock::unix_seconds`); `exp`/`nbf` are checked against it as well
    /// as against the system clock jsonwebtoken reads.
    pub now_unix: i64,
}

/// A token whose signature and registered claims (`iss`, `aud`, `exp`, `nbf`, `sub`) passed.
#[derive(Clone, Debug)]
pub struct Verified {
    pub header: Header,
    pub claims: Map<String, Value>,
    /// The `kid` of the key that verified it, when the key had one.
    pub kid: Option<String>,
}

/// Why a token was not accepted. Only [`VerifyError::NoKeys`] is the issuer's fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a JWS compact JWT, or an unsupported alg")]
    Malformed,
    #[error("alg {0:?} not allowed for this issuer")]
    Algorithm(Algorithm),
    #[error("the token has no kid and the issuer has several keys")]
    KidRequired,
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    #[error("the key {0:?} is not of the token's alg")]
    KeyMismatch(String),
    #[error("signature or claims: {0}")]
    Rejected(String),
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("the issuer's keys have never been fetched")]
    NoKeys,
}

impl VerifyError {
    /// True when the issuer has no keys at all: answer 503, not 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::NoKeys)
    }
}

/// Why a fetch of the key set failed; the last good keys stay in use.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("discovery: {0}")]
    Discovery(#[from] DiscoveryError),
    #[error("the issuer's metadata has no jwks_uri")]
    NoJwksUri,
    #[error("{0}")]
    Outbound(#[from] OutboundError),
    #[error("JWKS without a usable signing key ({0})")]
    NoUsableKey(String),
}

impl FetchError {
    fn label(&self) -> &'static str {
        match self {
            Self::NoUsableKey(_) => "invalid",
            Self::Discovery(
                DiscoveryError::IssuerMismatch { .. } | DiscoveryError::BadEndpoint { .. },
            )
            | Self::NoJwksUri => "invalid",
            _ => "error",
        }
    }
}

/// The shape of a public key, which decides the algorithms it may verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    fn accepts(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::EcP256 => alg == ES256,
            Self::EcP384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
        }
    }
}

struct Key {
    kid: Option<String>,
    kind: KeyKind,
    /// The key's own `alg` member, when it names one.
    alg: Option<Algorithm>,
    decoding: DecodingKey,
}

impl Key {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.accepts(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

#[derive(Default)]
struct Keys {
    keys: Vec<Arc<Key>>,
}

enum Pick {
    Found(Arc<Key>),
    NoKeys,
    Unknown(String),
    KidRequired,
    Mismatch(String),
}

impl Keys {
    fn pick(&self, kid: Option<&str>, alg: Algorithm) -> Pick {
        if self.keys.is_empty() {
            return Pick::NoKeys;
        }
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                let Some(first) = named.next() else {
                    return Pick::Unknown(kid.to_string());
                };
                if first.accepts(alg) {
                    return Pick::Found(first.clone());
                }
                named
                    .find(|k| k.accepts(alg))
                    .map_or(Pick::Mismatch(kid.to_string()), |k| Pick::Found(k.clone()))
            }
            None => match self.keys.as_slice() {
                [only] if only.accepts(alg) => Pick::Found(only.clone()),
                [only] => Pick::Mismatch(only.kid.clone().unwrap_or_default()),
                _ => Pick::KidRequired,
            },
        }
    }
}

/// One issuer's key set. Share it as `Arc<KeySet>`; [`KeySet::start`] keeps it fresh until the
/// last `Arc` is dropped.
pub struct KeySet {
    name: String,
    issuer: String,
    source: KeySource,
    client: Outbound,
    refreshes: IntCounterVec,
    keys: ArcSwap<Keys>,
    discovered_uri: Mutex<Option<String>>,
    fetching: tokio::sync::Mutex<()>,
    last_forced: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("keys", &self.keys.load().keys.len())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// An empty key set for `issuer`; `name` labels `gatehouse_jwks_refreshes_total`
    /// (`refreshes` is that family). Nothing is fetched until [`KeySet::start`] or a token.
    pub fn new(
        name: &str,
        issuer: &str,
        source: KeySource,
        client: Outbound,
        refreshes: IntCounterVec,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            issuer: issuer.to_string(),
            source,
            client,
            refreshes,
            keys: ArcSwap::from_pointee(Keys::default()),
            discovered_uri: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            last_forced: Mutex::new(None),
        })
    }

    /// The issuer this set belongs to.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How many usable keys are held now.
    pub fn len(&self) -> usize {
        self.keys.load().keys.len()
    }

    /// True before the first successful fetch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fetches now and, in the background, every `every` (sooner, with backoff, while no fetch
    /// has succeeded yet). The task ends when the last `Arc` of this set is dropped. Must be
    /// called inside a tokio runtime; the start of the gateway never waits for the issuer.
    pub fn start(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut retry = FIRST_RETRY;
            loop {
                let Some(set) = weak.upgrade() else { return };
                let _ = set.refresh().await;
                let wait = if set.is_empty() {
                    let wait = retry.min(every);
                    retry = (retry * 2).min(every);
                    wait
                } else {
                    retry = FIRST_RETRY;
                    every
                };
                drop(set);
                tokio::time::sleep(wait).await;
            }
        })
    }

    /// Fetches the JWKS now and replaces the keys when it holds at least one usable key; on
    /// failure the last good keys stay. Counted in `gatehouse_jwks_refreshes_total`.
    pub async fn refresh(&self) -> Result<usize, FetchError> {
        let _one_at_a_time = self.fetching.lock().await;
        let result = self.fetch().await;
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.refreshes.with_label_values(&[&self.name, label]).inc();
        match result {
            Ok(keys) => {
                let count = keys.keys.len();
                self.keys.store(Arc::new(keys));
                tracing::debug!(issuer = %self.name, keys = count, "JWKS refreshed");
                Ok(count)
            }
            Err(e) => {
                tracing::warn!(issuer = %self.name, error = %e, kept = self.len(), "JWKS refresh failed; keeping the last good keys");
                Err(e)
            }
        }
    }

    /// Replaces the keys with those of a JWKS document already at hand (a benchmark, or a
    /// document read some other way); the same rules as a fetch, not counted as one.
    pub fn load_document(&self, jwks: &Value) -> Result<usize, FetchError> {
        let keys = parse_jwks(jwks)?;
        let count = keys.keys.len();
        self.keys.store(Arc::new(keys));
        Ok(count)
    }

    async fn fetch(&self) -> Result<Keys, FetchError> {
        let uri = match &self.source {
            KeySource::Uri(uri) => uri.clone(),
            KeySource::Discover => {
                let known = lock(&self.discovered_uri).clone();
                match known {
                    Some(uri) => uri,
                    None => {
                        let metadata = discovery::discover(&self.client, &self.issuer).await?;
                        let uri = metadata.jwks_uri.ok_or(FetchError::NoJwksUri)?;
                        *lock(&self.discovered_uri) = Some(uri.clone());
                        uri
                    }
                }
            }
        };
        let json = match self.client.get_json(&uri, None).await {
            Ok(json) => json,
            Err(e) => {
                // The metadata may have moved the JWKS: discover again next time.
                *lock(&self.discovered_uri) = None;
                return Err(e.into());
            }
        };
        parse_jwks(&json)
    }

    /// Verifies `token` against this issuer's keys and `expect`, returning its claims.
    /// An unknown `kid` (or no keys yet) triggers one refresh at most every
    /// [`FORCED_REFRESH_INTERVAL`]; wrap the call in the request's deadline, since that
    /// refresh waits on the issuer (bounded by the client's timeout).
    pub async fn verify(
        &self,
        token: &str,
        expect: &Expectations<'_>,
    ) -> Result<Verified, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.crit.is_some() || header.enc.is_some() || header.zip.is_some() {
            // RFC 7515 §4.1.11: extensions we do not understand; compression and encryption are not ours.
            return Err(VerifyError::Malformed);
        }
        let alg = header.alg;
        if !expect.algorithms.contains(&alg) || !asymmetric(alg) {
            return Err(VerifyError::Algorithm(alg));
        }
        let kid = header.kid.as_deref();
        let key = match self.keys.load().pick(kid, alg) {
            Pick::Found(key) => key,
            Pick::KidRequired => return Err(VerifyError::KidRequired),
            Pick::Mismatch(kid) => return Err(VerifyError::KeyMismatch(kid)),
            Pick::NoKeys | Pick::Unknown(_) => {
                if kid.is_none() && !self.is_empty() {
                    return Err(VerifyError::KidRequired);
                }
                self.refresh_for_unknown_key().await;
                match self.keys.load().pick(kid, alg) {
                    Pick::Found(key) => key,
                    Pick::NoKeys => return Err(VerifyError::NoKeys),
                    Pick::Unknown(kid) => return Err(VerifyError::UnknownKid(kid)),
                    Pick::KidRequired => return Err(VerifyError::KidRequired),
                    Pick::Mismatch(kid) => return Err(VerifyError::KeyMismatch(kid)),
                }
            }
        };
        let data = jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &key.decoding,
            &validation(alg, expect),
        )
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => VerifyError::Expired,
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
            _ => VerifyError::Rejected(e.to_string()),
        })?;
        check_times(&data.claims, expect)?;
        Ok(Verified {
            header: data.header,
            claims: data.claims,
            kid: key.kid.clone(),
        })
    }

    /// A refresh for a token whose key is not known, unless one ran less than
    /// [`FORCED_REFRESH_INTERVAL`] ago; then it only waits for a fetch already under way.
    async fn refresh_for_unknown_key(&self) {
        let allowed = {
            let mut last = lock(&self.last_forced);
            let now = Instant::now();
            let allowed = last.is_none_or(|at| now.duration_since(at) >= FORCED_REFRESH_INTERVAL);
            if allowed {
                *last = Some(now);
            }
            allowed
        };
        if allowed {
            let _ = self.refresh().await;
        } else {
            drop(self.fetching.lock().await);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// jsonwebtoken's checks, every one set explicitly (its defaults are lenient).
fn validation(alg: Algorithm, expect: &Expectations<'_>) -> Validation {
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.leeway = expect.leeway;
    v.reject_tokens_expiring_in_less_than = 0;
    v.set_issuer(&[expect.issuer]);
    v.set_audience(expect.audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.sub = None;
    v
}

/// `exp` and `nbf` against the gateway's clock too (the one tests move).
fn check_times(claims: &Map<String, Value>, expect: &Expectations<'_>) -> Result<(), VerifyError> {
    let leeway = i64::try_from(expect.leeway).unwrap_or(i64::MAX);
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| VerifyError::Rejected("exp is not an integer".into()))?;
    if expect.now_unix > exp.saturating_add(leeway) {
        return Err(VerifyError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf
            .as_i64()
            .ok_or_else(|| VerifyError::Rejected("nbf is not an integer".into()))?;
        if nbf > expect.now_unix.saturating_add(leeway) {
            return Err(VerifyError::NotYetValid);
        }
    }
    Ok(())
}

/// The usable signing keys of a JWKS document. Keys for encryption, of unknown types or
/// curves, with an `alg` their type cannot verify, or RSA below 2048 bits are left out.
fn parse_jwks(json: &Value) -> Result<Keys, FetchError> {
    let Some(members) = json.get("keys").and_then(Value::as_array) else {
        return Err(FetchError::NoUsableKey("no \"keys\" array".into()));
    };
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for jwk in members {
        match parse_jwk(jwk) {
            Ok(key) => keys.push(Arc::new(key)),
            Err(why) => skipped.push(why),
        }
    }
    if keys.is_empty() {
        return Err(FetchError::NoUsableKey(if skipped.is_empty() {
            "empty".into()
        } else {
            skipped.join("; ")
        }));
    }
    if !skipped.is_empty() {
        tracing::debug!(skipped = %skipped.join("; "), "JWKS keys left out");
    }
    Ok(Keys { keys })
}

fn parse_jwk(jwk: &Value) -> Result<Key, String> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    let kid = member("kid").map(str::to_string);
    let label = kid.clone().unwrap_or_else(|| "(no kid)".into());
    if member("use").is_some_and(|u| u != "sig") {
        return Err(format!("{label}: not a signing key"));
    }
    let required = |name: &str| member(name).ok_or_else(|| format!("{label}: no {name}"));
    let (kind, decoding) = match (member("kty"), member("crv")) {
        (Some("RSA"), _) => {
            let n = required("n")?;
            let bits = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(n)
                .map_err(|_| format!("{label}: n is not base64url"))?
                .iter()
                .skip_while(|b| **b == 0)
                .count()
                * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!("{label}: RSA key of {bits} bits"));
            }
            (
                KeyKind::Rsa,
                DecodingKey::from_rsa_components(n, required("e")?),
            )
        }
        (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => (
            if crv == "P-256" {
                KeyKind::EcP256
            } else {
                KeyKind::EcP384
            },
            DecodingKey::from_ec_components(required("x")?, required("y")?),
        ),
        (Some("OKP"), Some("Ed25519")) => (
            KeyKind::Ed25519,
            DecodingKey::from_ed_components(required("x")?),
        ),
        (kty, crv) => return Err(format!("{label}: unsupported kty {kty:?} crv {crv:?}")),
    };
    let decoding = decoding.map_err(|e| format!("{label}: {e}"))?;
    let alg = match member("alg") {
        None => None,
        Some(name) => {
            let alg: Algorithm = name
                .parse()
                .map_err(|_| format!("{label}: unknown alg {name}"))?;
            if !kind.accepts(alg) {
                return Err(format!("{label}: alg {name} does not fit its kty"));
            }
            Some(alg)
        }
    };
    Ok(Key {
        kid,
        kind,
        alg,
        decoding,
    })
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;
