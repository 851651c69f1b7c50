//! The token endpoint's grants, without HTTP (RFC 6749 §4.1.3–4.1.4, RFC 7636 §4.5–4.6,
//! RFC 9068): redeeming an authorization code bound to client, redirect URI and PKCE
//! challenge, with replay revoking what the code issued (RFC 6749 §4.1.2, §10.5); and the
//! issuing of an access token (EdDSA JWT) with its refresh token. Refresh is in
//! `grant_refresh.rs`.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::client_auth::SharedCheck;
use super::error::OAuthError;
use super::params::Params;
use super::pkce::{self, CodeChallengeMethod};
use super::reply::{self, invalid_grant, store_failure};
use crate::auth::context::Ctx;
use crate::auth::directory::Directory;
use crate::auth::jwt::AccessClaims;
use crate::auth::scope::Scopes;
use crate::auth::secret::{Secret, new_id, new_refresh_token};
use crate::clock::unix_seconds;
use crate::config::RequirePkce;
use crate::store::{App, AuthCode, ClientType, NewRefreshToken, RedeemOutcome, secret_hash};

/// The body of a successful token response (RFC 6749 §5.1, SPEC §3.1).
#[derive(Clone, Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub scope: String,
    pub created_at: i64,
}

/// A refresh token and access token id chosen before the store transaction that records
/// them, so the store can revoke that access token when the refresh token is rotated.
pub(super) struct Prepared {
    pub refresh: Secret,
    pub jti: String,
    pub record: NewRefreshToken,
    pub access_exp: SystemTime,
}

pub(super) fn prepare(ctx: &Ctx<'_>, now: SystemTime) -> Result<Prepared, OAuthError> {
    let oauth = &ctx.config.oauth;
    let refresh = new_refresh_token().map_err(|_| reply::server_error("random source"))?;
    let jti = new_id().map_err(|_| reply::server_error("random source"))?;
    let access_exp = now + whole_seconds(oauth.access_token_ttl);
    let record = NewRefreshToken {
        hash: secret_hash(refresh.expose()),
        expire_time: now + oauth.refresh_token_ttl,
        access_jti: Some(jti.clone()),
        access_expire_time: Some(access_exp),
    };
    Ok(Prepared {
        refresh,
        jti,
        record,
        access_exp,
    })
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().max(1))
}

/// Signs the access token of `prepared` and writes the token response.
pub(super) fn issue(
    ctx: &Ctx<'_>,
    prepared: &Prepared,
    user: &str,
    app: &App,
    scope: &str,
    grant_id: &str,
    now: SystemTime,
) -> Result<TokenResponse, OAuthError> {
    let iat = unix_seconds(now);
    let ttl = whole_seconds(ctx.config.oauth.access_token_ttl).as_secs();
    let claims = AccessClaims {
        iss: ctx.config.server.public_url.clone(),
        sub: user.to_owned(),
        aud: ctx.config.audience().to_owned(),
        client_id: Some(app.client_id.clone()),
        scope: scope.to_owned(),
        iat,
        exp: unix_seconds(prepared.access_exp),
        nbf: None,
        jti: prepared.jti.clone(),
        gid: Some(grant_id.to_owned()),
    };
    let access_token = ctx
        .keys
        .sign_access_token(&claims)
        .map_err(|_| reply::server_error("signing an access token"))?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token: prepared.refresh.expose().to_owned(),
        scope: scope.to_owned(),
        created_at: iat,
    })
}

/// The scopes an app may ask for, as a set (unknown names in its record are ignored).
pub(super) fn app_scopes(directory: &Directory, app: &App) -> Scopes {
    app.scopes
        .iter()
        .filter_map(|s| directory.scopes.lookup(s))
        .fold(Scopes::EMPTY, Scopes::union)
}

/// `grant_type=authorization_code`: checks the code against the client, the redirect URI and
/// the PKCE verifier, then redeems it in one store transaction.
pub async fn exchange_code(
    ctx: &Ctx<'_>,
    app: &App,
    shared: &SharedCheck,
    params: &Params,
    now: SystemTime,
) -> Result<TokenResponse, OAuthError> {
    let code_value = params
        .get("code")
        .ok_or_else(|| reply::invalid_request("code is required"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| reply::invalid_request("redirect_uri is required"))?;
    let hash = secret_hash(code_value);
    let (code, blocked_until) = ctx
        .store
        .get_code_judging(&hash, shared.carry(), now)
        .await
        .map_err(|e| store_failure(&e))?;
    // The client's throttle first: a banned client learns nothing of the code.
    if let Some(refused) = SharedCheck::refusal(blocked_until, now) {
        return Err(refused);
    }
    let code = code.ok_or_else(|| invalid_grant("the code is invalid"))?;
    // Checked before anything else so a stolen code's replay by another client, or with a
    // wrong verifier, cannot be used to revoke the victim's tokens.
    if code.client_id != app.client_id {
        return Err(invalid_grant("the code is invalid"));
    }
    if code.redirect_uri != redirect_uri {
        return Err(invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    check_pkce(ctx, app, &code, params.get("code_verifier"))?;
    if code.used_at.is_some() {
        return Err(replayed(ctx, code.grant_id.as_deref(), now).await);
    }
    if code.expire_time <= now {
        return Err(invalid_grant("the code has expired"));
    }
    let user = crate::auth::accounts::resolve(ctx.directory, ctx.store, &code.user)
        .await
        .map_err(|e| store_failure(&e))?
        .ok_or_else(|| invalid_grant("the user no longer exists"))?;
    let requested = ctx
        .directory
        .scopes
        .parse(&code.scope)
        .map_err(|_| invalid_grant("the code's scope is no longer known"))?;
    let granted = ctx
        .directory
        .scopes
        .grant(requested, user.max_scope, app_scopes(ctx.directory, app))
        .map_err(|_| reply::invalid_scope("no requested scope can be granted"))?;
    let scope = ctx.directory.scopes.to_names(granted);
    let prepared = prepare(ctx, now)?;
    let outcome = ctx
        .store
        .redeem_code(&hash, &prepared.record, now)
        .await
        .map_err(|e| store_failure(&e))?;
    match outcome {
        RedeemOutcome::Redeemed { grant, .. } => {
            issue(ctx, &prepared, &code.user, app, &scope, &grant.id, now)
        }
        RedeemOutcome::AlreadyUsed { grant_id, .. } => {
            Err(replayed(ctx, grant_id.as_deref(), now).await)
        }
        RedeemOutcome::Expired => Err(invalid_grant("the code has expired")),
        RedeemOutcome::Unknown => Err(invalid_grant("the code is invalid")),
    }
}

/// RFC 7636 §4.6 and the downgrade rule: a code with a challenge needs the matching
/// verifier; a code without one refuses a verifier, and is refused where PKCE is required.
fn check_pkce(
    ctx: &Ctx<'_>,
    app: &App,
    code: &AuthCode,
    verifier: Option<&str>,
) -> Result<(), OAuthError> {
    let oauth = &ctx.config.oauth;
    match (&code.code_challenge, verifier) {
        (Some(challenge), Some(verifier)) => {
            let method = CodeChallengeMethod::parse(
                code.code_challenge_method.as_deref().unwrap_or("plain"),
            )
            .map_err(|_| invalid_grant("the code's challenge method is not supported"))?;
            if method == CodeChallengeMethod::Plain && !oauth.allow_plain_pkce {
                return Err(invalid_grant("plain PKCE is not allowed"));
            }
            if pkce::verify(challenge, method, verifier) {
                Ok(())
            } else {
                Err(invalid_grant(
                    "code_verifier does not match the code_challenge",
                ))
            }
        }
        (Some(_), None) => Err(invalid_grant("code_verifier is required")),
        (None, Some(_)) => Err(invalid_grant(
            "code_verifier sent for a code issued without code_challenge",
        )),
        (None, None) => {
            let required = match oauth.require_pkce {
                RequirePkce::All => true,
                RequirePkce::Public => app.client_type == ClientType::Public,
                RequirePkce::None => false,
            };
            if required {
                Err(invalid_grant("PKCE is required for this client"))
            } else {
                Ok(())
            }
        }
    }
}

/// A second redemption: refuse it and end every token the first one issued.
async fn replayed(ctx: &Ctx<'_>, grant_id: Option<&str>, now: SystemTime) -> OAuthError {
    if let Some(id) = grant_id {
        match ctx.store.revoke_grant(id, now).await {
            Ok(_) => tracing::warn!(grant_id = id, "authorization code replayed: grant revoked"),
            Err(e) => return store_failure(&e),
        }
    }
    invalid_grant("the code has already been used")
}
