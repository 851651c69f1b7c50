//! Personal access tokens (SPEC §1 `token create`, §3.3 `/v1/personalTokens`): minted from
//! the OS CSPRNG with the `gh_pat_` prefix, shown once, stored as SHA-256, scope never more
//! than the caller's (API) or the user's `max_scope` (CLI), and never outliving the credential
//! that makes it (API). Any authenticated user manages their own; nobody sees or deletes
//! another user's.

use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;

use super::http::{ApiError, json_body, json_response, no_content};
use super::model::{Fields, PatResource, rfc3339};
use super::validate::{self, Violations};
use crate::auth::Principal;
use crate::auth::context::Ctx;
use crate::auth::scope::{ScopeSet, Scopes};
use crate::auth::secret::{Secret, new_id, new_personal_access_token};
use crate::body::Body;
use crate::config::duration::parse_duration;
use crate::store::{PersonalToken, Store, StoreError, secret_hash, truncate_to_micros};

pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 86_400);
pub const MAX_TTL: Duration = Duration::from_secs(366 * 86_400);

/// Why a PAT was not minted.
#[derive(Debug)]
pub enum MintError {
    /// Bad display name, scope or ttl.
    Invalid(Violations),
    /// The scope asked for is more than the caller may hold.
    Exceeds {
        asked: String,
        allowed: String,
    },
    Rng,
    Store(StoreError),
}

/// What a new PAT should be.
pub struct MintRequest<'a> {
    pub user: &'a str,
    pub display_name: &'a str,
    pub scope: &'a str,
    pub ttl: Option<&'a str>,
    /// When the credential minting it expires (API callers): an explicit `ttl` beyond it is
    /// refused and the default ttl is cut to it. `None` for the CLI.
    pub not_after: Option<SystemTime>,
}

/// Validates `req` against `cap` (expanded), stores the PAT's hash and returns the token,
/// which exists nowhere else from now on.
pub async fn mint(
    store: &Store,
    scopes: &ScopeSet,
    cap: Scopes,
    req: &MintRequest<'_>,
    now: SystemTime,
) -> Result<(Secret, PersonalToken), MintError> {
    let mut v = Violations::default();
    validate::display_name(&mut v, "displayName", req.display_name);
    let now = truncate_to_micros(now);
    let expire_time = expire_time(&mut v, req.ttl, now, req.not_after);
    let asked = match scopes.parse(req.scope) {
        Ok(s) => s,
        Err(e) => {
            v.add("scope", format!("{e} (known: {scopes})"));
            Scopes::EMPTY
        }
    };
    if !v.is_empty() {
        return Err(MintError::Invalid(v));
    }
    if !cap.contains(scopes.expand(asked)) {
        return Err(MintError::Exceeds {
            asked: scopes.to_highest_string(asked),
            allowed: scopes.to_highest_string(cap),
        });
    }
    let token = new_personal_access_token().map_err(|_| MintError::Rng)?;
    let id = new_id().map_err(|_| MintError::Rng)?;
    let pat = PersonalToken {
        id,
        user: req.user.to_owned(),
        display_name: req.display_name.to_owned(),
        scope: scopes.to_highest_string(asked),
        token_hash: secret_hash(token.expose()),
        create_time: now,
        expire_time,
        last_used_time: None,
    };
    store.create_pat(&pat).await.map_err(MintError::Store)?;
    Ok((token, pat))
}

/// The new PAT's expiry: `ttl` (default 30d, at most 366d) from `now`, never after
/// `not_after`: an explicit ttl beyond it is refused, the default is cut to it.
fn expire_time(
    v: &mut Violations,
    ttl: Option<&str>,
    now: SystemTime,
    not_after: Option<SystemTime>,
) -> SystemTime {
    let Some(text) = ttl else {
        let default = now + DEFAULT_TTL;
        return not_after.map_or(default, |limit| default.min(truncate_to_micros(limit)));
    };
    match parse_duration(text) {
        Ok(d) if d.is_zero() => v.add("ttl", "must be longer than 0s"),
        Ok(d) if d > MAX_TTL => v.add("ttl", "must be at most 366d"),
        Ok(d) => match not_after {
            Some(limit) if now + d > limit => v.add(
                "ttl",
                format!(
                    "must not outlive the credential that creates it (expires {})",
                    rfc3339(limit)
                ),
            ),
            _ => return now + d,
        },
        Err(why) => v.add("ttl", format!("must be a duration such as \"30d\" ({why})")),
    }
    now
}

type Answer = Result<Response<Body>, ApiError>;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse<'a> {
    personal_tokens: Vec<PatResource<'a>>,
}

pub async fn list(ctx: &Ctx<'_>, who: &Principal) -> Answer {
    let now = ctx.clock.now();
    let pats = ctx
        .store
        .list_pats(who.user())
        .await
        .map_err(|e| ApiError::store(&e, ctx.request_id()))?;
    let body = ListResponse {
        personal_tokens: pats
            .iter()
            .filter(|p| p.expire_time > now)
            .map(|p| PatResource::new(p, None))
            .collect(),
    };
    Ok(json_response(StatusCode::OK, &body))
}

pub async fn create(ctx: &Ctx<'_>, who: &Principal, req: Request<Incoming>) -> Answer {
    // A third-party app holding a user's access token must not turn its short-lived, revocable
    // grant into a long-lived PAT that outlives the grant.
    if !who.is_personal_token() {
        return Err(ApiError::permission_denied(
            "personal access tokens can only be created with a personal access token",
        ));
    }
    let bytes = json_body(req, false, ctx.config.server.request_body_timeout).await?;
    let mut f = Fields::parse(&bytes).map_err(ApiError::invalid)?;
    let display_name = f.string("displayName");
    let scope = f.string("scope");
    let ttl = f.string("ttl");
    let mut v = f.finish(&["name", "createTime", "expireTime", "token"]);
    if display_name.is_none() {
        v.add("displayName", "is required");
    }
    if scope.is_none() {
        v.add("scope", "is required");
    }
    if !v.is_empty() {
        return Err(ApiError::invalid(v));
    }
    let request = MintRequest {
        user: who.user(),
        display_name: display_name.as_deref().unwrap_or_default(),
        scope: scope.as_deref().unwrap_or_default(),
        ttl: ttl.as_deref(),
        not_after: Some(who.expires_at()),
    };
    let scopes = &ctx.directory.scopes;
    let now = ctx.clock.now();
    let (token, pat) = mint(ctx.store, scopes, who.scopes, &request, now)
        .await
        .map_err(|e| match e {
            MintError::Invalid(v) => ApiError::invalid(v),
            MintError::Exceeds { asked, allowed } => ApiError::permission_denied(format!(
                "scope: {asked} is more than the caller holds ({allowed})"
            )),
            MintError::Rng => ApiError::internal(),
            MintError::Store(e) => ApiError::store(&e, ctx.request_id()),
        })?;
    tracing::info!(request_id = ctx.request_id(), pat = %pat.id, user = %pat.user, scope = %pat.scope, "personal access token created");
    let resource = PatResource::new(&pat, Some(token.expose()));
    Ok(json_response(StatusCode::CREATED, &resource))
}

pub async fn delete(ctx: &Ctx<'_>, who: &Principal, id: &str) -> Answer {
    let store = &ctx.store;
    // The store's synchronous event hook has made this replica's token cache forget the PAT
    // by the time `delete_pat` returns (`Store::on_event_sync`).
    match store.delete_pat(who.user(), id).await {
        Ok(()) => {
            tracing::info!(request_id = ctx.request_id(), pat = %id, user = %who.user(), "personal access token deleted");
            Ok(no_content())
        }
        Err(e) if e.kind() == crate::store::StoreErrorKind::NotFound => Err(ApiError::not_found(
            format!("personal token 'personalTokens/{id}' not found"),
        )),
        Err(e) => Err(ApiError::store(&e, ctx.request_id())),
    }
}
