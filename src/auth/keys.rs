//! Signing keys: Ed25519 PKCS#8 PEM files (RFC 8410, RFC 5958), the first signs and all verify;
//! `kid` is the RFC 7638 JWK thumbprint, and the public set is served as a JWKS (RFC 7517,
//! RFC 8037 `OKP` keys).

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};

use crate::auth::secret::{Secret, random_bytes, sha256};

/// Largest key file read (a PKCS#8 Ed25519 PEM is about 120 bytes).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// A signing key that could not be loaded; every variant names its file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no signing keys configured (oauth.signing_keys is empty)")]
    NoKeys,
    #[error("signing key {}: file not found", .0.display())]
    Missing(PathBuf),
    #[error("signing key {}: cannot read: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing key {}: not an Ed25519 PKCS#8 private key (-----BEGIN PRIVATE KEY-----): {reason}", .path.display())]
    NotEd25519 { path: PathBuf, reason: String },
    #[error("signing key {}: the same key as {}", .path.display(), .first.display())]
    Duplicate { path: PathBuf, first: PathBuf },
    #[error("generating a key: {0}")]
    Generate(String),
}

/// One key of the set: the private half signs, the public half verifies and is published.
pub(crate) struct KeyEntry {
    pub(crate) kid: String,
    pub(crate) signing: SigningKey,
    pub(crate) decoding: DecodingKey,
    /// `{"alg":"EdDSA","typ":"at+jwt","kid":…}`, base64url: the access-token header, built once.
    pub(crate) access_header_b64: String,
    /// The same with `typ: JWT`, for assertions.
    pub(crate) jwt_header_b64: String,
    x: String,
    source: PathBuf,
}

/// The gateway's Ed25519 keys, in configured order. Cheap to share behind an `Arc`.
pub struct SigningKeys {
    keys: Vec<KeyEntry>,
    jwks_json: String,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish()
    }
}

/// A JSON Web Key as published (RFC 7517 §4, RFC 8037 §2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

/// A JWK Set (RFC 7517 §5): the body of `GET /oauth2/jwks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl SigningKeys {
    /// Reads Ed25519 PKCS#8 PEM private keys; the first signs, all verify.
    pub fn load(paths: &[PathBuf]) -> Result<Self, KeyError> {
        let mut pems = Vec::with_capacity(paths.len());
        for path in paths {
            pems.push((path.clone(), read_key_file(path)?));
        }
        Self::from_named_pems(pems)
    }

    /// Keys from PEM text (tests, the demo); errors name them `pem[i]`.
    pub fn from_pems(pems: &[&str]) -> Result<Self, KeyError> {
        let named = pems
            .iter()
            .enumerate()
            .map(|(i, pem)| (PathBuf::from(format!("pem[{i}]")), Secret::new(*pem)))
            .collect();
        Self::from_named_pems(named)
    }

    /// A set of one freshly generated key (tests, the demo).
    pub fn generate() -> Result<Self, KeyError> {
        let pem = generate_pem()?;
        Self::from_pems(&[pem.expose()])
    }

    fn from_named_pems(pems: Vec<(PathBuf, Secret)>) -> Result<Self, KeyError> {
        if pems.is_empty() {
            return Err(KeyError::NoKeys);
        }
        let mut keys: Vec<KeyEntry> = Vec::with_capacity(pems.len());
        for (path, pem) in pems {
            let signing =
                SigningKey::from_pkcs8_pem(pem.expose()).map_err(|e| KeyError::NotEd25519 {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let entry = KeyEntry::new(signing, path)?;
            if let Some(first) = keys.iter().find(|k| k.kid == entry.kid) {
                return Err(KeyError::Duplicate {
                    path: entry.source,
                    first: first.source.clone(),
                });
            }
            keys.push(entry);
        }
        let jwks = Jwks {
            keys: keys.iter().map(KeyEntry::jwk).collect(),
        };
        let jwks_json =
            serde_json::to_string(&jwks).map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok(Self { keys, jwks_json })
    }

    /// The `kid` of the signing (first) key.
    pub fn current_kid(&self) -> &str {
        self.signer().kid.as_str()
    }

    /// Every `kid`, signing key first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// The public keys as a JWK Set.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.keys.iter().map(KeyEntry::jwk).collect(),
        }
    }

    /// The JWKS document for `/oauth2/jwks`, serialized once at load.
    pub fn jwks_json(&self) -> &str {
        &self.jwks_json
    }

    /// Secret keys for MACs the gateway makes and checks itself (the login-flow cookie of
    /// SPEC §7.1), one per signing key in order, each HMAC-SHA-256 (RFC 2104) of `purpose`
    /// keyed by that key's private seed: replicas that share signing keys share these, the
    /// first makes new MACs and all verify, and no two purposes share a key.
    pub fn mac_keys(&self, purpose: &str) -> Vec<zeroize::Zeroizing<[u8; 32]>> {
        use hmac::Mac as _;
        self.keys
            .iter()
            .filter_map(|k| {
                let seed = zeroize::Zeroizing::new(k.signing.to_bytes());
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(seed.as_slice()).ok()?;
                mac.update(b"gatehouse derived MAC key: ");
                mac.update(purpose.as_bytes());
                Some(zeroize::Zeroizing::new(mac.finalize().into_bytes().into()))
            })
            .collect()
    }

    pub(crate) fn signer(&self) -> &KeyEntry {
        // `from_named_pems` refuses an empty set, so index 0 exists.
        &self.keys[0]
    }

    pub(crate) fn find(&self, kid: &str) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

impl KeyEntry {
    fn new(signing: SigningKey, source: PathBuf) -> Result<Self, KeyError> {
        let public = signing.verifying_key().to_bytes();
        let x = URL_SAFE_NO_PAD.encode(public);
        let kid = jwk_thumbprint(&x);
        let decoding = DecodingKey::from_ed_components(&x).map_err(|e| KeyError::NotEd25519 {
            path: source.clone(),
            reason: e.to_string(),
        })?;
        let header = |typ: &str| {
            let json = serde_json::json!({ "alg": "EdDSA", "typ": typ, "kid": kid });
            URL_SAFE_NO_PAD.encode(json.to_string())
        };
        Ok(Self {
            access_header_b64: header("at+jwt"),
            jwt_header_b64: header("JWT"),
            kid,
            signing,
            decoding,
            x,
            source,
        })
    }

    fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: self.x.clone(),
            kid: self.kid.clone(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        }
    }
}

fn read_key_file(path: &Path) -> Result<Secret, KeyError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => KeyError::Missing(path.to_path_buf()),
        _ => KeyError::Unreadable {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| KeyError::Unreadable {
            path: path.to_path_buf(),
            source: e,
        })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::NotEd25519 {
        path: path.to_path_buf(),
        reason: "not PEM text".into(),
    })?;
    Ok(Secret::new(text))
}

/// RFC 7638 thumbprint of an Ed25519 JWK with public key `x` (base64url): base64url of the
/// SHA-256 of `{"crv":"Ed25519","kty":"OKP","x":"…"}` (members sorted, no whitespace).
pub fn jwk_thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(sha256(canonical.as_bytes()))
}

/// A new Ed25519 private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), for
/// `gatehouse demo` and tests; write it with mode 0600.
pub fn generate_pem() -> Result<Secret, KeyError> {
    let seed = zeroize::Zeroizing::new(
        random_bytes::<32>().map_err(|e| KeyError::Generate(e.to_string()))?,
    );
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(Secret::new(pem.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example private key of RFC 8410 §10.3 (its public key is the one of §10.1).
    const RFC8410_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";

    #[test]
    fn thumbprint_matches_rfc_8037_appendix_a3() {
        assert_eq!(
            jwk_thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn loads_a_known_key_and_publishes_it() {
        let keys = SigningKeys::from_pems(&[RFC8410_PEM]).unwrap();
        let jwks = keys.jwks();
        assert_eq!(jwks.keys.len(), 1);
        let jwk = &jwks.keys[0];
        assert_eq!(jwk.x, "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE");
        assert_eq!(jwk.kid, jwk_thumbprint(&jwk.x));
        assert_eq!(keys.current_kid(), jwk.kid);
        let doc: serde_json::Value = serde_json::from_str(keys.jwks_json()).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": jwk.x, "kid": jwk.kid,
                "alg": "EdDSA", "use": "sig"}]})
        );
        // Never the private half.
        assert!(!keys.jwks_json().contains("\"d\""));
        assert!(!format!("{keys:?}").contains("PRIVATE"));
    }

    #[test]
    fn generated_keys_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
        std::fs::write(&a, generate_pem().unwrap().expose()).unwrap();
        std::fs::write(&b, generate_pem().unwrap().expose()).unwrap();
        let keys = SigningKeys::load(&[a.clone(), b.clone()]).unwrap();
        let kids: Vec<_> = keys.kids().collect();
        assert_eq!(kids.len(), 2);
        assert_ne!(kids[0], kids[1]);
        assert_eq!(keys.current_kid(), kids[0]);
        assert!(keys.find(kids[1]).is_some());
        assert!(keys.find("nope").is_none());
        assert!(
            generate_pem()
                .unwrap()
                .expose()
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        let again = SigningKeys::load(&[b, a]).unwrap();
        assert_eq!(again.current_kid(), kids[1]);
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = SigningKeys::load(std::slice::from_ref(&missing)).unwrap_err();
        assert!(matches!(err, KeyError::Missing(_)));
        assert!(err.to_string().contains("missing.pem"), "{err}");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let err = SigningKeys::load(&[junk]).unwrap_err();
        assert!(matches!(err, KeyError::NotEd25519 { .. }));
        assert!(err.to_string().contains("junk.pem"), "{err}");

        let binary = dir.path().join("binary.pem");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(
            SigningKeys::load(&[binary]),
            Err(KeyError::NotEd25519 { .. })
        ));

        let err = SigningKeys::load(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(matches!(err, KeyError::Unreadable { .. }), "{err:?}");
        assert!(matches!(SigningKeys::load(&[]), Err(KeyError::NoKeys)));
    }

    #[test]
    fn rejects_keys_that_are_not_ed25519_private_keys() {
        // A P-256 PKCS#8 key and an RSA key (from rcgen), and an Ed25519 *public* key.
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        let rsa_like = p256.replace("PRIVATE KEY", "RSA PRIVATE KEY");
        let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        for pem in [p256.as_str(), rsa_like.as_str(), public, ""] {
            let err = SigningKeys::from_pems(&[pem]).unwrap_err();
            assert!(matches!(err, KeyError::NotEd25519 { .. }), "{err:?}");
            assert!(err.to_string().contains("pem[0]"));
        }
    }

    #[test]
    fn the_same_key_twice_is_a_config_error() {
        let err = SigningKeys::from_pems(&[RFC8410_PEM, RFC8410_PEM]).unwrap_err();
        assert!(matches!(err, KeyError::Duplicate { .. }), "{err:?}");
    }
}
