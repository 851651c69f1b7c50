//! The store's domain records (SPEC §3.1, §3.3, §6): apps, personal access tokens, sessions,
//! pending consents, grants, authorization codes, refresh tokens, and the outcomes of the
//! transactional operations. Times are UTC `SystemTime`s kept to the microsecond.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::SecretHash;

/// `confidential` apps authenticate with a secret; `public` apps (SPAs, native) cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientType {
    Confidential,
    Public,
}

impl ClientType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confidential => "confidential",
            Self::Public => "public",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confidential" => Some(Self::Confidential),
            "public" => Some(Self::Public),
            _ => None,
        }
    }
}

/// Who owns an app's definition: the management API, or the config file (`[[apps]]`), in
/// which case the API refuses changes to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManagedBy {
    Api,
    Config,
}

impl ManagedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Config => "config",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(Self::Api),
            "config" => Some(Self::Config),
            _ => None,
        }
    }
}

/// A registered OAuth app (`oauthApps/{id}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// e.g. `3f9k2m7q8x` (see [`super::new_app_id`]); the resource name is `oauthApps/{id}`.
    pub id: String,
    /// Unique, immutable once created.
    pub client_id: String,
    pub display_name: String,
    pub description: String,
    pub logo_uri: String,
    pub allowed_callback_urls: Vec<String>,
    pub allowed_logout_urls: Vec<String>,
    pub allowed_web_origins: Vec<String>,
    pub client_type: ClientType,
    /// SHA-256 of the current client secret (`None` for public apps).
    pub secret_hash: Option<SecretHash>,
    /// SHA-256 of the secret replaced by `rotateSecret` with a grace period, valid until
    /// `previous_secret_expires_at`.
    pub previous_secret_hash: Option<SecretHash>,
    pub previous_secret_expires_at: Option<SystemTime>,
    pub scopes: Vec<String>,
    pub skip_consent: bool,
    pub active: bool,
    pub labels: BTreeMap<String, String>,
    /// e.g. `users/alice`.
    pub created_by: String,
    pub updated_by: String,
    pub create_time: SystemTime,
    pub update_time: SystemTime,
    pub managed_by: ManagedBy,
}

impl App {
    /// True if `hash` is the current secret's, or the previous one's still within its grace.
    /// Compare in constant time: hashes of attacker input are not secret, but stay uniform.
    pub fn secret_matches(&self, hash: &SecretHash, now: SystemTime) -> bool {
        let eq = |a: &SecretHash| {
            a.0.iter()
                .zip(hash.0.iter())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
        };
        let current = self.secret_hash.as_ref().is_some_and(eq);
        let previous = self.previous_secret_hash.as_ref().is_some_and(eq)
            && self.previous_secret_expires_at.is_some_and(|t| now < t);
        current | previous
    }
}

/// Where a page of [`super::Store::list_apps`] resumes: after this app in (create_time, id)
/// order. The API layer turns it into an opaque page token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppCursor {
    pub create_time: SystemTime,
    pub id: String,
}

impl AppCursor {
    /// The cursor that resumes right after `app`.
    pub fn after(app: &App) -> Self {
        Self {
            create_time: app.create_time,
            id: app.id.clone(),
        }
    }
}

/// A personal access token (`personalTokens/{id}`); the token itself is shown once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonalToken {
    pub id: String,
    pub user: String,
    pub display_name: String,
    pub scope: String,
    pub token_hash: SecretHash,
    pub create_time: SystemTime,
    pub expire_time: SystemTime,
    pub last_used_time: Option<SystemTime>,
}

/// A login session, found by the hash of its cookie value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id_hash: SecretHash,
    pub user: String,
    pub create_time: SystemTime,
    pub expire_time: SystemTime,
}

/// An authorization request waiting for the user's decision on the consent page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingConsent {
    /// Not a secret (the form also needs the CSRF token).
    pub id: String,
    /// SHA-256 of the single-use CSRF token bound to this request and user.
    pub csrf_hash: SecretHash,
    pub user: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub create_time: SystemTime,
    pub expire_time: SystemTime,
}

/// One authorization: created when a code is redeemed; every refresh and access token
/// issued from that code belongs to it, and revoking it ends them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub user: String,
    pub client_id: String,
    pub scope: String,
    pub create_time: SystemTime,
    /// The latest expiry of anything issued under it; cleanup deletes it after that.
    pub expire_time: SystemTime,
    pub revoked_at: Option<SystemTime>,
}

/// An authorization code to store (only its hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuthCode {
    pub hash: SecretHash,
    pub client_id: String,
    pub user: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub create_time: SystemTime,
    pub expire_time: SystemTime,
}

/// A stored authorization code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthCode {
    pub hash: SecretHash,
    pub client_id: String,
    pub user: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub create_time: SystemTime,
    pub expire_time: SystemTime,
    pub used_at: Option<SystemTime>,
    /// The grant its redemption created.
    pub grant_id: Option<String>,
}

/// The refresh token (and, optionally, the access token) issued together by a redemption or
/// a rotation. `access_jti` lets the store revoke that access token when this refresh token
/// is rotated away (SPEC §3.1: "every access token issued with it stop working at once").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRefreshToken {
    pub hash: SecretHash,
    pub expire_time: SystemTime,
    pub access_jti: Option<String>,
    pub access_expire_time: Option<SystemTime>,
}

/// A stored refresh token. Its scope and client are its grant's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshToken {
    pub hash: SecretHash,
    pub grant_id: String,
    /// 1 for the token issued with the code, +1 per rotation.
    pub generation: i64,
    pub parent_hash: Option<SecretHash>,
    pub create_time: SystemTime,
    pub expire_time: SystemTime,
    pub rotated_at: Option<SystemTime>,
    pub successor_hash: Option<SecretHash>,
    pub revoked_at: Option<SystemTime>,
    pub access_jti: Option<String>,
    pub access_expire_time: Option<SystemTime>,
}

/// The result of [`super::Store::redeem_code`].
// Returned once per token request and matched at once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// This caller won: the code is now used, and a grant and its first refresh token exist.
    Redeemed {
        code: AuthCode,
        grant: Grant,
        refresh_token: RefreshToken,
    },
    /// Someone redeemed it before: answer `invalid_grant` and revoke `grant_id` (SPEC §3.1),
    /// after checking the replay came from the code's own client with the right verifier.
    AlreadyUsed {
        used_at: SystemTime,
        grant_id: Option<String>,
    },
    Expired,
    /// No such code, or its app is inactive.
    Unknown,
}

/// The result of [`super::Store::rotate_refresh_token`].
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotateOutcome {
    /// This caller won. `revoked_access_jti` is the access token issued with the old refresh
    /// token, now recorded as revoked (and announced as [`StoreEvent::TokenRevoked`]).
    Rotated {
        grant: Grant,
        refresh_token: RefreshToken,
        revoked_access_jti: Option<String>,
    },
    /// The token was rotated before, at `rotated_at`. If `is_immediate_predecessor_of_current`
    /// and within `oauth.refresh_grace`, the grace rule applies; otherwise this is reuse and
    /// the caller revokes `grant_id`.
    AlreadyRotated {
        grant_id: String,
        rotated_at: SystemTime,
        is_immediate_predecessor_of_current: bool,
    },
    /// The grant, the token, or the app is revoked, deleted or inactive.
    Revoked {
        grant_id: String,
    },
    Expired {
        grant_id: String,
    },
    /// The token belongs to another client: nothing was changed or revealed.
    ClientMismatch,
    Unknown,
}

/// A change announcement for token caches (this process and, with PostgreSQL, every
/// replica), and this replica's state of listening to the others. A subscriber that lags
/// behind the channel must forget every cached validation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum StoreEvent {
    /// One access token (by `jti`) stopped being valid.
    TokenRevoked { jti: String },
    /// A grant and every token issued under it stopped being valid.
    GrantRevoked { grant_id: String },
    /// An app was deleted or deactivated: all its tokens stopped being valid.
    AppRevoked { client_id: String },
    /// An app was changed and is still active: its tokens hold what its scopes allow now
    /// (SPEC §2), so a validation made before the change is stale.
    AppUpdated { client_id: String },
    /// A personal access token was deleted; `token_hash` is SHA-256 of the token.
    PatRevoked { id: String, token_hash: SecretHash },
    /// PostgreSQL: this replica's notification connection dropped, so the other replicas'
    /// events are missed until [`StoreEvent::NotificationsBack`]. Local, never sent.
    NotificationsLost,
    /// PostgreSQL: listening again; what was sent while the connection was down was missed,
    /// so every cached validation must go. Local, never sent.
    NotificationsBack,
}

/// Rows deleted by one [`super::Store::cleanup_expired`] run, per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub auth_codes: u64,
    pub sessions: u64,
    pub consents: u64,
    pub personal_tokens: u64,
    pub refresh_tokens: u64,
    pub token_revocations: u64,
    pub grants: u64,
}

impl CleanupReport {
    pub fn total(&self) -> u64 {
        self.auth_codes
            + self.sessions
            + self.consents
            + self.personal_tokens
            + self.refresh_tokens
            + self.token_revocations
            + self.grants
    }
}

/// One throttle key's failures as replicas share them (SPEC §3.2): what the throttle counts,
/// stored by the store without interpretation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleRow {
    /// Failures counted in the current window.
    pub failures: u32,
    /// When the window's first failure was.
    pub first_failure: SystemTime,
    /// Attempts are refused until then.
    pub blocked_until: SystemTime,
    /// After this the row counts nothing and may be deleted.
    pub expires: SystemTime,
}

impl Default for ThrottleRow {
    fn default() -> Self {
        Self {
            failures: 0,
            first_failure: SystemTime::UNIX_EPOCH,
            blocked_until: SystemTime::UNIX_EPOCH,
            expires: SystemTime::UNIX_EPOCH,
        }
    }
}
