//! `POST /oauth2/introspect` (RFC 7662): for confidential clients (Basic or post secret)
//! only. Anything unknown, expired, revoked, rotated, of a deleted or inactive app, or of a
//! user no longer configured is `{"active": false}` and nothing more (RFC 7662 §2.2); an
//! active token shows its expanded scope (SPEC §2), client, user, times, issuer and audience.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::caches::OAuthCaches;
use super::client_auth::{self, Method as AuthMethod};
use super::error::OAuthError;
use super::revoke::verify_access;
use super::{cors, reply, request};
use crate::auth::context::Ctx;
use crate::auth::secret::REFRESH_TOKEN_PREFIX;
use crate::body::Body;
use crate::clock::unix_seconds;
use crate::store::{App, ClientType, secret_hash};

pub async fn handle(ctx: &Ctx<'_>, oauth: &OAuthCaches, req: Request<Incoming>) -> Response<Body> {
    cors::serve(ctx, oauth, req, async |req| {
        introspect(ctx, oauth, req).await
    })
    .await
}

async fn introspect(
    ctx: &Ctx<'_>,
    oauth: &OAuthCaches,
    req: Request<Incoming>,
) -> (Response<Body>, Option<Arc<App>>) {
    let request = match request::read(ctx, req).await {
        Ok(r) => r,
        Err(response) => return (response, None),
    };
    let now = ctx.clock.now();
    let presented = match client_auth::presented(&request.parts.headers, &request.params) {
        Ok(p) => p,
        Err(refused) => return (refused.response(), None),
    };
    if presented.method == AuthMethod::None {
        let e = reply::invalid_client("introspection is for confidential clients");
        return (reply::error(&e, false), None);
    }
    let addr = ctx.client_addr(&request.parts.headers);
    let app = match client_auth::authenticate_throttled(ctx, oauth, &presented, addr, now).await {
        Ok(app) if app.client_type == ClientType::Confidential => app,
        Ok(_) => {
            let e = reply::invalid_client("introspection is for confidential clients");
            return (
                reply::error(&e, presented.method == AuthMethod::Basic),
                None,
            );
        }
        Err(refused) => return (refused.response(), None),
    };
    let Some(token) = request.params.get("token") else {
        let e = reply::invalid_request("token is required");
        return (reply::error(&e, false), Some(app));
    };
    let response = match describe(ctx, token, now).await {
        Ok(v) => reply::json(StatusCode::OK, v.to_string()),
        Err(e) => reply::error(&e, false),
    };
    (response, Some(app))
}

fn inactive() -> Value {
    json!({ "active": false })
}

/// The RFC 7662 §2.2 answer for `token`.
pub async fn describe(ctx: &Ctx<'_>, token: &str, now: SystemTime) -> Result<Value, OAuthError> {
    let fail = |e: crate::store::StoreError| reply::store_failure(&e);
    let store = &ctx.store;
    let (user, client_id, scope, iat, exp, token_type) = if token.starts_with(REFRESH_TOKEN_PREFIX)
    {
        let Some(rt) = store
            .get_refresh_token(&secret_hash(token))
            .await
            .map_err(fail)?
        else {
            return Ok(inactive());
        };
        if rt.rotated_at.is_some() || rt.revoked_at.is_some() || rt.expire_time <= now {
            return Ok(inactive());
        }
        let Some(grant) = store.get_grant(&rt.grant_id).await.map_err(fail)? else {
            return Ok(inactive());
        };
        if !store.is_grant_live(&grant.id).await.map_err(fail)? {
            return Ok(inactive());
        }
        let (iat, exp) = (unix_seconds(rt.create_time), unix_seconds(rt.expire_time));
        (
            grant.user,
            grant.client_id,
            grant.scope,
            iat,
            exp,
            "refresh_token",
        )
    } else {
        let Some(claims) = verify_access(ctx, token, now) else {
            return Ok(inactive());
        };
        let Some(gid) = claims.gid.as_deref() else {
            return Ok(inactive());
        };
        if !store
            .is_access_token_live(&claims.jti, gid)
            .await
            .map_err(fail)?
        {
            return Ok(inactive());
        }
        let Some(client_id) = claims.client_id else {
            return Ok(inactive());
        };
        (
            claims.sub,
            client_id,
            claims.scope,
            claims.iat,
            claims.exp,
            "Bearer",
        )
    };
    if exp <= unix_seconds(now) {
        return Ok(inactive());
    }
    let Some(u) = crate::auth::accounts::resolve(ctx.directory, store, &user)
        .await
        .map_err(fail)?
    else {
        return Ok(inactive());
    };
    let scopes = &ctx.directory.scopes;
    let Ok(granted) = scopes.parse(&scope) else {
        return Ok(inactive());
    };
    let expanded = scopes.expand(granted).intersection(u.max_scope);
    Ok(json!({
        "active": true,
        "scope": scopes.to_names(expanded),
        "client_id": client_id,
        "username": user,
        "sub": user,
        "token_type": token_type,
        "exp": exp,
        "iat": iat,
        "iss": ctx.config.server.public_url,
        "aud": ctx.config.audience(),
    }))
}

/// Seconds to a `SystemTime` (for callers comparing with claims).
pub fn from_unix(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}
