//! Access tokens of other issuers (SPEC §7.2): the `[[issuers]]` of one config with their key
//! sets and introspection clients, and the check of one token against them — a JWT verified
//! with the issuer's JWKS (`federation::KeySet`), an opaque token through the issuer's RFC 7662
//! endpoint — ending in a principal: `username_prefix` + `username_claim`, the client id,
//! the scopes mapped by `scope_map` and capped at `max_scope`, and the groups.
//!
//! Key sets outlive a reload when their issuer's keys would be fetched the same way (issuer,
//! `jwks_uri`, `ca` and its content, `jwks_refresh`), so a SIGHUP does not refetch every JWKS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::AuthFailure;
use super::directory::Directory;
use super::principal::{Credential, Groups, Interned, Principal};
use super::scope::Scopes;
use crate::config::{Config, IssuerConfig, SELF_ISSUER};
use crate::federation::{Expectations, KeySet, KeySource, Outbound, Trust, VerifyError};
use crate::metrics::Metrics;

/// One `[[issuers]]` entry, ready to check tokens.
pub struct ForeignIssuer {
    pub config: IssuerConfig,
    /// `config.name`, as every principal of this issuer holds it (shared).
    name: Arc<str>,
    keys: Arc<KeySet>,
    client: Outbound,
    /// The `ca` file's content when the set was built (a reload compares it).
    ca_pem: Option<Vec<u8>>,
    introspections: prometheus::IntCounterVec,
}

impl std::fmt::Debug for ForeignIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeignIssuer")
            .field("name", &self.config.name)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The issuers of one config, by name and by `iss`.
#[derive(Debug, Default)]
pub struct ForeignIssuers {
    by_name: HashMap<String, Arc<ForeignIssuer>>,
    by_iss: HashMap<String, Arc<ForeignIssuer>>,
}

/// Whose tokens a caller accepts.
#[derive(Clone, Copy, Debug)]
pub enum Accept<'a> {
    /// A proxied route: its `issuers` (`"self"` and names of `[[issuers]]`), and the longest a
    /// check may wait on an issuer (the route's timeout).
    Route {
        issuers: &'a [String],
        wait: Duration,
    },
    /// The management API, PAT creation and the authorize endpoint: gatehouse's own
    /// credentials and the issuers with `allow_management = true`.
    Management,
}

/// The longest the gateway's own endpoints wait on an issuer.
const MANAGEMENT_WAIT: Duration = Duration::from_secs(10);

impl Accept<'_> {
    pub(super) fn own(&self) -> bool {
        match self {
            Self::Route { issuers, .. } => issuers.iter().any(|i| i == SELF_ISSUER),
            Self::Management => true,
        }
    }

    pub(super) fn issuer(&self, issuer: &ForeignIssuer) -> bool {
        match self {
            Self::Route { issuers, .. } => issuers.contains(&issuer.config.name),
            Self::Management => issuer.config.allow_management,
        }
    }

    /// Whether a principal (cached or fresh) may be used here.
    pub(super) fn principal(&self, principal: &Principal, issuers: &ForeignIssuers) -> bool {
        match &principal.credential {
            Credential::Foreign { issuer, .. } => issuers
                .by_name
                .get(&**issuer)
                .is_some_and(|i| self.issuer(i)),
            _ => self.own(),
        }
    }

    pub(super) fn wait(&self) -> Duration {
        match self {
            Self::Route { wait, .. } => *wait,
            Self::Management => MANAGEMENT_WAIT,
        }
    }
}

/// What a bearer token looks like before it is checked.
pub(super) enum Shape<'a> {
    /// A JWT whose `iss` is this configured issuer.
    Foreign(&'a Arc<ForeignIssuer>),
    /// A JWT of an `iss` no `[[issuers]]` entry has (maybe gatehouse's own).
    OtherJwt,
    /// Not a JWT at all.
    Opaque,
}

impl ForeignIssuers {
    /// The issuers of `config`, reusing the key sets of `previous` where they fit, and starting
    /// their background refresh when a runtime is running (not for `check-config`).
    pub fn build(
        config: &Config,
        metrics: &Metrics,
        previous: Option<&ForeignIssuers>,
    ) -> Result<Self, String> {
        let mut out = Self::default();
        for entry in &config.issuers {
            let ca_pem = match &entry.ca {
                None => None,
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    format!(
                        "issuers.{}.ca: cannot read {}: {e}",
                        entry.name,
                        path.display()
                    )
                })?),
            };
            let trust = match (&entry.ca, &ca_pem) {
                (Some(path), Some(pem)) => Trust::Pem {
                    source: path.display().to_string(),
                    pem: pem.clone(),
                },
                _ => Trust::System,
            };
            let kept = previous
                .and_then(|p| p.by_name.get(&entry.name))
                .filter(|old| {
                    old.config.issuer == entry.issuer
                        && old.config.jwks_uri == entry.jwks_uri
                        && old.config.jwks_refresh == entry.jwks_refresh
                        && old.config.ca == entry.ca
                        && old.ca_pem == ca_pem
                });
            let (keys, client) = match kept {
                Some(old) => (old.keys.clone(), old.client.clone()),
                None => {
                    let client = Outbound::new(&trust, crate::federation::client::DEFAULT_TIMEOUT)
                        .map_err(|e| format!("issuers.{}: {e}", entry.name))?;
                    let source = if entry.jwks_uri.is_empty() {
                        KeySource::Discover
                    } else {
                        KeySource::Uri(entry.jwks_uri.clone())
                    };
                    let keys = KeySet::new(
                        &entry.name,
                        &entry.issuer,
                        source,
                        client.clone(),
                        metrics.jwks_refreshes.clone(),
                    );
                    if tokio::runtime::Handle::try_current().is_ok() {
                        keys.start(entry.jwks_refresh);
                    }
                    (keys, client)
                }
            };
            let issuer = Arc::new(ForeignIssuer {
                config: entry.clone(),
                name: Arc::from(entry.name.as_str()),
                keys,
                client,
                ca_pem,
                introspections: metrics.introspections.clone(),
            });
            out.by_name.insert(entry.name.clone(), issuer.clone());
            out.by_iss.insert(entry.issuer.clone(), issuer);
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The issuer named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ForeignIssuer>> {
        self.by_name.get(name)
    }

    /// What `token` is: a JWT of one of these issuers, another JWT, or opaque. Reads the
    /// unverified `iss` only to choose the keys; nothing else of it is trusted.
    pub(super) fn shape(&self, token: &str) -> Shape<'_> {
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Shape::Opaque;
        };
        let iss = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<IssOnly>(&bytes).ok())
            .and_then(|claims| claims.iss);
        match iss.and_then(|iss| self.by_iss.get(&iss)) {
            Some(issuer) => Shape::Foreign(issuer),
            None => Shape::OtherJwt,
        }
    }

    /// The issuers `accept` names that introspect opaque tokens, in its order.
    pub(super) fn introspecting<'a>(&'a self, accept: &Accept<'_>) -> Vec<&'a Arc<ForeignIssuer>> {
        let named: Vec<&Arc<ForeignIssuer>> = match accept {
            Accept::Route { issuers, .. } => {
                issuers.iter().filter_map(|n| self.by_name.get(n)).collect()
            }
            Accept::Management => {
                let mut all: Vec<_> = self.by_name.values().collect();
                all.sort_by(|a, b| a.config.name.cmp(&b.config.name));
                all.into_iter()
                    .filter(|i| i.config.allow_management)
                    .collect()
            }
        };
        named
            .into_iter()
            .filter(|i| !i.config.introspection_endpoint.is_empty())
            .collect()
    }
}

#[derive(serde::Deserialize)]
struct IssOnly {
    iss: Option<String>,
}

impl ForeignIssuer {
    /// The issuer's key set (shared with the previous config's when a reload kept it).
    pub fn keys(&self) -> &Arc<KeySet> {
        &self.keys
    }

    /// Verifies a JWT of this issuer and maps it to a principal.
    pub(super) async fn check_jwt(
        &self,
        token: &str,
        directory: &Directory,
        interned: &Interned,
        now: SystemTime,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let now_unix = crate::clock::unix_seconds(now);
        let expect = Expectations {
            issuer: &self.config.issuer,
            audiences: &self.config.audiences,
            algorithms: &self.config.algorithms,
            leeway: directory.tokens.leeway.as_secs(),
            now_unix,
        };
        let verified = self.keys.verify(token, &expect).await.map_err(|e| {
            tracing::debug!(issuer = %self.config.name, error = %e, "foreign token refused");
            match e {
                VerifyError::NoKeys => AuthFailure::Unavailable,
                VerifyError::Expired => AuthFailure::Expired,
                VerifyError::Malformed => AuthFailure::Invalid("malformed"),
                VerifyError::Algorithm(_) => AuthFailure::Invalid("bad_algorithm"),
                VerifyError::KidRequired | VerifyError::UnknownKid(_) => {
                    AuthFailure::Invalid("unknown_kid")
                }
                VerifyError::KeyMismatch(_) => AuthFailure::Invalid("bad_algorithm"),
                VerifyError::NotYetValid => AuthFailure::Invalid("not_yet_valid"),
                VerifyError::Rejected(_) => AuthFailure::Invalid("bad_signature"),
            }
        })?;
        // RFC 9068 §4: at+jwt; plain JWT or no typ from issuers that predate it. An ID token
        // (typ JWT) still fails here unless its aud is one of the configured audiences.
        let typ_ok = verified.header.typ.as_deref().is_none_or(|t| {
            let t = t.strip_prefix("application/").unwrap_or(t);
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("jwt")
        });
        if !typ_ok {
            return Err(AuthFailure::Invalid("malformed"));
        }
        self.principal(&verified.claims, directory, interned, now)
    }

    /// Asks the issuer's RFC 7662 endpoint about an opaque token: `Ok(None)` when it says
    /// inactive or not for us.
    pub(super) async fn introspect(
        &self,
        token: &str,
        directory: &Directory,
        interned: &Interned,
        now: SystemTime,
    ) -> Result<Option<Arc<Principal>>, AuthFailure> {
        let c = &self.config;
        let secret = c
            .introspection_client_secret
            .as_ref()
            .map(|s| s.expose())
            .unwrap_or_default();
        let count = |result: &str| {
            self.introspections
                .with_label_values(&[c.name.as_str(), result])
                .inc();
        };
        let reply = self
            .client
            .post_form(
                &c.introspection_endpoint,
                &[("token", token), ("token_type_hint", "access_token")],
                Some((&c.introspection_client_id, secret)),
            )
            .await
            .map_err(|e| {
                count("error");
                tracing::warn!(issuer = %c.name, error = %e, "introspection failed");
                AuthFailure::Unavailable
            })?;
        let Some(claims) = reply.json.as_object().filter(|_| reply.status.is_success()) else {
            count("error");
            tracing::warn!(issuer = %c.name, status = %reply.status, "introspection answered without a JSON object");
            return Err(AuthFailure::Unavailable);
        };
        if claims.get("active") != Some(&Value::Bool(true)) {
            count("inactive");
            return Ok(None);
        }
        // The answer speaks for this issuer and this gateway, or it is not ours to use.
        let iss_ok = claims
            .get("iss")
            .is_none_or(|iss| iss.as_str() == Some(&c.issuer));
        let aud_ok = claims
            .get("aud")
            .is_none_or(|aud| audience_matches(aud, &c.audiences));
        let exp = claims.get("exp").and_then(Value::as_i64);
        let now_unix = crate::clock::unix_seconds(now);
        let leeway = i64::try_from(directory.tokens.leeway.as_secs()).unwrap_or(0);
        if !iss_ok || !aud_ok || exp.is_some_and(|exp| exp.saturating_add(leeway) < now_unix) {
            count("inactive");
            return Ok(None);
        }
        count("active");
        let mut claims = claims.clone();
        if exp.is_none() {
            // No expiry given: good for as long as the cache keeps answers.
            let until = now_unix
                .saturating_add(i64::try_from(directory.tokens.cache_ttl.as_secs()).unwrap_or(0));
            claims.insert("exp".into(), Value::from(until));
        }
        self.principal(&claims, directory, interned, now).map(Some)
    }

    /// The principal a verified token or an active introspection answer stands for.
    fn principal(
        &self,
        claims: &Map<String, Value>,
        directory: &Directory,
        interned: &Interned,
        now: SystemTime,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let c = &self.config;
        let Some(name) = claims.get(&c.username_claim).and_then(Value::as_str) else {
            tracing::debug!(issuer = %c.name, claim = %c.username_claim, "foreign token without its username claim");
            return Err(AuthFailure::Invalid("malformed"));
        };
        let user = format!("{}{name}", c.username_prefix);
        if directory.user(&user).is_some() {
            // Identities from different places never merge silently (a config user's name
            // from an issuer would speak for that user upstream).
            tracing::warn!(issuer = %c.name, user = %user, "a token of another issuer names a config user; refused (set username_prefix)");
            return Err(AuthFailure::Invalid("name_clash"));
        }
        let client = match claims
            .get("client_id")
            .or_else(|| claims.get("azp"))
            .and_then(Value::as_str)
        {
            Some(id) => Some(
                interned
                    .client(id)
                    .ok_or(AuthFailure::Invalid("malformed"))?,
            ),
            None => None,
        };
        let theirs: Vec<&str> = match claims.get(&c.scope_claim) {
            Some(Value::String(s)) => s.split(' ').filter(|s| !s.is_empty()).collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let scopes = directory.scopes.expand(
            theirs
                .iter()
                .filter_map(|s| c.scope_map.get(*s))
                .filter_map(|ours| directory.scopes.lookup(ours))
                .fold(Scopes::EMPTY, Scopes::union),
        );
        let cap = directory
            .scopes
            .lookup(&c.max_scope)
            .map_or(Scopes::EMPTY, |m| directory.scopes.expand(m));
        let scopes = scopes.intersection(cap);
        let groups: Groups = match claims.get(&c.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(Arc::from)
                .collect(),
            _ => super::principal::no_groups(),
        };
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        let expires_at =
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(exp).unwrap_or(0));
        if expires_at <= now {
            return Err(AuthFailure::Expired);
        }
        let credential = Credential::Foreign {
            issuer: self.name.clone(),
            client,
        };
        super::authenticator::shared_principal(
            interned, directory, credential, &user, groups, scopes, expires_at,
        )
    }
}

fn audience_matches(aud: &Value, audiences: &[String]) -> bool {
    match aud {
        Value::String(a) => audiences.iter().any(|x| x == a),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|a| audiences.iter().any(|x| x == a)),
        _ => false,
    }
}
