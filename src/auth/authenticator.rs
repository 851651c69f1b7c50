//! Bearer and session authentication for proxied routes and the gateway's own APIs
//! (RFC 6750, RFC 9068, SPEC §3.4): validated tokens are cached (keyed by SHA-256 of the
//! token) until the earlier of their expiry and `auth.cache_ttl`; invalid ones for
//! `auth.negative_cache_ttl`, so a flood of one bad token costs one verification. The cache is
//! quick_cache rather than moka (README, "Behaviour worth knowing"): moka's own bookkeeping is
//! about 300 B per entry, the whole budget of a cached token. quick_cache has no per-entry
//! expiry, so each entry carries its end and a lookup past it is a miss; the scrape of the
//! entry gauge and a sweep each minute take such entries out. Revocation
//! and app-change events from the store take effect on the next request: a cached
//! validation they concern is made again, and an access token holds at most what its app
//! allows now (SPEC §2).
//!
//! With PostgreSQL, other replicas' events arrive over one LISTEN connection. While it is
//! down (SPEC §6), the cache is emptied and answers come from it only for
//! `auth.revocation_propagation` after the connection was lost; past that, a check that needs
//! the store or the cache is `Unavailable` (503) until the replica listens again: a
//! revocation it missed can never be honoured later than that bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use prometheus::IntCounter;
use quick_cache::sync::Cache;

use super::accounts;
use super::directory::Directory;
use super::foreign::{Accept, Shape};
use super::jwt::TokenError;
use super::keys::SigningKeys;
use super::principal::{Credential, Groups, Id, Interned, Principal, unix_micros};
use super::revoked::Revoked;
use super::scope::Scopes;
use crate::clock::{Clock, unix_seconds};
use crate::config::AuthConfig;
use crate::metrics::Metrics;
use crate::store::{SecretHash, Store, StoreEvent, secret_hash};

/// Why a request is not authenticated. Each has a metrics label and an RFC 6750 answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No bearer credentials at all (401 without an error code).
    Missing,
    /// An `Authorization` header that is not a well-formed bearer token.
    Malformed,
    /// A token that does not verify (signature, key, issuer, audience, type).
    Invalid(&'static str),
    Expired,
    /// Revoked, rotated, from a deleted or inactive app, or of a user no longer configured.
    Revoked,
    /// The store cannot answer: refuse (503), never allow.
    Unavailable,
}

impl AuthFailure {
    /// The `result` label of `gatehouse_auth_decisions_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Invalid(kind) => kind,
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Unavailable => "unavailable",
        }
    }

    /// The human-readable `error_description`.
    pub fn description(self) -> &'static str {
        match self {
            Self::Missing => "",
            Self::Malformed => "the Authorization header is not a bearer token",
            Self::Invalid(_) => "the access token is invalid",
            Self::Expired => "the access token expired",
            Self::Revoked => "the access token was revoked",
            Self::Unavailable => "authentication is temporarily unavailable",
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3).
    pub fn www_authenticate(self) -> HeaderValue {
        match self {
            Self::Missing | Self::Unavailable => {
                HeaderValue::from_static("Bearer realm=\"gatehouse\"")
            }
            other => HeaderValue::from_str(&format!(
                "Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"{}\"",
                other.description()
            ))
            .unwrap_or_else(|_| {
                HeaderValue::from_static("Bearer realm=\"gatehouse\", error=\"invalid_token\"")
            }),
        }
    }
}

fn token_error_label(e: &TokenError) -> &'static str {
    match e {
        TokenError::Malformed | TokenError::BadHeader(_) => "malformed",
        TokenError::UnknownKid => "unknown_kid",
        TokenError::BadSignature => "bad_signature",
        TokenError::Expired => "expired",
        TokenError::NotYetValid => "not_yet_valid",
        TokenError::WrongIssuer => "wrong_issuer",
        TokenError::WrongAudience => "wrong_audience",
    }
}

#[derive(Clone)]
struct Entry {
    result: Result<Arc<Principal>, AuthFailure>,
    epoch: u64,
    /// [`Revoked::seq`] before the validation read the store.
    since: u64,
    /// When the entry stops answering, in microseconds since the Unix epoch: the validation's
    /// time plus its ttl.
    until: u64,
}

/// `lost_at` while this replica hears the others' events.
const LISTENING: u64 = u64::MAX;

/// Validates bearer tokens with a cache in front; cheap to share.
pub struct Authenticator {
    /// `None` when `auth.cache_max_entries` is 0 (nothing is cached).
    cache: Option<Cache<SecretHash, Entry>>,
    /// The users, apps and scope lists the cached principals share.
    interned: Interned,
    revoked: Revoked,
    epoch: AtomicU64,
    /// Microseconds since the Unix epoch at which other replicas' events stopped arriving,
    /// or [`LISTENING`].
    lost_at: AtomicU64,
    hits: IntCounter,
    misses: IntCounter,
    entries: prometheus::IntGauge,
}

impl Authenticator {
    /// The cache's size (`auth.cache_max_entries`) is fixed at start; every other `auth.*`
    /// setting comes with each call, from the config the request runs under
    /// ([`Directory::tokens`]).
    pub fn new(auth: &AuthConfig, metrics: &Metrics) -> Self {
        // quick_cache wants room for at least one entry; `0` turns caching off.
        let cache = usize::try_from(auth.cache_max_entries)
            .ok()
            .filter(|&n| n > 0)
            .map(Cache::new);
        Self {
            cache,
            interned: Interned::default(),
            revoked: Revoked::new(auth.cache_ttl + Duration::from_secs(1)),
            epoch: AtomicU64::new(0),
            lost_at: AtomicU64::new(LISTENING),
            hits: metrics.token_cache_requests.with_label_values(&["hit"]),
            misses: metrics.token_cache_requests.with_label_values(&["miss"]),
            entries: metrics.token_cache_entries.clone(),
        }
    }

    /// The caller behind a request's `Authorization` header: the one function that reads a
    /// request's credential for the proxy, the management API and the authorize endpoint.
    /// Exactly one such header (RFC 6750 §2.1; two are malformed); none is `Missing`.
    /// `accept` says whose tokens count here (SPEC §7.2): a route's `issuers`, or the
    /// management rule; any other issuer's token is `invalid_token`.
    pub async fn from_headers(
        &self,
        headers: &http::HeaderMap,
        directory: &Directory,
        keys: &SigningKeys,
        store: &Store,
        now: SystemTime,
        accept: Accept<'_>,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(AuthFailure::Malformed);
        }
        self.bearer(first, directory, keys, store, now, accept)
            .await
    }

    /// Authenticates the value of an `Authorization` header (`None` when absent).
    pub async fn bearer(
        &self,
        authorization: Option<&HeaderValue>,
        directory: &Directory,
        keys: &SigningKeys,
        store: &Store,
        now: SystemTime,
        accept: Accept<'_>,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let result = self
            .bearer_any(authorization, directory, keys, store, now, accept)
            .await?;
        if directory.issuers.is_empty() || accept.principal(&result, &directory.issuers) {
            Ok(result)
        } else {
            // A token this caller does not take (another issuer, or gatehouse's own on a route
            // that lists only other issuers): cached as valid, refused here.
            Err(AuthFailure::Invalid("wrong_issuer"))
        }
    }

    async fn bearer_any(
        &self,
        authorization: Option<&HeaderValue>,
        directory: &Directory,
        keys: &SigningKeys,
        store: &Store,
        now: SystemTime,
        accept: Accept<'_>,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let token = bearer_token(authorization)?;
        let key = secret_hash(token);
        let rules = &directory.tokens;
        let trusted = self.events_trusted(now, rules.propagation);
        let epoch = self.epoch.load(Ordering::Acquire);
        let since = self.revoked.seq();
        let cached = self.cache.as_ref().and_then(|c| c.get(&key));
        let now_micros = unix_micros(now);
        if let Some(entry) = cached.filter(|e| e.epoch == epoch && now_micros < e.until) {
            let answer = match entry.result {
                Ok(p) if p.expires_at() + rules.leeway <= now => Some(Err(AuthFailure::Expired)),
                Ok(_) if !trusted => Some(Err(AuthFailure::Unavailable)),
                // Changed since it was cached: validate afresh below.
                Ok(p) if self.revoked.covers(&p, entry.since) => None,
                other => Some(other),
            };
            if let Some(answer) = answer {
                self.hits.inc();
                return answer;
            }
        }
        self.misses.inc();
        let result = if directory.issuers.is_empty() {
            self.validate(token, &key, directory, keys, store, now, trusted)
                .await
        } else {
            match self
                .validate_any(token, &key, directory, keys, store, now, trusted, accept)
                .await
            {
                Some(result) => result,
                // Refused for this caller only: nothing to remember.
                None => return Err(AuthFailure::Invalid("wrong_issuer")),
            }
        };
        let ttl = match &result {
            Ok(p) => p
                .expires_at()
                .duration_since(now)
                .unwrap_or_default()
                .min(rules.cache_ttl),
            Err(AuthFailure::Unavailable) => Duration::ZERO,
            Err(_) => rules.negative_ttl,
        };
        if let Some(cache) = self.cache.as_ref().filter(|_| !ttl.is_zero()) {
            cache.insert(
                key,
                Entry {
                    result: result.clone(),
                    epoch,
                    since,
                    until: now.checked_add(ttl).map_or(u64::MAX, unix_micros),
                },
            );
            self.entries
                .set(i64::try_from(cache.len()).unwrap_or(i64::MAX));
        }
        result
    }

    /// Whether this replica hears the other replicas' events well enough to answer from the
    /// cache or the store: always, but for `auth.revocation_propagation` at most after it
    /// stopped hearing them.
    fn events_trusted(&self, now: SystemTime, propagation: Duration) -> bool {
        let lost = self.lost_at.load(Ordering::Acquire);
        lost == LISTENING
            || UNIX_EPOCH
                .checked_add(Duration::from_micros(lost))
                .and_then(|t| t.checked_add(propagation))
                .is_none_or(|end| now < end)
    }

    /// [`Authenticator::validate`] when other issuers are configured: a JWT of one of them is
    /// checked against its keys, an opaque token that is not a PAT goes to the introspection
    /// endpoints `accept` names. `None` when `accept` does not take the token's issuer, an
    /// answer that must not be cached (another route may take it).
    #[allow(clippy::too_many_arguments)]
    async fn validate_any(
        &self,
        token: &str,
        key: &SecretHash,
        directory: &Directory,
        keys: &SigningKeys,
        store: &Store,
        now: SystemTime,
        trusted: bool,
        accept: Accept<'_>,
    ) -> Option<Result<Arc<Principal>, AuthFailure>> {
        let issuers = &directory.issuers;
        let own = || async {
            self.validate(token, key, directory, keys, store, now, trusted)
                .await
        };
        if token.starts_with(crate::auth::secret::PAT_PREFIX) {
            return accept.own().then_some(own().await);
        }
        match issuers.shape(token) {
            Shape::Foreign(issuer) => {
                if !accept.issuer(issuer) {
                    return None;
                }
                let check = issuer.check_jwt(token, directory, &self.interned, now);
                Some(within(accept.wait(), check).await)
            }
            Shape::OtherJwt => accept.own().then_some(own().await),
            Shape::Opaque => {
                let candidates = issuers.introspecting(&accept);
                if candidates.is_empty() {
                    return accept.own().then_some(own().await);
                }
                let ask = async {
                    for issuer in candidates {
                        let answer = issuer.introspect(token, directory, &self.interned, now);
                        if let Some(principal) = answer.await? {
                            return Ok(principal);
                        }
                    }
                    Err(AuthFailure::Invalid("inactive"))
                };
                Some(within(accept.wait(), ask).await)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn validate(
        &self,
        token: &str,
        key: &SecretHash,
        directory: &Directory,
        keys: &SigningKeys,
        store: &Store,
        now: SystemTime,
        trusted: bool,
    ) -> Result<Arc<Principal>, AuthFailure> {
        if token.starts_with(crate::auth::secret::PAT_PREFIX) {
            if !trusted {
                return Err(AuthFailure::Unavailable);
            }
            return self.validate_pat(key, directory, store, now).await;
        }
        let claims = keys
            .verify_access_token(token, unix_seconds(now), &directory.tokens.policy)
            .map_err(|e| match e {
                TokenError::Expired => AuthFailure::Expired,
                other => AuthFailure::Invalid(token_error_label(&other)),
            })?;
        let grant_id = claims
            .gid
            .clone()
            .ok_or(AuthFailure::Invalid("malformed"))?;
        if !trusted {
            return Err(AuthFailure::Unavailable);
        }
        let app_scopes = store
            .live_access_token_app_scopes(&claims.jti, &grant_id)
            .await
            .map_err(unavailable)?
            .ok_or(AuthFailure::Revoked)?;
        let user = accounts::resolve(directory, store, &claims.sub)
            .await
            .map_err(unavailable)?
            .ok_or(AuthFailure::Revoked)?;
        let granted = directory
            .scopes
            .parse(&claims.scope)
            .map_err(|_| AuthFailure::Invalid("malformed"))?;
        // SPEC §2: what the token was granted, capped at what its user and its app may have
        // now (an app narrowed since the grant narrows its tokens too).
        let app_allows = app_scopes
            .iter()
            .filter_map(|s| directory.scopes.lookup(s))
            .fold(Scopes::EMPTY, Scopes::union);
        let scopes = directory
            .scopes
            .expand(granted)
            .intersection(user.max_scope)
            .intersection(directory.scopes.expand(app_allows));
        let expires_at =
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(claims.exp).unwrap_or(0));
        let client_id = claims.client_id.ok_or(AuthFailure::Invalid("malformed"))?;
        let credential = Credential::AppToken {
            client: self
                .interned
                .client(&client_id)
                .ok_or(AuthFailure::Invalid("malformed"))?,
            grant_id: Id::new(&grant_id),
            jti: Id::new(&claims.jti),
        };
        self.principal(
            directory,
            credential,
            &claims.sub,
            user.groups,
            scopes,
            expires_at,
        )
    }

    async fn validate_pat(
        &self,
        key: &SecretHash,
        directory: &Directory,
        store: &Store,
        now: SystemTime,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let pat = store
            .get_pat_by_hash(key)
            .await
            .map_err(unavailable)?
            .ok_or(AuthFailure::Invalid("unknown"))?;
        if pat.expire_time <= now {
            return Err(AuthFailure::Expired);
        }
        let user = accounts::resolve(directory, store, &pat.user)
            .await
            .map_err(unavailable)?
            .ok_or(AuthFailure::Revoked)?;
        let granted = directory
            .scopes
            .parse(&pat.scope)
            .map_err(|_| AuthFailure::Revoked)?;
        let scopes = directory
            .scopes
            .expand(granted)
            .intersection(user.max_scope);
        if let Err(e) = store.touch_pat(&pat.id, now).await {
            tracing::debug!(error = %e, "could not record the PAT's last use");
        }
        let credential = Credential::PersonalToken {
            id: Id::new(&pat.id),
        };
        self.principal(
            directory,
            credential,
            &pat.user,
            user.groups,
            scopes,
            pat.expire_time,
        )
    }

    /// A principal of `user` (with `groups`) holding `scopes`, made of the shared values.
    fn principal(
        &self,
        directory: &Directory,
        credential: Credential,
        user: &str,
        groups: Groups,
        scopes: Scopes,
        expires_at: SystemTime,
    ) -> Result<Arc<Principal>, AuthFailure> {
        shared_principal(
            &self.interned,
            directory,
            credential,
            user,
            groups,
            scopes,
            expires_at,
        )
    }

    /// Sweeps out the entries past their time (a lookup already treats them as misses) and
    /// brings `gatehouse_token_cache_entries` up to date; called on scrape.
    pub fn refresh_entry_gauge(&self, now: SystemTime) {
        let Some(cache) = &self.cache else { return };
        let now = unix_micros(now);
        cache.retain(|_, entry| now < entry.until);
        self.entries
            .set(i64::try_from(cache.len()).unwrap_or(i64::MAX));
    }

    /// Sweeps the cache every `every` as a scrape does, so that entries past their time leave
    /// memory within `every` where nothing scrapes `/metrics`.
    pub fn spawn_sweep(
        self: &Arc<Self>,
        every: Duration,
        clock: Clock,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(this) = weak.upgrade() else { return };
                this.refresh_entry_gauge(clock.now());
            }
        })
    }

    /// Applies one store event that happened at `now`: the next request with a token it
    /// concerns is validated afresh.
    pub fn on_event(&self, event: &StoreEvent, now: SystemTime) {
        match event {
            StoreEvent::TokenRevoked { jti } => self.revoked.token(jti),
            StoreEvent::GrantRevoked { grant_id } => self.revoked.grant(grant_id),
            StoreEvent::AppRevoked { client_id } | StoreEvent::AppUpdated { client_id } => {
                self.revoked.app(client_id)
            }
            StoreEvent::PatRevoked { id, token_hash } => {
                if let Some(cache) = &self.cache {
                    cache.remove(token_hash);
                }
                self.revoked.pat(id);
            }
            StoreEvent::NotificationsLost => {
                let micros = now
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(LISTENING - 1));
                // The first loss counts: a second report changes nothing.
                let _ = self.lost_at.compare_exchange(
                    LISTENING,
                    micros.min(LISTENING - 1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                self.flush();
            }
            StoreEvent::NotificationsBack => {
                // Forget first: what was cached while deaf may be stale.
                self.flush();
                self.lost_at.store(LISTENING, Ordering::Release);
            }
        }
    }

    /// Forgets every cached validation (events were missed, or the users changed).
    pub fn flush(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// Follows the store's events, each applied at `clock`'s time before the call that
    /// published it returns: a revoking call's own answer never races the cache, and other
    /// replicas' events apply as they arrive.
    pub fn follow(self: &Arc<Self>, store: &Store, clock: Clock) {
        let weak = Arc::downgrade(self);
        store.on_event_sync(Arc::new(move |event| {
            if let Some(this) = weak.upgrade() {
                this.on_event(event, clock.now());
            }
        }));
    }
}

/// `check`, or `Unavailable` (503, never cached) when an issuer keeps it waiting longer than
/// `wait` (the route's timeout).
async fn within(
    wait: Duration,
    check: impl std::future::Future<Output = Result<Arc<Principal>, AuthFailure>>,
) -> Result<Arc<Principal>, AuthFailure> {
    tokio::time::timeout(wait, check)
        .await
        .unwrap_or(Err(AuthFailure::Unavailable))
}

/// A principal of `user` (with `groups`) holding `scopes`, its user and scope header value
/// shared through `interned` with the other principals holding the same.
pub(super) fn shared_principal(
    interned: &Interned,
    directory: &Directory,
    credential: Credential,
    user: &str,
    groups: Groups,
    scopes: Scopes,
    expires_at: SystemTime,
) -> Result<Arc<Principal>, AuthFailure> {
    let malformed = AuthFailure::Invalid("malformed");
    let identity = interned.user(user, groups).ok_or(malformed)?;
    let scopes_value = interned
        .scopes_value(&directory.scopes.to_names(scopes))
        .ok_or(malformed)?;
    Ok(Arc::new(Principal::new(
        credential,
        identity,
        scopes,
        scopes_value,
        expires_at,
    )))
}

fn unavailable(e: crate::store::StoreError) -> AuthFailure {
    tracing::error!(error = %e, "token validation: the store does not answer");
    AuthFailure::Unavailable
}

/// The token of `Authorization: Bearer <token>` (RFC 6750 §2.1); other schemes count as no
/// bearer credentials.
pub fn bearer_token(authorization: Option<&HeaderValue>) -> Result<&str, AuthFailure> {
    let value = authorization
        .ok_or(AuthFailure::Missing)?
        .to_str()
        .map_err(|_| AuthFailure::Malformed)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Missing);
    }
    let token = token.trim_start_matches(' ');
    let token68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
    let body = token.trim_end_matches('=');
    if body.is_empty() || token.len() > super::jwt::MAX_TOKEN_BYTES || !body.bytes().all(token68) {
        return Err(AuthFailure::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
#[path = "authenticator_tests.rs"]
mod tests;
