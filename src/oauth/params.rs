//! Request parameters for the OAuth endpoints (RFC 6749 §3.1, §3.2): form bodies and query
//! strings decoded with `application/x-www-form-urlencoded` rules, where a repeated parameter
//! is an error, an empty one counts as absent, and unknown ones are ignored.

use std::collections::HashMap;

use super::error::{OAuthError, OAuthErrorCode};

/// Largest form body the OAuth endpoints read (SPEC §3.3: 64 KiB).
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Decoded parameters; each name at most once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses `a=1&b=2` (RFC 6749 appendix B); repeats are refused, empty values dropped.
    pub fn parse(encoded: &str) -> Result<Self, OAuthError> {
        let mut out = HashMap::new();
        for pair in encoded.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k)?, decode(v)?);
            if out.contains_key(&k) {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidRequest,
                    format!("parameter '{k}' is repeated"),
                ));
            }
            if !v.is_empty() {
                out.insert(k, v);
            } else {
                out.insert(k, String::new());
            }
        }
        out.retain(|_, v| !v.is_empty());
        Ok(Self(out))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Adds `other`'s parameters; one present in both is a repeat (`invalid_request`).
    pub fn merge(mut self, other: Params) -> Result<Self, OAuthError> {
        for (k, v) in other.0 {
            if self.0.contains_key(&k) {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidRequest,
                    format!("parameter '{k}' is repeated"),
                ));
            }
            self.0.insert(k, v);
        }
        Ok(self)
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }
}

/// Decodes one `application/x-www-form-urlencoded` name or value (`+` is a space).
pub fn decode(s: &str) -> Result<String, OAuthError> {
    let bad = || OAuthError::new(OAuthErrorCode::InvalidRequest, "malformed form encoding");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits exactly: `u8::from_str_radix` alone would take "+f" too.
                let (hi, lo) = match bytes.get(i + 1..i + 3) {
                    Some(&[hi, lo]) => (hex_value(hi), hex_value(lo)),
                    _ => (None, None),
                };
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(bad());
                };
                out.push((hi << 4) | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_never_panics(s in any::<String>()) {
            let _ = Params::parse(&s);
            let _ = decode(&s);
        }

        #[test]
        fn parsing_form_shaped_text_never_panics(s in "([a-z_]{0,4}(=[a-zA-Z0-9+%\\PC]{0,6})?&?){0,6}") {
            let _ = Params::parse(&s);
        }

        #[test]
        fn encoded_pairs_round_trip(
            pairs in prop::collection::btree_map("\\PC{1,8}", "\\PC{1,8}", 0..6)
        ) {
            let encoded = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            let params = Params::parse(&encoded).unwrap();
            for (k, v) in &pairs {
                prop_assert_eq!(params.get(k), Some(v.as_str()), "{}", encoded);
            }
        }

        /// A `%` is an escape only before two hex digits (RFC 3986 §2.1); anything else is
        /// malformed, never some other byte.
        #[test]
        fn a_percent_must_start_two_hex_digits(s in "[%+0-9a-fA-F=&xyz -]{0,12}") {
            if decode(&s).is_ok() {
                let b = s.as_bytes();
                for (i, _) in s.match_indices('%') {
                    prop_assert!(
                        b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit(),
                        "{:?} was accepted", s
                    );
                }
            }
        }
    }

    #[test]
    fn decodes_forms_and_refuses_repeats() {
        let p = Params::parse(
            "grant_type=authorization_code&code=a%2Bb&redirect_uri=https%3A%2F%2Fx&state=&x=1+2",
        )
        .unwrap();
        assert_eq!(p.get("code"), Some("a+b"));
        assert_eq!(p.get("redirect_uri"), Some("https://x"));
        assert_eq!(p.get("state"), None, "empty means absent");
        assert_eq!(p.get("x"), Some("1 2"));
        assert_eq!(
            Params::parse("a=1&a=2").unwrap_err().code,
            OAuthErrorCode::InvalidRequest
        );
        assert!(Params::parse("a=%zz").is_err());
        assert!(Params::parse("a=%ff").is_err(), "not UTF-8");
        assert!(Params::parse("a=%+7").is_err(), "a sign is not a hex digit");
        assert_eq!(Params::parse("a=%7e%7E").unwrap().get("a"), Some("~~"));
        let merged = Params::parse("a=1")
            .unwrap()
            .merge(Params::parse("b=2").unwrap())
            .unwrap();
        assert_eq!(merged.get("b"), Some("2"));
        assert!(
            Params::parse("a=1")
                .unwrap()
                .merge(Params::parse("a=1").unwrap())
                .is_err()
        );
    }
}
