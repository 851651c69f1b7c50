//! PKCE (RFC 7636): the challenge method (§4.3, `sha256` accepted as an alias of `S256`),
//! the code verifier (§4.1), challenge validation (§4.2) and constant-time verification (§4.6).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::auth::secret::{constant_time_eq, sha256};

/// Length of an S256 challenge: base64url of 32 bytes, no padding.
pub const S256_CHALLENGE_LEN: usize = 43;
/// Shortest verifier (and plain challenge) RFC 7636 §4.1 allows.
pub const MIN_VERIFIER_LEN: usize = 43;
/// Longest verifier (and plain challenge) RFC 7636 §4.1 allows.
pub const MAX_VERIFIER_LEN: usize = 128;

/// A PKCE parameter that is not acceptable (token endpoint: `invalid_grant` for a bad
/// verifier; authorize endpoint: `invalid_request` for a bad challenge or method).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("unsupported code_challenge_method (use S256 or plain)")]
    UnsupportedMethod,
    #[error("code_verifier must be 43-128 characters of [A-Za-z0-9-._~]")]
    InvalidVerifier,
    #[error("code_challenge is malformed for its method")]
    InvalidChallenge,
}

/// `code_challenge_method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodeChallengeMethod {
    /// BASE64URL(SHA256(ASCII(verifier))).
    S256,
    /// The challenge is the verifier.
    Plain,
}

impl CodeChallengeMethod {
    /// `S256`, `plain`, or `sha256` (alias of S256); exact spelling, anything else is an error.
    pub fn parse(value: &str) -> Result<Self, PkceError> {
        match value {
            "S256" | "sha256" => Ok(Self::S256),
            "plain" => Ok(Self::Plain),
            _ => Err(PkceError::UnsupportedMethod),
        }
    }

    /// The RFC 7636 name (what metadata and storage use).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::S256 => "S256",
            Self::Plain => "plain",
        }
    }
}

impl FromStr for CodeChallengeMethod {
    type Err = PkceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for CodeChallengeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A syntactically valid `code_verifier`: 43–128 characters of `[A-Za-z0-9-._~]`.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeVerifier(String);

impl CodeVerifier {
    /// Checks the RFC 7636 §4.1 grammar.
    pub fn parse(value: &str) -> Result<Self, PkceError> {
        if is_verifier_syntax(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(PkceError::InvalidVerifier)
        }
    }

    /// The verifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The S256 challenge for this verifier (what a client sends to /authorize).
    pub fn s256_challenge(&self) -> String {
        s256_challenge(&self.0)
    }
}

impl fmt::Debug for CodeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeVerifier(***)")
    }
}

/// A validated `code_challenge` with its method, as bound to an authorization code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeChallenge {
    value: String,
    method: CodeChallengeMethod,
}

impl CodeChallenge {
    /// S256: exactly 43 base64url characters encoding 32 bytes (canonical trailing bits);
    /// plain: the verifier grammar.
    pub fn parse(value: &str, method: CodeChallengeMethod) -> Result<Self, PkceError> {
        let ok = match method {
            CodeChallengeMethod::S256 => is_s256_challenge(value),
            CodeChallengeMethod::Plain => is_verifier_syntax(value),
        };
        if ok {
            Ok(Self {
                value: value.to_owned(),
                method,
            })
        } else {
            Err(PkceError::InvalidChallenge)
        }
    }

    /// The challenge as sent.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Its method.
    pub fn method(&self) -> CodeChallengeMethod {
        self.method
    }

    /// Whether `verifier` answers this challenge (constant-time).
    pub fn verify(&self, verifier: &CodeVerifier) -> bool {
        verify(&self.value, self.method, verifier.as_str())
    }
}

/// RFC 7636 §4.6: whether `verifier` answers `challenge` under `method`. The verifier's
/// grammar is checked too; the final comparison is constant-time. Never panics.
pub fn verify(challenge: &str, method: CodeChallengeMethod, verifier: &str) -> bool {
    if !is_verifier_syntax(verifier) {
        return false;
    }
    match method {
        CodeChallengeMethod::S256 => {
            let mut computed = [0u8; S256_CHALLENGE_LEN];
            let digest = sha256(verifier.as_bytes());
            match URL_SAFE_NO_PAD.encode_slice(digest, &mut computed) {
                Ok(S256_CHALLENGE_LEN) => constant_time_eq(&computed, challenge.as_bytes()),
                _ => false,
            }
        }
        CodeChallengeMethod::Plain => constant_time_eq(verifier.as_bytes(), challenge.as_bytes()),
    }
}

/// BASE64URL(SHA256(verifier)) without padding.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_verifier_syntax(value: &str) -> bool {
    (MIN_VERIFIER_LEN..=MAX_VERIFIER_LEN).contains(&value.len()) && value.bytes().all(is_unreserved)
}

fn is_s256_challenge(value: &str) -> bool {
    let mut out = [0u8; 32];
    value.len() == S256_CHALLENGE_LEN
        && matches!(URL_SAFE_NO_PAD.decode_slice(value, &mut out), Ok(32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 7636 Appendix B.
    const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc_7636_appendix_b_vector() {
        assert_eq!(s256_challenge(RFC_VERIFIER), RFC_CHALLENGE);
        assert!(verify(
            RFC_CHALLENGE,
            CodeChallengeMethod::S256,
            RFC_VERIFIER
        ));
        let c = CodeChallenge::parse(RFC_CHALLENGE, CodeChallengeMethod::S256).unwrap();
        assert!(c.verify(&CodeVerifier::parse(RFC_VERIFIER).unwrap()));
        assert_eq!(
            CodeVerifier::parse(RFC_VERIFIER).unwrap().s256_challenge(),
            RFC_CHALLENGE
        );
    }

    #[test]
    fn methods_parse_exactly() {
        assert_eq!(
            CodeChallengeMethod::parse("S256"),
            Ok(CodeChallengeMethod::S256)
        );
        assert_eq!(
            CodeChallengeMethod::parse("sha256"),
            Ok(CodeChallengeMethod::S256)
        );
        assert_eq!("plain".parse(), Ok(CodeChallengeMethod::Plain));
        for bad in ["", "s256", "PLAIN", "S512", "none", "S256 ", "RS256"] {
            assert_eq!(
                CodeChallengeMethod::parse(bad),
                Err(PkceError::UnsupportedMethod),
                "{bad}"
            );
        }
        assert_eq!(CodeChallengeMethod::S256.to_string(), "S256");
        assert_eq!(CodeChallengeMethod::Plain.as_str(), "plain");
    }

    #[test]
    fn verifier_grammar_and_length() {
        assert!(CodeVerifier::parse(&"a".repeat(43)).is_ok());
        assert!(CodeVerifier::parse(&"a".repeat(128)).is_ok());
        assert!(CodeVerifier::parse("AZaz09-._~AZaz09-._~AZaz09-._~AZaz09-._~abc").is_ok());
        for bad in [
            "a".repeat(42),
            "a".repeat(129),
            format!("{}+", "a".repeat(42)),
            format!("{} ", "a".repeat(43)),
            format!("{}/", "a".repeat(43)),
            format!("{}é", "a".repeat(42)),
            format!("{}=", "a".repeat(43)),
            String::new(),
        ] {
            assert_eq!(
                CodeVerifier::parse(&bad),
                Err(PkceError::InvalidVerifier),
                "{bad:?}"
            );
            // The free function refuses them too, even when they "match".
            assert!(!verify(&bad, CodeChallengeMethod::Plain, &bad));
        }
        assert_eq!(
            format!("{:?}", CodeVerifier::parse(RFC_VERIFIER).unwrap()),
            "CodeVerifier(***)"
        );
    }

    #[test]
    fn s256_challenges_must_be_43_canonical_base64url_chars() {
        assert!(CodeChallenge::parse(RFC_CHALLENGE, CodeChallengeMethod::S256).is_ok());
        let too_long = format!("{RFC_CHALLENGE}A");
        let padded = format!("{RFC_CHALLENGE}=");
        let std_alphabet = RFC_CHALLENGE.replace('-', "+");
        // 'd' carries non-zero trailing bits in the 43rd position: not a canonical encoding.
        let non_canonical = format!("{}d", &RFC_CHALLENGE[..42]);
        for bad in [
            &RFC_CHALLENGE[..42],
            &too_long,
            &padded,
            &std_alphabet,
            &non_canonical,
            "",
        ] {
            assert_eq!(
                CodeChallenge::parse(bad, CodeChallengeMethod::S256),
                Err(PkceError::InvalidChallenge),
                "{bad}"
            );
        }
        assert!(CodeChallenge::parse(&"x".repeat(42), CodeChallengeMethod::Plain).is_err());
        assert!(CodeChallenge::parse(&"x".repeat(60), CodeChallengeMethod::Plain).is_ok());
    }

    #[test]
    fn wrong_verifier_fails() {
        let other = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK";
        assert!(!verify(RFC_CHALLENGE, CodeChallengeMethod::S256, other));
        assert!(!verify(RFC_VERIFIER, CodeChallengeMethod::Plain, other));
        assert!(verify(
            RFC_VERIFIER,
            CodeChallengeMethod::Plain,
            RFC_VERIFIER
        ));
    }

    #[test]
    fn plain_verifier_against_s256_challenge_fails() {
        // Downgrade: an attacker who saw the S256 challenge presents it as a plain verifier.
        assert!(!verify(
            RFC_CHALLENGE,
            CodeChallengeMethod::S256,
            RFC_CHALLENGE
        ));
        let c = CodeChallenge::parse(RFC_CHALLENGE, CodeChallengeMethod::S256).unwrap();
        assert!(!c.verify(&CodeVerifier::parse(RFC_CHALLENGE).unwrap()));
        // And a verifier checked as plain against its own S256 challenge fails too.
        assert!(!verify(
            RFC_CHALLENGE,
            CodeChallengeMethod::Plain,
            RFC_VERIFIER
        ));
    }

    proptest! {
        #[test]
        fn s256_round_trips(v in "[A-Za-z0-9._~-]{43,128}") {
            let verifier = CodeVerifier::parse(&v).unwrap();
            let challenge = CodeChallenge::parse(&verifier.s256_challenge(), CodeChallengeMethod::S256).unwrap();
            prop_assert!(challenge.verify(&verifier));
            let plain = CodeChallenge::parse(&v, CodeChallengeMethod::Plain).unwrap();
            prop_assert!(plain.verify(&verifier));
        }

        #[test]
        fn parsers_never_panic(s in ".{0,200}", m in ".{0,10}") {
            let _ = CodeVerifier::parse(&s);
            let _ = CodeChallengeMethod::parse(&m);
            let _ = CodeChallenge::parse(&s, CodeChallengeMethod::S256);
            let _ = verify(&s, CodeChallengeMethod::S256, &s);
        }

        #[test]
        fn distinct_verifiers_do_not_cross_verify(a in "[A-Za-z0-9]{43}", b in "[A-Za-z0-9]{43}") {
            prop_assume!(a != b);
            prop_assert!(!verify(&s256_challenge(&a), CodeChallengeMethod::S256, &b));
        }
    }
}
