//! `POST /oauth2/revoke` (RFC 7009): the client authenticates as at the token endpoint; a
//! refresh token ends its whole grant, an access token only itself (SPEC §3.1). Unknown,
//! expired or other clients' tokens are answered 200 and left alone (RFC 7009 §2.2).

use std::sync::Arc;
use std::time::SystemTime;

use http::{Request, Response};
use hyper::body::Incoming;

use super::caches::OAuthCaches;
use super::client_auth;
use super::error::OAuthError;
use super::{cors, reply, request};
use crate::auth::context::Ctx;
use crate::auth::jwt::AccessClaims;
use crate::auth::secret::REFRESH_TOKEN_PREFIX;
use crate::body::Body;
use crate::clock::unix_seconds;
use crate::store::{App, secret_hash};

pub async fn handle(ctx: &Ctx<'_>, oauth: &OAuthCaches, req: Request<Incoming>) -> Response<Body> {
    cors::serve(ctx, oauth, req, async |req| revoke(ctx, oauth, req).await).await
}

async fn revoke(
    ctx: &Ctx<'_>,
    oauth: &OAuthCaches,
    req: Request<Incoming>,
) -> (Response<Body>, Option<Arc<App>>) {
    let request = match request::read(ctx, req).await {
        Ok(r) => r,
        Err(response) => return (response, None),
    };
    let now = ctx.clock.now();
    let app = match client_auth::authenticate_request(ctx, oauth, &request, now).await {
        Ok(app) => app,
        Err(refused) => return (refused.response(), None),
    };
    let Some(token) = request.params.get("token") else {
        let e = reply::invalid_request("token is required");
        return (reply::error(&e, false), Some(app));
    };
    let response = match revoke_token(ctx, &app, token, now).await {
        Ok(()) => reply::empty_ok(),
        Err(e) => reply::error(&e, false),
    };
    (response, Some(app))
}

/// Revokes `token` if it is `app`'s: the token type is told by its shape, so
/// `token_type_hint` is not needed (RFC 7009 §2.1 lets the server ignore it).
pub async fn revoke_token(
    ctx: &Ctx<'_>,
    app: &App,
    token: &str,
    now: SystemTime,
) -> Result<(), OAuthError> {
    if token.starts_with(REFRESH_TOKEN_PREFIX) {
        return revoke_refresh(ctx, app, token, now).await;
    }
    let Some(claims) = verify_access(ctx, token, now) else {
        return Ok(());
    };
    if claims.client_id.as_deref() != Some(app.client_id.as_str()) {
        tracing::info!("revocation of another client's access token ignored");
        return Ok(());
    }
    let expire = super::introspect::from_unix(claims.exp);
    ctx.store
        .revoke_access_token(&claims.jti, claims.gid.as_deref(), expire, now)
        .await
        .map_err(|e| reply::store_failure(&e))
}

async fn revoke_refresh(
    ctx: &Ctx<'_>,
    app: &App,
    token: &str,
    now: SystemTime,
) -> Result<(), OAuthError> {
    let store = &ctx.store;
    let fail = |e: crate::store::StoreError| reply::store_failure(&e);
    let Some(rt) = store
        .get_refresh_token(&secret_hash(token))
        .await
        .map_err(fail)?
    else {
        return Ok(());
    };
    let Some(grant) = store.get_grant(&rt.grant_id).await.map_err(fail)? else {
        return Ok(());
    };
    if grant.client_id != app.client_id {
        tracing::info!("revocation of another client's refresh token ignored");
        return Ok(());
    }
    store.revoke_grant(&grant.id, now).await.map_err(fail)?;
    Ok(())
}

/// The claims of one of our access tokens that has not expired, signature checked, by the
/// same rules as the proxy's.
pub fn verify_access(ctx: &Ctx<'_>, token: &str, now: SystemTime) -> Option<AccessClaims> {
    ctx.keys
        .verify_access_token(token, unix_seconds(now), &ctx.directory.tokens.policy)
        .ok()
}
