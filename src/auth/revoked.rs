//! Recently revoked grants, tokens, apps and PATs, kept as long as a cached validation can
//! outlive them (`auth.cache_ttl` plus a margin), so a cache hit for a revoked token is refused
//! on the very next request (RFC 7009 §2, SPEC §3.4). After that, the cached entry has expired
//! and the store decides.
//!
//! This check runs on every cache hit, so it must cost next to nothing: one atomic load and a
//! clock read while nothing was revoked within the keep period, otherwise one lookup per id
//! the principal carries, without allocating.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use super::principal::Principal;

/// `last_revocation` before the first revocation.
const NEVER: u64 = u64::MAX;

pub struct Revoked {
    tokens: Cache<String, ()>,
    grants: Cache<String, ()>,
    apps: Cache<String, ()>,
    pats: Cache<String, ()>,
    keep: Duration,
    /// Milliseconds after `origin` of the latest revocation: while it is older than `keep`,
    /// every set above is empty (their entries live `keep`), so a hit needs no lookup.
    last_revocation: AtomicU64,
    origin: Instant,
}

impl Revoked {
    pub fn new(keep: Duration) -> Self {
        let set = || {
            Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(keep)
                .build()
        };
        Self {
            tokens: set(),
            grants: set(),
            apps: set(),
            pats: set(),
            keep,
            last_revocation: AtomicU64::new(NEVER),
            origin: Instant::now(),
        }
    }

    pub fn token(&self, jti: &str) {
        self.insert(&self.tokens, jti);
    }
    pub fn grant(&self, id: &str) {
        self.insert(&self.grants, id);
    }
    pub fn app(&self, client_id: &str) {
        self.insert(&self.apps, client_id);
    }
    pub fn pat(&self, id: &str) {
        self.insert(&self.pats, id);
    }

    fn insert(&self, set: &Cache<String, ()>, id: &str) {
        // Mark first: a reader that sees the mark but not yet the entry behaves as it would
        // have an instant before the revocation; never the other way round.
        self.last_revocation
            .store(self.millis_since_origin(), Ordering::Release);
        set.insert(id.to_owned(), ());
    }

    fn millis_since_origin(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Whether anything `p` depends on was revoked recently.
    pub fn covers(&self, p: &Principal) -> bool {
        let last = self.last_revocation.load(Ordering::Acquire);
        if last == NEVER {
            return false;
        }
        let keep_ms = u64::try_from(self.keep.as_millis()).unwrap_or(u64::MAX);
        // One extra millisecond for the rounding of both readings.
        if self.millis_since_origin() > last.saturating_add(keep_ms).saturating_add(1) {
            return false;
        }
        let has = |set: &Cache<String, ()>, id: &Option<String>| {
            id.as_deref().is_some_and(|id| set.contains_key(id))
        };
        has(&self.tokens, &p.jti)
            || has(&self.grants, &p.grant_id)
            || has(&self.apps, &p.client_id)
            || has(&self.pats, &p.pat_id)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::auth::principal::PrincipalKind;
    use crate::auth::scope::Scopes;

    fn principal(pat: Option<&str>) -> Principal {
        Principal::new(
            PrincipalKind::AccessToken,
            "alice".into(),
            Some("app-1".into()),
            Scopes::EMPTY,
            "",
            SystemTime::now(),
            Some("grant-1".into()),
            Some("jti-1".into()),
            pat.map(str::to_owned),
        )
        .unwrap()
    }

    #[test]
    fn each_kind_of_revocation_covers_the_principal_and_other_ids_do_not() {
        let p = principal(Some("pat-1"));
        let r = Revoked::new(Duration::from_secs(60));
        assert!(!r.covers(&p), "nothing revoked yet");
        r.token("jti-2");
        r.grant("grant-2");
        r.app("app-2");
        r.pat("pat-2");
        assert!(!r.covers(&p), "other ids only");
        type Revoke = fn(&Revoked, &str);
        let cases: [(Revoke, &str); 4] = [
            (Revoked::token, "jti-1"),
            (Revoked::grant, "grant-1"),
            (Revoked::app, "app-1"),
            (Revoked::pat, "pat-1"),
        ];
        for (revoke, id) in cases {
            let r = Revoked::new(Duration::from_secs(60));
            revoke(&r, id);
            assert!(r.covers(&p), "{id}");
        }
        let r = Revoked::new(Duration::from_secs(60));
        r.pat("pat-1");
        assert!(
            !r.covers(&principal(None)),
            "no PAT id: the PAT set is not consulted"
        );
    }

    #[test]
    fn a_revocation_is_forgotten_after_the_keep_period() {
        let p = principal(None);
        let r = Revoked::new(Duration::from_millis(30));
        r.grant("grant-1");
        assert!(r.covers(&p));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!r.covers(&p));
    }
}
