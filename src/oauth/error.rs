//! OAuth 2.0 errors (RFC 6749 §4.1.2.1 and §5.2, RFC 7009 §2.2.1): one enum whose code is the
//! RFC's error string, mapped to a status code in one place.

use http::StatusCode;

/// An RFC 6749 error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    AccessDenied,
    UnsupportedResponseType,
    ServerError,
    TemporarilyUnavailable,
    UnsupportedTokenType,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::UnsupportedTokenType => "unsupported_token_type",
        }
    }

    /// The status of a token-endpoint answer with this error (RFC 6749 §5.2).
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error with its human-readable description (never internal detail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
    /// Set on a throttled client authentication: answered 429 with `Retry-After` (seconds).
    pub retry_after: Option<u64>,
}

impl OAuthError {
    /// `description` is made to fit RFC 6749 §5.2's `error_description` grammar (printable
    /// ASCII without the double quote and the backslash, here also at most 200 characters): a description that quotes
    /// client input, such as a parameter name, cannot break a client's parser or smuggle text.
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description_text(&description.into()),
            retry_after: None,
        }
    }

    /// The JSON body of RFC 6749 §5.2.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "error": self.code.as_str(), "error_description": self.description })
            .to_string()
    }
}

fn description_text(raw: &str) -> String {
    const MAX_CHARS: usize = 200;
    let allowed = |c: char| matches!(c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E');
    raw.chars()
        .take(MAX_CHARS)
        .map(|c| if allowed(c) { c } else { '?' })
        .collect()
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

#[cfg(test)]
mod description_tests {
    use super::*;

    #[test]
    fn descriptions_keep_to_the_rfc_6749_character_set() {
        let e = OAuthError::new(
            OAuthErrorCode::InvalidRequest,
            "parameter 'a\"b\\c\nd\u{e9}' is repeated",
        );
        assert_eq!(e.description, "parameter 'a?b?c?d?' is repeated");
        let long = OAuthError::new(OAuthErrorCode::InvalidRequest, "x".repeat(1000));
        assert_eq!(long.description.len(), 200);
        let plain = OAuthError::new(
            OAuthErrorCode::InvalidGrant,
            "the code has already been used",
        );
        assert_eq!(plain.description, "the code has already been used");
    }
}
