//! Who is calling: the principal a bearer token, a PAT or a login session stands for, with the
//! header values the upstream receives made once when the token is validated (SPEC §3.4).

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderValue;

use super::scope::Scopes;

/// How the caller proved who they are, with the handles that revoke that proof. Only the
/// combinations that exist can be built: an app's token always has its app, grant and `jti`; a
/// PAT its id; a session neither.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A JWT access token issued to an app (RFC 9068).
    AppToken {
        client_id: String,
        grant_id: String,
        jti: String,
    },
    /// A personal access token.
    PersonalToken { id: String },
    /// The login session cookie.
    Session,
}

/// The groups a caller belongs to (SPEC §7.3): shared with the user's entry in the directory,
/// so a principal holds a pointer, not a copy.
pub type Groups = Arc<[Arc<str>]>;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub credential: Credential,
    /// The user name (`sub`).
    pub user: String,
    /// Granted scopes, expanded (a WRITE token holds READ and WRITE).
    pub scopes: Scopes,
    pub expires_at: SystemTime,
    /// Ready-made header values for the upstream.
    pub user_value: HeaderValue,
    pub scopes_value: HeaderValue,
    pub client_id_value: Option<HeaderValue>,
    /// The caller's groups (config users' `groups`, a provider's groups claim); empty for none.
    pub groups: Groups,
}

impl Principal {
    /// Builds a principal; `scopes_text` is the expanded, space-separated scope list. `None`
    /// when a name cannot be a header value.
    pub fn new(
        credential: Credential,
        user: String,
        scopes: Scopes,
        scopes_text: &str,
        expires_at: SystemTime,
    ) -> Option<Self> {
        let user_value = HeaderValue::from_str(&user).ok()?;
        let scopes_value = HeaderValue::from_str(scopes_text).ok()?;
        let client_id_value = match &credential {
            Credential::AppToken { client_id, .. } => Some(HeaderValue::from_str(client_id).ok()?),
            _ => None,
        };
        Some(Self {
            credential,
            user,
            scopes,
            expires_at,
            user_value,
            scopes_value,
            client_id_value,
            groups: no_groups(),
        })
    }

    /// The same principal, member of `groups`.
    #[must_use]
    pub fn with_groups(mut self, groups: Groups) -> Self {
        self.groups = groups;
        self
    }

    /// Whether the caller belongs to at least one of `groups`.
    pub fn in_any_group(&self, groups: &[String]) -> bool {
        self.groups
            .iter()
            .any(|mine| groups.iter().any(|g| **mine == **g))
    }

    /// The app of an access token.
    pub fn client_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::AppToken { client_id, .. } => Some(client_id),
            _ => None,
        }
    }

    /// Whether the caller presented a personal access token.
    pub fn is_personal_token(&self) -> bool {
        matches!(self.credential, Credential::PersonalToken { .. })
    }
}

/// The empty group list.
pub fn no_groups() -> Groups {
    Arc::from(Vec::<Arc<str>>::new())
}
