//! JWT access tokens (RFC 9068) and upstream assertions, signed EdDSA (RFC 8037) and verified
//! strictly per RFC 8725 §3: the algorithm is pinned to the key, `kid` must be ours, `crit`
//! and embedded key references are refused, and time is checked against a caller's `now`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::keys::{KeyEntry, SigningKeys};

/// Longest token accepted for verification (bytes); longer is `Malformed` without decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Lifetime of an `X-Auth-Assertion` (SPEC §3.4).
pub const ASSERTION_TTL_SECS: i64 = 60;

/// The claims of an access token (RFC 9068 §2.2), plus `gid`, the grant it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The user name.
    pub sub: String,
    /// The audience; after verification, the one of the policy that matched (the token may
    /// carry an array).
    pub aud: String,
    /// The app's client id (absent on tokens not issued to an app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Space-separated granted scopes (highest members).
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    /// Grant id, so a revoked grant's tokens are recognized without a per-token lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
}

/// The claims of an `X-Auth-Assertion` JWT sent to an upstream (SPEC §3.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub sub: String,
    /// The route's upstream.
    pub aud: String,
    /// Expanded scopes, space-separated.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

impl AssertionClaims {
    /// Claims valid from `now` for [`ASSERTION_TTL_SECS`].
    pub fn new(
        iss: &str,
        sub: &str,
        aud: &str,
        scope: &str,
        client_id: Option<&str>,
        now: i64,
        jti: String,
    ) -> Self {
        Self {
            iss: iss.to_owned(),
            sub: sub.to_owned(),
            aud: aud.to_owned(),
            scope: scope.to_owned(),
            client_id: client_id.map(str::to_owned),
            iat: now,
            exp: now.saturating_add(ASSERTION_TTL_SECS),
            jti,
        }
    }
}

/// What a verifier expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Exact `iss` (the gateway's `server.public_url`).
    pub issuer: String,
    /// An `aud` value the token must carry.
    pub audience: String,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds (`auth.leeway`, 5 s).
    pub leeway: u64,
}

/// Why a token was refused. All map to RFC 6750 `invalid_token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token header is not acceptable: {0}")]
    BadHeader(&'static str),
    #[error("the token was signed by an unknown key")]
    UnknownKid,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has the wrong issuer")]
    WrongIssuer,
    #[error("the token has the wrong audience")]
    WrongAudience,
}

/// Signing failed (only claims that cannot be serialized do that).
#[derive(Debug, thiserror::Error)]
#[error("cannot serialize JWT claims: {0}")]
pub struct SignError(#[from] serde_json::Error);

/// The header fields we look at. Unknown members are ignored unless listed here; serde
/// refuses a duplicated member, so `{"alg":"EdDSA","alg":"none"}` is malformed.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<IgnoredAny>,
    jku: Option<IgnoredAny>,
    jwk: Option<IgnoredAny>,
    x5u: Option<IgnoredAny>,
    x5c: Option<IgnoredAny>,
    b64: Option<IgnoredAny>,
}

/// `aud` may be one string or an array (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, expected: &str) -> bool {
        match self {
            Self::One(a) => a == expected,
            Self::Many(all) => all.iter().any(|a| a == expected),
        }
    }
}

#[derive(Deserialize)]
struct RawAccessClaims {
    iss: String,
    sub: String,
    aud: Audience,
    client_id: Option<String>,
    scope: String,
    iat: i64,
    exp: i64,
    nbf: Option<i64>,
    jti: String,
    gid: Option<String>,
}

#[derive(Deserialize)]
struct RawAssertionClaims {
    iss: String,
    sub: String,
    aud: Audience,
    scope: String,
    client_id: Option<String>,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Which `typ` values a verification accepts (compared case-insensitively, RFC 7515 §4.1.9).
#[derive(Clone, Copy)]
enum Expect {
    AccessToken,
    Assertion,
}

impl Expect {
    fn accepts(self, typ: &str) -> bool {
        match self {
            Self::AccessToken => {
                typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
            }
            Self::Assertion => typ.eq_ignore_ascii_case("JWT"),
        }
    }
}

impl SigningKeys {
    /// Signs an access token with the current key: header `{"alg":"EdDSA","typ":"at+jwt","kid"}`.
    pub fn sign_access_token(&self, claims: &AccessClaims) -> Result<String, SignError> {
        let key = self.signer();
        sign(key, &key.access_header_b64, claims)
    }

    /// Signs any claims as a plain JWT (`typ: JWT`), e.g. [`AssertionClaims`].
    pub fn sign_assertion<T: Serialize>(&self, claims: &T) -> Result<String, SignError> {
        let key = self.signer();
        sign(key, &key.jwt_header_b64, claims)
    }

    /// Verifies an access token strictly (RFC 9068 §4, RFC 8725): EdDSA with one of our keys,
    /// `typ` `at+jwt`, no `crit`, required `iss`/`aud`/`exp`/`sub`/`iat`/`jti`/`scope`, and
    /// `exp`/`nbf`/`iat` against `now_unix` with `policy.leeway`.
    pub fn verify_access_token(
        &self,
        token: &str,
        now_unix: i64,
        policy: &VerifyPolicy,
    ) -> Result<AccessClaims, TokenError> {
        let raw: RawAccessClaims = self.verify_signed(token, Expect::AccessToken)?;
        check_claims(
            &raw.iss, &raw.aud, &raw.sub, raw.exp, raw.nbf, raw.iat, now_unix, policy,
        )?;
        Ok(AccessClaims {
            iss: raw.iss,
            sub: raw.sub,
            aud: policy.audience.clone(),
            client_id: raw.client_id,
            scope: raw.scope,
            iat: raw.iat,
            exp: raw.exp,
            nbf: raw.nbf,
            jti: raw.jti,
            gid: raw.gid,
        })
    }

    /// Verifies an `X-Auth-Assertion` the same strict way, with `typ: JWT` (for backends and
    /// the demo's sample upstream).
    pub fn verify_assertion(
        &self,
        token: &str,
        now_unix: i64,
        policy: &VerifyPolicy,
    ) -> Result<AssertionClaims, TokenError> {
        let raw: RawAssertionClaims = self.verify_signed(token, Expect::Assertion)?;
        check_claims(
            &raw.iss, &raw.aud, &raw.sub, raw.exp, None, raw.iat, now_unix, policy,
        )?;
        Ok(AssertionClaims {
            iss: raw.iss,
            sub: raw.sub,
            aud: policy.audience.clone(),
            scope: raw.scope,
            client_id: raw.client_id,
            iat: raw.iat,
            exp: raw.exp,
            jti: raw.jti,
        })
    }

    /// Header checks of our own first, then jsonwebtoken verifies the signature with the
    /// algorithm pinned to EdDSA and all of its own claim checks off (we do them with `now`).
    fn verify_signed<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        expect: Expect,
    ) -> Result<T, TokenError> {
        let header = parse_header(token)?;
        if header.alg != "EdDSA" {
            return Err(TokenError::BadHeader("alg"));
        }
        if !header.typ.as_deref().is_some_and(|t| expect.accepts(t)) {
            return Err(TokenError::BadHeader("typ"));
        }
        if header.crit.is_some() || header.b64.is_some() {
            return Err(TokenError::BadHeader("crit"));
        }
        if header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
        {
            return Err(TokenError::BadHeader("embedded key reference"));
        }
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKid)?;
        let key = self.find(kid).ok_or(TokenError::UnknownKid)?;
        let data =
            jsonwebtoken::decode::<T>(token, &key.decoding, &pinned_validation()).map_err(|e| {
                match e.kind() {
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    _ => TokenError::Malformed,
                }
            })?;
        Ok(data.claims)
    }
}

fn pinned_validation() -> Validation {
    let mut v = Validation::new(Algorithm::EdDSA);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    v
}

fn sign<T: Serialize>(key: &KeyEntry, header_b64: &str, claims: &T) -> Result<String, SignError> {
    let payload = serde_json::to_vec(claims)?;
    let mut token = String::with_capacity(header_b64.len() + payload.len() * 4 / 3 + 92);
    token.push_str(header_b64);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.signing.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
    Ok(token)
}

fn parse_header(token: &str) -> Result<RawHeader, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(TokenError::Malformed);
    }
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
}

#[allow(clippy::too_many_arguments)]
fn check_claims(
    iss: &str,
    aud: &Audience,
    sub: &str,
    exp: i64,
    nbf: Option<i64>,
    iat: i64,
    now: i64,
    policy: &VerifyPolicy,
) -> Result<(), TokenError> {
    if sub.is_empty() {
        return Err(TokenError::Malformed);
    }
    if iss != policy.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if !aud.contains(&policy.audience) {
        return Err(TokenError::WrongAudience);
    }
    let leeway = i64::try_from(policy.leeway).unwrap_or(i64::MAX);
    if now > exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    let not_before = nbf.map_or(iat, |n| n.max(iat));
    if not_before > now.saturating_add(leeway) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
