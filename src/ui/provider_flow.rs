//! The browser's half of a login through an OpenID Connect provider (SPEC §7.1, OpenID Connect
//! Core §3.1.2.1, RFC 7636, RFC 9700 §4.7): the `state`, the `nonce` and the PKCE verifier of
//! one attempt, with where to go afterwards, kept in a short-lived (10 min) cookie that the
//! gateway signs — HMAC-SHA-256 with a key derived from its signing keys, so replicas share it —
//! sent only to that provider's callback path (`HttpOnly; Secure; SameSite=Lax`). A callback
//! whose `state` is not the one of the browser's own cookie is refused: a login cannot be
//! started in one browser and finished in another.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::auth::cookies::{self, PROVIDER_FLOW_COOKIE};
use crate::auth::keys::SigningKeys;
use crate::auth::secret::{RngError, constant_time_eq, random_token};
use crate::clock::unix_seconds;

/// How long a login at the provider may take.
pub const FLOW_TTL: Duration = Duration::from_secs(600);

/// The longest `return_to` a flow carries (a longer one becomes `/`): the cookie must stay
/// well under the 4 KiB browsers keep.
pub const MAX_RETURN_TO: usize = 1024;

/// The longest cookie value read back.
const MAX_COOKIE_LEN: usize = 3072;

/// What the MAC key is derived for (see [`SigningKeys::mac_keys`]).
const MAC_PURPOSE: &str = "provider login flow cookie";

/// Characters of a base64url HMAC-SHA-256.
const MAC_LEN: usize = 43;

/// One login attempt at a provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The `[[identity_providers]]` name.
    #[serde(rename = "p")]
    pub provider: String,
    /// The `state` sent to the provider (256 random bits).
    #[serde(rename = "s")]
    pub state: String,
    /// The `nonce` the ID token must carry (256 random bits).
    #[serde(rename = "n")]
    pub nonce: String,
    /// The PKCE `code_verifier` (RFC 7636 §4.1: 43 characters from 256 random bits).
    #[serde(rename = "v")]
    pub verifier: String,
    /// The same-origin path to go to after the login.
    #[serde(rename = "r")]
    pub return_to: String,
    /// When the attempt expires, in Unix seconds.
    #[serde(rename = "e")]
    pub expires: i64,
}

/// Why a callback's cookie does not stand for a login under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowError {
    /// No cookie (never started in this browser, expired, or already used).
    Missing,
    /// Not made by this gateway, or altered.
    BadSignature,
    /// Made for another provider.
    WrongProvider,
    /// Older than [`FLOW_TTL`].
    Expired,
}

impl FlowError {
    /// For the log.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "no login cookie (not started in this browser, expired or used)",
            Self::BadSignature => "the login cookie's signature does not verify",
            Self::WrongProvider => "the login cookie was made for another provider",
            Self::Expired => "the login cookie expired",
        }
    }
}

impl Flow {
    /// A new attempt at `provider`, returning to `return_to`.
    pub fn new(provider: &str, return_to: &str, now: SystemTime) -> Result<Self, RngError> {
        let return_to = if return_to.len() <= MAX_RETURN_TO {
            return_to
        } else {
            "/"
        };
        let expires = unix_seconds(now).saturating_add(FLOW_TTL.as_secs().cast_signed());
        Ok(Self {
            provider: provider.to_owned(),
            state: random_token::<32>()?,
            nonce: random_token::<32>()?,
            verifier: random_token::<32>()?,
            return_to: return_to.to_owned(),
            expires,
        })
    }

    /// The PKCE `code_challenge` (S256) of the verifier.
    pub fn challenge(&self) -> String {
        crate::oauth::pkce::s256_challenge(&self.verifier)
    }

    /// The cookie value: base64url of the JSON, then its MAC (no separator: the MAC has a fixed
    /// length). `None` if the signing keys give no MAC key.
    pub fn seal(&self, keys: &SigningKeys) -> Option<String> {
        let json = serde_json::to_vec(self).ok()?;
        let key = keys.mac_keys(MAC_PURPOSE).into_iter().next()?;
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mac = mac(key.as_slice(), payload.as_bytes())?;
        Some(format!("{payload}{}", URL_SAFE_NO_PAD.encode(mac)))
    }

    /// The attempt of the request's flow cookie, if this gateway made it for `provider` and it
    /// has not expired.
    pub fn open(
        headers: &http::HeaderMap,
        keys: &SigningKeys,
        provider: &str,
        now: SystemTime,
    ) -> Result<Self, FlowError> {
        let value = cookies::get_sized(headers, PROVIDER_FLOW_COOKIE, MAX_COOKIE_LEN)
            .ok_or(FlowError::Missing)?;
        let split = value
            .len()
            .checked_sub(MAC_LEN)
            .ok_or(FlowError::BadSignature)?;
        let (payload, presented) = value.split_at(split);
        let signed = keys.mac_keys(MAC_PURPOSE).iter().any(|key| {
            mac(key.as_slice(), payload.as_bytes()).is_some_and(|expected| {
                constant_time_eq(
                    URL_SAFE_NO_PAD.encode(expected).as_bytes(),
                    presented.as_bytes(),
                )
            })
        });
        if !signed {
            return Err(FlowError::BadSignature);
        }
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| FlowError::BadSignature)?;
        let flow: Flow = serde_json::from_slice(&json).map_err(|_| FlowError::BadSignature)?;
        if flow.provider != provider {
            return Err(FlowError::WrongProvider);
        }
        if flow.expires <= unix_seconds(now) {
            return Err(FlowError::Expired);
        }
        Ok(flow)
    }

    /// Whether `presented` is this attempt's `state` (constant-time).
    pub fn state_matches(&self, presented: &str) -> bool {
        constant_time_eq(self.state.as_bytes(), presented.as_bytes())
    }
}

/// The path the flow cookie of `provider` is sent to: its callback only.
pub fn callback_path(provider: &str) -> String {
    format!("/login/{provider}/callback")
}

/// `Set-Cookie` for a new attempt.
pub fn set_cookie(provider: &str, sealed: &str) -> HeaderValue {
    cookies::set(
        PROVIDER_FLOW_COOKIE,
        sealed,
        &callback_path(provider),
        "Lax",
        FLOW_TTL,
    )
}

/// `Set-Cookie` that ends the attempt: a callback is answered once.
pub fn clear_cookie(provider: &str) -> HeaderValue {
    cookies::clear(PROVIDER_FLOW_COOKIE, &callback_path(provider), "Lax")
}

fn mac(key: &[u8], payload: &[u8]) -> Option<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(b"gatehouse provider flow v1\n");
    mac.update(payload);
    Some(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, header};

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let cookie = format!("{PROVIDER_FLOW_COOKIE}={value}");
        h.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        h
    }

    #[test]
    fn a_sealed_flow_opens_only_unaltered_for_its_provider_and_in_time() {
        let keys = SigningKeys::generate().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let flow = Flow::new("corp", "/wiki?page=1", now).unwrap();
        assert_eq!(flow.verifier.len(), 43);
        assert_ne!(flow.state, flow.nonce);
        let sealed = flow.seal(&keys).unwrap();
        let h = with_cookie(&sealed);
        assert_eq!(Flow::open(&h, &keys, "corp", now), Ok(flow.clone()));
        assert!(flow.state_matches(&flow.state) && !flow.state_matches("other"));
        assert_eq!(
            Flow::open(&h, &keys, "other", now),
            Err(FlowError::WrongProvider)
        );
        let late = now + FLOW_TTL;
        assert_eq!(Flow::open(&h, &keys, "corp", late), Err(FlowError::Expired));
        // Another gateway's keys, or one character changed anywhere: refused.
        let stranger = SigningKeys::generate().unwrap();
        assert_eq!(
            Flow::open(&h, &stranger, "corp", now),
            Err(FlowError::BadSignature)
        );
        for i in [0, sealed.len() / 2, sealed.len() - 1] {
            let mut bytes = sealed.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            assert_eq!(
                Flow::open(&with_cookie(&altered), &keys, "corp", now),
                Err(FlowError::BadSignature)
            );
        }
        assert_eq!(
            Flow::open(&HeaderMap::new(), &keys, "corp", now),
            Err(FlowError::Missing)
        );
        let long = "/".repeat(MAX_RETURN_TO + 1);
        assert_eq!(Flow::new("corp", &long, now).unwrap().return_to, "/");
        let c = set_cookie("corp", "v");
        assert_eq!(
            c,
            "gatehouse_idp=v; Path=/login/corp/callback; Max-Age=600; Secure; HttpOnly; SameSite=Lax"
        );
    }
}
