//! Who is calling: the principal a bearer token, a PAT or a login session stands for, with the
//! header values the upstream receives made once when the token is validated (SPEC §3.4).

use std::time::SystemTime;

use http::HeaderValue;

use super::scope::Scopes;

/// How the caller proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A JWT access token issued to an app (RFC 9068).
    AccessToken,
    /// A personal access token.
    PersonalToken,
    /// The login session cookie.
    Session,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The user name (`sub`).
    pub user: String,
    /// The app, for access tokens.
    pub client_id: Option<String>,
    /// Granted scopes, expanded (a WRITE token holds READ and WRITE).
    pub scopes: Scopes,
    pub expires_at: SystemTime,
    /// Revocation handles: the grant and `jti` of an access token, the id of a PAT.
    pub grant_id: Option<String>,
    pub jti: Option<String>,
    pub pat_id: Option<String>,
    /// Ready-made header values for the upstream.
    pub user_value: HeaderValue,
    pub scopes_value: HeaderValue,
    pub client_id_value: Option<HeaderValue>,
}

impl Principal {
    /// Builds a principal; `scopes_text` is the expanded, space-separated scope list.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: PrincipalKind,
        user: String,
        client_id: Option<String>,
        scopes: Scopes,
        scopes_text: &str,
        expires_at: SystemTime,
        grant_id: Option<String>,
        jti: Option<String>,
        pat_id: Option<String>,
    ) -> Option<Self> {
        let user_value = HeaderValue::from_str(&user).ok()?;
        let scopes_value = HeaderValue::from_str(scopes_text).ok()?;
        let client_id_value = match &client_id {
            Some(c) => Some(HeaderValue::from_str(c).ok()?),
            None => None,
        };
        Some(Self {
            kind,
            user,
            client_id,
            scopes,
            expires_at,
            grant_id,
            jti,
            pat_id,
            user_value,
            scopes_value,
            client_id_value,
        })
    }
}
