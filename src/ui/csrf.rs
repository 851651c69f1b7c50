//! CSRF tokens (SECURITY.md "Browser pages", OWASP synchronizer and signed double-submit
//! patterns): a token is HMAC-SHA-256 (RFC 2104) keyed by the secret it is bound to — the
//! login cookie, the session cookie or the PAT — so a token from another browser or session
//! never verifies. Consent tokens are random and single-use; the store keeps them hashed
//! with the same binding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::auth::secret::constant_time_eq;
use crate::store::SecretHash;

type HmacSha256 = Hmac<Sha256>;

/// Purposes, so a token for one form is never accepted by another.
pub const LOGIN: &str = "gatehouse login form";
pub const LOGOUT: &str = "gatehouse logout form";

fn mac(key: &str, message: &[&str]) -> Option<[u8; 32]> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key.as_bytes()).ok()?;
    for part in message {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    Some(mac.finalize().into_bytes().into())
}

/// The token for `purpose` bound to `secret` (base64url, 43 characters).
pub fn token(secret: &str, purpose: &str) -> Option<String> {
    mac(secret, &[purpose]).map(|m| URL_SAFE_NO_PAD.encode(m))
}

/// Whether `presented` is the token for `purpose` bound to `secret` (constant-time).
pub fn verify(secret: &str, purpose: &str, presented: &str) -> bool {
    match token(secret, purpose) {
        Some(expected) => constant_time_eq(expected.as_bytes(), presented.as_bytes()),
        None => false,
    }
}

/// What the store keeps for a consent's CSRF token: the token bound to the credential
/// (session cookie or PAT) that authenticated the request, so only that credential can
/// present it.
pub fn bound_hash(token: &str, binding: &str) -> Option<SecretHash> {
    mac(binding, &["gatehouse consent", token]).map(SecretHash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_their_secret_and_purpose() {
        let t = token("session-a", LOGOUT).unwrap();
        assert_eq!(t.len(), 43);
        assert!(verify("session-a", LOGOUT, &t));
        assert!(!verify("session-b", LOGOUT, &t));
        assert!(!verify("session-a", LOGIN, &t));
        assert!(!verify("session-a", LOGOUT, ""));
        assert_ne!(bound_hash("t", "a"), bound_hash("t", "b"));
        assert_eq!(bound_hash("t", "a"), bound_hash("t", "a"));
    }
}
