//! Client authentication at the token, revocation and introspection endpoints (RFC 6749
//! §2.3.1, §3.2.1; RFC 8414 method names): `client_secret_basic`, `client_secret_post`, or
//! `none` for public clients — one method per request. Secrets are compared as SHA-256
//! hashes in constant time, the previous secret within its rotation grace included, behind a
//! throttle per client id and client address (SPEC §3.2).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Response, header};

use super::caches::OAuthCaches;
use super::error::OAuthError;
use super::error::OAuthErrorCode;
use super::params::{Params, decode};
use super::reply;
use super::request::OAuthRequest;
use crate::auth::context::Ctx;
use crate::auth::secret::Secret;
use crate::auth::throttle::{Throttle, Throttled};
use crate::body::Body;
use crate::store::{App, ClientType, Store, secret_hash};

/// How the client authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Basic,
    Post,
    None,
}

/// The credentials a request carries, before they are checked.
pub struct Presented {
    pub client_id: String,
    secret: Option<Secret>,
    pub method: Method,
}

/// A client authentication failure, with whether Basic was tried (for the 401's challenge),
/// or a refusal to check at all because of too many failures (429 with `Retry-After`).
pub struct Refused {
    pub error: OAuthError,
    pub basic: bool,
    pub retry_after: Option<u64>,
}

impl Refused {
    fn new(error: OAuthError, basic: bool) -> Self {
        Self {
            error,
            basic,
            retry_after: None,
        }
    }

    /// The HTTP answer.
    pub fn response(&self) -> Response<Body> {
        match self.retry_after {
            Some(secs) => reply::throttled(&self.error, self.basic, secs),
            None => reply::error(&self.error, self.basic),
        }
    }
}

/// The credentials of the request: `Authorization: Basic` (id and secret form-urlencoded,
/// RFC 6749 §2.3.1) or `client_id` (+ `client_secret`) parameters; never both kinds.
pub fn presented(headers: &HeaderMap, params: &Params) -> Result<Presented, Refused> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Refused::new(
            reply::invalid_request("more than one Authorization header"),
            false,
        ));
    }
    let basic = first
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, rest)| rest.trim());
    if let Some(encoded) = basic {
        let bad = || Refused::new(reply::invalid_client("malformed Basic credentials"), true);
        let raw = STANDARD.decode(encoded).map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
        let (id, secret) = (
            decode(id).map_err(|_| bad())?,
            decode(secret).map_err(|_| bad())?,
        );
        if params.contains("client_secret") {
            return Err(Refused::new(
                reply::invalid_request("use one client authentication method, not two"),
                true,
            ));
        }
        if params.get("client_id").is_some_and(|p| p != id) {
            return Err(Refused::new(
                reply::invalid_request("client_id differs from the Basic credentials"),
                true,
            ));
        }
        if id.is_empty() {
            return Err(bad());
        }
        // Some public clients send `Basic base64(client_id:)`: an empty password is none.
        let secret = (!secret.is_empty()).then(|| Secret::new(secret));
        return Ok(Presented {
            client_id: id,
            secret,
            method: Method::Basic,
        });
    }
    let Some(client_id) = params.get("client_id") else {
        return Err(Refused::new(
            reply::invalid_client("client authentication is required"),
            false,
        ));
    };
    let secret = params.get("client_secret").map(Secret::new);
    let method = if secret.is_some() {
        Method::Post
    } else {
        Method::None
    };
    Ok(Presented {
        client_id: client_id.to_owned(),
        secret,
        method,
    })
}

/// Reads the client credentials of a token-endpoint-style request and authenticates them,
/// under the per-client throttle keyed by the caller's address.
pub async fn authenticate_request(
    ctx: &Ctx<'_>,
    oauth: &OAuthCaches,
    request: &OAuthRequest,
    now: SystemTime,
) -> Result<Arc<App>, Refused> {
    let presented = presented(&request.parts.headers, &request.params)?;
    let addr = ctx.client_addr(&request.parts.headers);
    authenticate_throttled(ctx, oauth, &presented, addr, now).await
}

/// [`authenticate`] behind a brute-force throttle keyed by client id and client address
/// `addr`: the attempt is registered before the secret is checked and counts unless the
/// client authenticated, so after [`MAX_CLIENT_FAILURES`] failures within [`FAILURE_WINDOW`]
/// further attempts, parallel ones included, are refused without looking at the secret
/// (SECURITY.md "Client authentication"). Other addresses are not affected: one attacker
/// cannot lock an app out for its real backends.
///
/// [`MAX_CLIENT_FAILURES`]: super::caches::MAX_CLIENT_FAILURES
/// [`FAILURE_WINDOW`]: super::caches::FAILURE_WINDOW
pub async fn authenticate_throttled(
    ctx: &Ctx<'_>,
    caches: &OAuthCaches,
    presented: &Presented,
    addr: IpAddr,
    now: SystemTime,
) -> Result<Arc<App>, Refused> {
    let attempt = match caches.client_attempt(&presented.client_id, addr, now).await {
        Ok(attempt) => attempt,
        Err(throttled) => return Err(throttled_refusal(presented, addr, throttled)),
    };
    let max_age = ctx.config.auth.revocation_propagation;
    let result = authenticate(caches, ctx.store, presented, now, max_age).await;
    if let Ok(app) = &result {
        ctx.note_client(&app.client_id);
    }
    match &result {
        Err(r) if r.error.code == OAuthErrorCode::InvalidClient => attempt.failed().await,
        // Right credentials, or not checked at all (the store failed).
        _ => attempt.forgive(),
    }
    result
}

/// The 429 of a throttled client authentication, logged.
fn throttled_refusal(presented: &Presented, addr: IpAddr, throttled: Throttled) -> Refused {
    tracing::warn!(
        client_id = %LogId(&presented.client_id),
        %addr,
        "client authentication throttled"
    );
    Refused {
        error: throttled_error(),
        basic: false,
        retry_after: Some(throttled.retry_after_secs()),
    }
}

fn throttled_error() -> OAuthError {
    OAuthError::new(
        OAuthErrorCode::InvalidClient,
        "too many failed client authentications; try again later",
    )
}

/// The judgement against the other replicas' failures (PostgreSQL, SPEC §3.2) that a grant
/// whose client authenticated still owes, so that the grant's first store read can carry it
/// instead of a round trip of its own (see [`authenticate_for_grant`]).
pub struct SharedCheck {
    /// The throttle keys as the store keeps them; `None`: nothing is owed (SQLite).
    keys: Option<Vec<Vec<u8>>>,
    /// Whether a store read carried the judgement (and its answer was acted on).
    carried: AtomicBool,
}

impl SharedCheck {
    /// Nothing owed: a client authenticated without a shared throttle (SQLite, a benchmark).
    pub fn none() -> Self {
        Self {
            keys: None,
            carried: AtomicBool::new(false),
        }
    }

    /// The keys a store read must judge, if any; from then on the caller must refuse with
    /// [`SharedCheck::refusal`] when that read finds them blocked.
    pub fn carry(&self) -> Option<&[Vec<u8>]> {
        let keys = self.keys.as_deref()?;
        self.carried.store(true, Ordering::Release);
        Some(keys)
    }

    /// The error of a grant refused because the store's `blocked_until` (from a read that
    /// carried the keys) is after `now`; `None`: not blocked.
    pub fn refusal(blocked_until: Option<SystemTime>, now: SystemTime) -> Option<OAuthError> {
        let throttled = Throttle::shared_wait(blocked_until, now)?;
        let mut error = throttled_error();
        error.retry_after = Some(throttled.retry_after_secs());
        Some(error)
    }

    /// Judges the keys with a read of their own unless a read carried them: the refusal, if
    /// they are blocked (a store that fails leaves this replica's counters in charge).
    pub async fn settle(&self, store: &Store, now: SystemTime) -> Option<OAuthError> {
        if self.carried.load(Ordering::Acquire) {
            return None;
        }
        let keys = self.carry()?;
        match store.throttle_blocked_until(keys, now).await {
            Ok(until) => Self::refusal(until, now),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the replicas' shared throttles");
                None
            }
        }
    }
}

/// [`authenticate_request`] for the token endpoint's grants, with the judgement against the
/// other replicas' failures left to the grant ([`SharedCheck`]): its first store read
/// carries it, and whatever the grant answers, [`SharedCheck::settle`] makes sure it was
/// judged before the answer leaves. Failed credentials are judged at once, before they
/// count, as [`authenticate_throttled`] does: a banned client gets 429 whether its secret is
/// right or wrong, and nothing else.
pub async fn authenticate_for_grant(
    ctx: &Ctx<'_>,
    oauth: &OAuthCaches,
    request: &OAuthRequest,
    now: SystemTime,
) -> Result<(Arc<App>, SharedCheck), Refused> {
    let presented = presented(&request.parts.headers, &request.params)?;
    let addr = ctx.client_addr(&request.parts.headers);
    let (attempt, keys) = match oauth
        .client_attempt_here(&presented.client_id, addr, now)
        .await
    {
        Ok(attempt) => attempt,
        Err(throttled) => return Err(throttled_refusal(&presented, addr, throttled)),
    };
    let check = SharedCheck {
        keys,
        carried: AtomicBool::new(false),
    };
    let max_age = ctx.config.auth.revocation_propagation;
    match authenticate(oauth, ctx.store, &presented, now, max_age).await {
        Ok(app) => {
            ctx.note_client(&app.client_id);
            attempt.forgive();
            Ok((app, check))
        }
        Err(refused) if refused.error.code == OAuthErrorCode::InvalidClient => {
            if let Some(error) = check.settle(ctx.store, now).await {
                attempt.forgive();
                tracing::warn!(
                    client_id = %LogId(&presented.client_id),
                    %addr,
                    "client authentication throttled"
                );
                return Err(Refused {
                    retry_after: error.retry_after,
                    error,
                    basic: false,
                });
            }
            attempt.failed().await;
            Err(refused)
        }
        Err(refused) => {
            attempt.forgive();
            Err(refused)
        }
    }
}

/// A client id as the log shows it: at most its first 64 characters (an id of any length
/// may be presented).
struct LogId<'a>(&'a str);

impl std::fmt::Display for LogId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(64) {
            Some((end, _)) => write!(f, "{}…", &self.0[..end]),
            None => f.write_str(self.0),
        }
    }
}

/// Checks the credentials: the app exists and is active, a confidential app proved its
/// secret, a public app sent none. Every failure is the same `invalid_client`. The app comes
/// from `caches` when read within `max_age` (see `caches::AppCache`).
pub async fn authenticate(
    caches: &OAuthCaches,
    store: &Store,
    presented: &Presented,
    now: SystemTime,
    max_age: Duration,
) -> Result<Arc<App>, Refused> {
    let basic = presented.method == Method::Basic;
    let refused = || Refused::new(reply::invalid_client("client authentication failed"), basic);
    let app = caches
        .app(store, &presented.client_id, now, max_age)
        .await
        .map_err(|e| Refused::new(reply::store_failure(&e), basic))?;
    let Some(app) = app.filter(|a| a.active) else {
        return Err(refused());
    };
    let ok = match (app.client_type, &presented.secret) {
        (ClientType::Confidential, Some(secret)) => {
            app.secret_matches(&secret_hash(secret.expose()), now)
        }
        (ClientType::Public, None) => true,
        _ => false,
    };
    if ok { Ok(app) } else { Err(refused()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn basic(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(value))).unwrap(),
        );
        h
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let p = presented(&basic("my%20app:s%3Acret+x"), &Params::default())
            .ok()
            .unwrap();
        assert_eq!(p.client_id, "my app");
        assert_eq!(p.secret.as_ref().unwrap().expose(), "s:cret x");
        assert_eq!(p.method, Method::Basic);
        let p = presented(&basic("public:"), &Params::default())
            .ok()
            .unwrap();
        assert!(p.secret.is_none(), "an empty password is no secret");
    }

    #[test]
    fn one_method_per_request() {
        let both = Params::parse("client_secret=x").unwrap();
        let r = presented(&basic("a:b"), &both).err().unwrap();
        assert_eq!(
            r.error.code,
            crate::oauth::error::OAuthErrorCode::InvalidRequest
        );
        let other_id = Params::parse("client_id=c").unwrap();
        assert!(presented(&basic("a:b"), &other_id).is_err());
        let same_id = Params::parse("client_id=a").unwrap();
        assert!(presented(&basic("a:b"), &same_id).is_ok());
        let mut twice = basic("a:b");
        twice.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        assert!(presented(&twice, &Params::default()).is_err());
    }

    #[test]
    fn malformed_basic_is_invalid_client_with_a_challenge() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        let r = presented(&h, &Params::default()).err().unwrap();
        assert_eq!(
            r.error.code,
            crate::oauth::error::OAuthErrorCode::InvalidClient
        );
        assert!(r.basic);
        assert!(presented(&basic("no-colon"), &Params::default()).is_err());
    }

    #[test]
    fn post_and_none_are_told_by_the_secret_parameter() {
        let p = presented(
            &HeaderMap::new(),
            &Params::parse("client_id=a&client_secret=s").unwrap(),
        )
        .ok()
        .unwrap();
        assert_eq!(p.method, Method::Post);
        let p = presented(&HeaderMap::new(), &Params::parse("client_id=a").unwrap())
            .ok()
            .unwrap();
        assert_eq!(p.method, Method::None);
        assert!(presented(&HeaderMap::new(), &Params::default()).is_err());
    }

    #[test]
    fn a_logged_client_id_is_cut_at_64_characters() {
        let huge = "é".repeat(64 * 1024);
        let logged = LogId(&huge).to_string();
        assert_eq!(logged.chars().count(), 65, "64 and an ellipsis");
        assert_eq!(LogId("webapp").to_string(), "webapp");
    }

    proptest::proptest! {
        #[test]
        fn any_authorization_header_is_answered_without_panicking(
            value in "[ -~]{0,80}",
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(header::AUTHORIZATION, v);
            }
            let _ = presented(&h, &Params::default());
            let mut h = HeaderMap::new();
            let encoded = format!("Basic {}", STANDARD.encode(&raw));
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(&encoded).unwrap());
            let _ = presented(&h, &Params::default());
        }
    }
}
