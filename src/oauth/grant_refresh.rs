//! `grant_type=refresh_token` (RFC 6749 §6, RFC 9700 §4.14.2, SPEC §3.1): rotation with reuse
//! detection, optional narrower scope, and the concurrency rule — of simultaneous refreshes
//! with one token exactly one rotates (the store decides); a repeat by the immediate
//! predecessor within `oauth.refresh_grace` never revokes and gets the same answer again when
//! this replica still holds it (`invalid_grant` otherwise); any older token revokes the grant.

use std::time::SystemTime;

use super::caches::RememberedRefresh;
use super::client_auth::SharedCheck;
use super::error::OAuthError;
use super::grant::{TokenResponse, app_scopes, issue, prepare};
use super::params::Params;
use super::reply::{invalid_grant, invalid_request, invalid_scope, store_failure};
use crate::auth::context::Ctx;
use crate::auth::scope::Scopes;
use crate::store::{App, RefreshToken, RotateOutcome, SecretHash, secret_hash};

/// What a token request answers: a fresh response, the JSON of a fresh rotation (serialized
/// once, for the answer and for its repeats), or the JSON of one given before.
pub enum Refreshed {
    New(TokenResponse),
    Rotated(String),
    Repeat(String),
}

/// Refreshes with `params.refresh_token` for `app` (authenticated).
pub async fn refresh(
    ctx: &Ctx<'_>,
    oauth: &super::caches::OAuthCaches,
    app: &App,
    shared: &SharedCheck,
    params: &Params,
    now: SystemTime,
) -> Result<Refreshed, OAuthError> {
    let token = params
        .get("refresh_token")
        .ok_or_else(|| invalid_request("refresh_token is required"))?;
    let hash = secret_hash(token);
    let requested = params.get("scope").map(str::to_owned);
    let slot = oauth.refresh_slot(&hash);
    // Refreshes of one token on this replica take turns, so the ones behind the rotation
    // find its answer instead of racing it.
    let mut remembered = slot.lock().await;
    if let Some(prev) = remembered.as_ref() {
        // The client's throttle first (a read of its own here): nothing is replayed to a
        // banned client.
        if let Some(refused) = shared.settle(ctx.store, now).await {
            return Err(refused);
        }
        return repeat(ctx, app, &hash, prev, requested.as_deref(), now).await;
    }
    let response = rotate(ctx, app, shared, &hash, requested.as_deref(), now).await?;
    let body = serde_json::to_string(&response)
        .map_err(|_| super::reply::server_error("serializing a token response"))?;
    // The answer is the JSON just remembered: serialized once, not again by the caller.
    let answer = body.clone();
    *remembered = Some(RememberedRefresh {
        body,
        requested_scope: requested,
        client_id: app.client_id.clone(),
        rotated_at: now,
    });
    Ok(Refreshed::Rotated(answer))
}

async fn rotate(
    ctx: &Ctx<'_>,
    app: &App,
    shared: &SharedCheck,
    hash: &SecretHash,
    requested: Option<&str>,
    now: SystemTime,
) -> Result<TokenResponse, OAuthError> {
    let store = &ctx.store;
    let (found, blocked_until) = store
        .get_refresh_token_and_grant_judging(hash, shared.carry(), now)
        .await
        .map_err(|e| store_failure(&e))?;
    // The client's throttle first: a banned client learns nothing of the token.
    if let Some(refused) = SharedCheck::refusal(blocked_until, now) {
        return Err(refused);
    }
    let (rt, grant) = found.ok_or_else(|| invalid_grant("the refresh token is invalid"))?;
    if grant.client_id != app.client_id {
        return Err(invalid_grant("the refresh token is invalid"));
    }
    if rt.rotated_at.is_some() {
        return Err(rotated_before(ctx, &rt, now).await);
    }
    let user = crate::auth::accounts::resolve(ctx.directory, ctx.store, &grant.user)
        .await
        .map_err(|e| store_failure(&e))?
        .ok_or_else(|| invalid_grant("the user no longer exists"))?;
    let scopes = &ctx.directory.scopes;
    let original = scopes
        .parse(&grant.scope)
        .map_err(|_| invalid_grant("the grant's scope is no longer known"))?;
    let asked = match requested {
        Some(s) => scopes
            .parse(s)
            .map_err(|_| invalid_scope("unknown scope"))?,
        None => original,
    };
    if !scopes.expand(original).contains(scopes.expand(asked)) {
        return Err(invalid_scope("a refresh cannot widen the granted scope"));
    }
    let granted = scopes
        .expand(asked)
        .intersection(user.max_scope)
        .intersection(scopes.expand(app_scopes(ctx.directory, app)));
    if granted == Scopes::EMPTY {
        return Err(invalid_scope("no requested scope can be granted"));
    }
    let scope = scopes.to_highest_string(granted);
    let prepared = prepare(ctx, now)?;
    let outcome = store
        .rotate_refresh_token(hash, &app.client_id, &prepared.record, now)
        .await
        .map_err(|e| store_failure(&e))?;
    match outcome {
        RotateOutcome::Rotated { grant, .. } => {
            issue(ctx, &prepared, &grant.user, app, &scope, &grant.id, now)
        }
        RotateOutcome::AlreadyRotated {
            grant_id,
            rotated_at,
            is_immediate_predecessor_of_current,
        } => {
            if is_immediate_predecessor_of_current && within_grace(ctx, rotated_at, now) {
                Err(invalid_grant("the refresh token was just rotated"))
            } else {
                Err(reuse(ctx, &grant_id, now).await)
            }
        }
        RotateOutcome::Revoked { .. }
        | RotateOutcome::Expired { .. }
        | RotateOutcome::ClientMismatch
        | RotateOutcome::Unknown => Err(invalid_grant("the refresh token is invalid")),
    }
}

/// This replica rotated the token before: the same answer within the grace, if the token is
/// still the immediate predecessor of a live one; otherwise the reuse rule.
async fn repeat(
    ctx: &Ctx<'_>,
    app: &App,
    hash: &SecretHash,
    prev: &RememberedRefresh,
    requested: Option<&str>,
    now: SystemTime,
) -> Result<Refreshed, OAuthError> {
    if prev.client_id != app.client_id {
        return Err(invalid_grant("the refresh token is invalid"));
    }
    let rt = ctx
        .store
        .get_refresh_token(hash)
        .await
        .map_err(|e| store_failure(&e))?
        .ok_or_else(|| invalid_grant("the refresh token is invalid"))?;
    match grace_state(ctx, &rt, now).await? {
        Grace::Within if requested == prev.requested_scope.as_deref() => {
            Ok(Refreshed::Repeat(prev.body.clone()))
        }
        Grace::Within => Err(invalid_grant("the refresh token was just rotated")),
        Grace::Dead => Err(invalid_grant("the refresh token is invalid")),
        Grace::Reuse => Err(reuse(ctx, &rt.grant_id, now).await),
    }
}

enum Grace {
    /// The immediate predecessor of the live token, repeated within the grace.
    Within,
    /// Rotated longer ago, or not the latest rotation: reuse.
    Reuse,
    /// Revoked, expired, or its grant or app is gone.
    Dead,
}

/// Classifies a rotated token by reading the store (no write).
async fn grace_state(
    ctx: &Ctx<'_>,
    rt: &RefreshToken,
    now: SystemTime,
) -> Result<Grace, OAuthError> {
    let store = &ctx.store;
    let grant_live = store
        .is_grant_live(&rt.grant_id)
        .await
        .map_err(|e| store_failure(&e))?;
    let Some(rotated_at) = rt
        .rotated_at
        .filter(|_| grant_live && rt.revoked_at.is_none())
    else {
        return Ok(Grace::Dead);
    };
    let successor = match &rt.successor_hash {
        Some(h) => store
            .get_refresh_token(h)
            .await
            .map_err(|e| store_failure(&e))?,
        None => None,
    };
    let immediate = successor.is_some_and(|s| s.rotated_at.is_none() && s.revoked_at.is_none());
    Ok(if immediate && within_grace(ctx, rotated_at, now) {
        Grace::Within
    } else {
        Grace::Reuse
    })
}

async fn rotated_before(ctx: &Ctx<'_>, rt: &RefreshToken, now: SystemTime) -> OAuthError {
    match grace_state(ctx, rt, now).await {
        Ok(Grace::Within) => invalid_grant("the refresh token was just rotated"),
        Ok(Grace::Dead) => invalid_grant("the refresh token is invalid"),
        Ok(Grace::Reuse) => reuse(ctx, &rt.grant_id, now).await,
        Err(e) => e,
    }
}

fn within_grace(ctx: &Ctx<'_>, rotated_at: SystemTime, now: SystemTime) -> bool {
    now < rotated_at + ctx.config.oauth.refresh_grace
}

/// A rotated token presented again outside the grace: the grant is compromised.
async fn reuse(ctx: &Ctx<'_>, grant_id: &str, now: SystemTime) -> OAuthError {
    match ctx.store.revoke_grant(grant_id, now).await {
        Ok(_) => {
            tracing::warn!(grant_id, "refresh token reuse: grant revoked");
            invalid_grant("the refresh token was already used")
        }
        Err(e) => store_failure(&e),
    }
}
