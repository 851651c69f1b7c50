//! Random secrets and their storage form: CSPRNG tokens in base64url without padding
//! (RFC 4648 §5; RFC 6749 §10.10 entropy, RFC 6819 §5.1.4.2.2), recognizable prefixes for
//! refresh tokens and PATs, SHA-256 hashes for storage, and constant-time comparison.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Prefix of every personal access token, so the proxy tells a PAT from a JWT without a store
/// lookup and secret scanners can find leaked ones.
pub const PAT_PREFIX: &str = "gh_pat_";
/// Prefix of every refresh token.
pub const REFRESH_TOKEN_PREFIX: &str = "gh_rt_";

/// Bytes of randomness in a client id (144 bits: 24 characters, no partial last character).
pub const CLIENT_ID_BYTES: usize = 18;
/// Bytes of randomness in client secrets, codes, refresh tokens and PATs (256 bits).
pub const SECRET_BYTES: usize = 32;

/// The OS random source failed (it does not on a running Linux; callers answer 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RngError;

/// The gateway's one secret-string type, declared with the config (a leaf) so that config
/// values and the secrets made here are the same type.
pub use crate::config::Secret;

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

/// Whether `b` is in the base64url alphabet (RFC 4648 §5), padding excluded.
pub const fn is_base64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Fills an array from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RngError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| RngError)?;
    Ok(out)
}

/// `N` random bytes as base64url without padding.
pub fn random_token<const N: usize>() -> Result<String, RngError> {
    let bytes = Zeroizing::new(random_bytes::<N>()?);
    Ok(URL_SAFE_NO_PAD.encode(bytes.as_slice()))
}

/// A new OAuth client id: 144 random bits, 24 URL-unreserved characters.
pub fn new_client_id() -> Result<String, RngError> {
    random_token::<CLIENT_ID_BYTES>()
}

/// A new client secret: 256 random bits, 43 URL-unreserved characters.
pub fn new_client_secret() -> Result<Secret, RngError> {
    random_token::<SECRET_BYTES>().map(Secret::new)
}

/// A new authorization code: 256 random bits (RFC 6749 §10.10 asks for ≥ 128).
pub fn new_authorization_code() -> Result<Secret, RngError> {
    random_token::<SECRET_BYTES>().map(Secret::new)
}

/// A new refresh token: `gh_rt_` and 256 random bits.
pub fn new_refresh_token() -> Result<Secret, RngError> {
    prefixed(REFRESH_TOKEN_PREFIX)
}

/// A new personal access token: `gh_pat_` and 256 random bits.
pub fn new_personal_access_token() -> Result<Secret, RngError> {
    prefixed(PAT_PREFIX)
}

/// A new random identifier (128 bits), e.g. a JWT `jti`, a grant id or a consent id.
pub fn new_id() -> Result<String, RngError> {
    random_token::<16>()
}

fn prefixed(prefix: &str) -> Result<Secret, RngError> {
    let body = Zeroizing::new(random_token::<SECRET_BYTES>()?);
    let mut out = String::with_capacity(prefix.len() + body.len());
    out.push_str(prefix);
    out.push_str(&body);
    Ok(Secret::new(out))
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Compares two byte strings in time independent of their contents (the length may leak).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn decoded_len(token: &str) -> usize {
        URL_SAFE_NO_PAD.decode(token).unwrap().len()
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
        let from_json: Secret = serde_json::from_str("\"x\"").unwrap();
        assert_eq!(from_json.expose(), "x");
    }

    #[test]
    fn token_sizes_meet_the_entropy_floor() {
        let id = new_client_id().unwrap();
        assert_eq!(id.len(), 24);
        assert!(decoded_len(&id) * 8 >= 128);
        let secret = new_client_secret().unwrap();
        assert!(decoded_len(secret.expose()) * 8 >= 256);
        let code = new_authorization_code().unwrap();
        assert!(decoded_len(code.expose()) * 8 >= 128);
        assert_eq!(decoded_len(&new_id().unwrap()), 16);
    }

    #[test]
    fn tokens_use_only_unreserved_characters() {
        for t in [
            new_client_id().unwrap(),
            new_client_secret().unwrap().expose().to_owned(),
            new_personal_access_token().unwrap().expose().to_owned(),
            new_refresh_token().unwrap().expose().to_owned(),
        ] {
            assert!(t.bytes().all(is_base64url_byte), "{t}");
            assert!(!t.contains('='));
        }
    }

    #[test]
    fn prefixes_identify_pats_and_refresh_tokens() {
        let pat = new_personal_access_token().unwrap();
        assert!(pat.expose().starts_with("gh_pat_"));
        assert_eq!(decoded_len(&pat.expose()[PAT_PREFIX.len()..]), 32);
        let rt = new_refresh_token().unwrap();
        assert!(rt.expose().starts_with("gh_rt_"));
    }

    #[test]
    fn tokens_do_not_repeat() {
        let set: HashSet<String> = (0..1000).map(|_| new_client_id().unwrap()).collect();
        assert_eq!(set.len(), 1000);
    }

    #[test]
    fn sha256_matches_the_fips_vector() {
        let hex: String = sha256(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_compares_contents_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
        assert_eq!(Secret::new("a"), Secret::new("a"));
        assert_ne!(Secret::new("a"), Secret::new("b"));
    }
}
