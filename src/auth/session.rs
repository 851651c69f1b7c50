//! Login sessions (SPEC §3.2): a 256-bit random cookie value, stored only as its SHA-256; a
//! new one at every login and the previous one deleted (no session fixation).

use std::time::SystemTime;

use http::{HeaderMap, HeaderValue};

use super::cookies::{self, SESSION_COOKIE};
use crate::auth::context::Ctx;
use crate::auth::directory::{Directory, User};
use crate::store::{Session, Store, StoreError, secret_hash};

/// The signed-in user of a request.
pub struct Current {
    pub user: String,
    /// The cookie value: the secret CSRF tokens of this session are bound to.
    pub secret: String,
}

/// A live session found from a request's cookie.
pub struct Found<'d, 'h> {
    pub user: &'d User,
    pub session: Session,
    /// The cookie value.
    pub cookie: &'h str,
}

/// The session named by the request's one well-formed `gatehouse_session` cookie, if it is
/// live and its user is still configured. The proxy's `session` routes and the login pages
/// both decide by this.
pub async fn find<'d, 'h>(
    store: &Store,
    directory: &'d Directory,
    headers: &'h HeaderMap,
    now: SystemTime,
) -> Result<Option<Found<'d, 'h>>, StoreError> {
    let Some(cookie) = cookies::get(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(session) = store.get_session(&secret_hash(cookie), now).await? else {
        return Ok(None);
    };
    Ok(directory.user(&session.user).map(|user| Found {
        user,
        session,
        cookie,
    }))
}

/// The request's session, if its cookie names a live session of a user still configured.
pub async fn current(ctx: &Ctx<'_>, headers: &HeaderMap) -> Result<Option<Current>, StoreError> {
    let now = ctx.clock.now();
    let found = find(ctx.store, ctx.directory, headers, now).await?;
    if let Some(f) = &found {
        ctx.note_user(&f.session.user);
    }
    Ok(found.map(|f| Current {
        user: f.session.user,
        secret: f.cookie.to_owned(),
    }))
}

/// Starts a session for `user`, ending the one the browser held (`previous`), and returns
/// the `Set-Cookie` value.
pub async fn start(
    ctx: &Ctx<'_>,
    user: &str,
    previous: Option<&str>,
) -> Result<HeaderValue, StoreError> {
    ctx.note_user(user);
    if let Some(old) = previous {
        ctx.store.delete_session(&secret_hash(old)).await?;
    }
    let value = crate::auth::secret::random_token::<32>()
        .map_err(|_| StoreError::internal("the random number generator failed"))?;
    let ttl = ctx.config.login.session_ttl;
    let now = ctx.clock.now();
    ctx.store
        .create_session(&Session {
            id_hash: secret_hash(&value),
            user: user.to_owned(),
            create_time: now,
            expire_time: now + ttl,
        })
        .await?;
    Ok(session_cookie(ctx.config, &value, ttl))
}

/// `Set-Cookie` for the session cookie, with `forward_auth.cookie_domain` as its `Domain` when
/// set (SPEC §7.4: one login for every host behind the ingress).
pub fn session_cookie(
    config: &crate::config::Config,
    value: &str,
    ttl: std::time::Duration,
) -> HeaderValue {
    let domain = &config.forward_auth.cookie_domain;
    cookies::set_for_domain(SESSION_COOKIE, value, "/", "Lax", ttl, domain)
}

/// `Set-Cookie` that clears the session cookie (where [`session_cookie`] set it).
pub fn clear_cookie(config: &crate::config::Config) -> HeaderValue {
    session_cookie(config, "", std::time::Duration::ZERO)
}

/// With `forward_auth.cookie_domain` set, the `Set-Cookie` that clears a host-only session
/// cookie left from before: a browser holding both would send two `gatehouse_session` cookies,
/// and the gateway trusts neither.
pub fn clear_host_only_cookie(config: &crate::config::Config) -> Option<HeaderValue> {
    (!config.forward_auth.cookie_domain.is_empty())
        .then(|| cookies::clear(SESSION_COOKIE, "/", "Lax"))
}

/// Ends the session with cookie value `secret`; returns the `Set-Cookie` that clears it.
pub async fn end(ctx: &Ctx<'_>, secret: &str) -> Result<HeaderValue, StoreError> {
    ctx.store.delete_session(&secret_hash(secret)).await?;
    Ok(clear_cookie(ctx.config))
}
