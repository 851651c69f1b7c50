//! Recent changes that cached validations depend on — revoked tokens, grants and PATs,
//! deleted, deactivated or changed apps — each stamped with the sequence number of its
//! event, so that a validation cached before a change that concerns it is not used again:
//! the next request is validated afresh against the store, which already holds the change
//! (SPEC §2, §3.4, RFC 7009 §2). A change is kept as long as a cached validation can outlive
//! it (`auth.cache_ttl` plus a margin); forgetting it later changes nothing, since every
//! validation it could concern has left the cache by then.
//!
//! This check runs on every cache hit, so it must cost next to nothing: one atomic load when
//! nothing changed since the validation was cached, otherwise one lookup per id the principal
//! carries, without allocating.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;

use super::principal::{Credential, Id, Principal};

/// The revocation sets stay on moka: they are small (a change is kept for `auth.cache_ttl`
/// only) and want a time-to-live per set, which moka gives.
pub struct Revoked {
    tokens: Cache<Id, u64>,
    grants: Cache<Id, u64>,
    apps: Cache<String, u64>,
    pats: Cache<Id, u64>,
    /// Changes recorded so far; each id above maps to the number of its latest change.
    seq: AtomicU64,
}

impl Revoked {
    pub fn new(keep: Duration) -> Self {
        fn set<K: std::hash::Hash + Eq + Send + Sync + 'static>(keep: Duration) -> Cache<K, u64> {
            Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(keep)
                .build()
        }
        Self {
            tokens: set(keep),
            grants: set(keep),
            apps: set(keep),
            pats: set(keep),
            seq: AtomicU64::new(0),
        }
    }

    /// Changes recorded so far. A validation reads it before it reads the store; its result
    /// is stale if [`Revoked::covers`] finds a later change.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    pub fn token(&self, jti: &str) {
        self.insert(&self.tokens, Id::new(jti));
    }
    pub fn grant(&self, id: &str) {
        self.insert(&self.grants, Id::new(id));
    }
    pub fn app(&self, client_id: &str) {
        self.insert(&self.apps, client_id.to_owned());
    }
    pub fn pat(&self, id: &str) {
        self.insert(&self.pats, Id::new(id));
    }

    fn insert<K: std::hash::Hash + Eq + Send + Sync + 'static>(&self, set: &Cache<K, u64>, id: K) {
        // Count first: a reader that sees the count but not yet the entry behaves as it would
        // have an instant before the change (whose caller is still waiting for its answer).
        let n = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        set.insert(id, n);
    }

    /// Whether a change recorded after `since` (a [`Revoked::seq`] reading) concerns `p`.
    pub fn covers(&self, p: &Principal, since: u64) -> bool {
        if self.seq.load(Ordering::Acquire) <= since {
            return false;
        }
        let changed = |n: Option<u64>| n.is_some_and(|n| n > since);
        match &p.credential {
            Credential::AppToken {
                client,
                grant_id,
                jti,
            } => {
                changed(self.tokens.get(jti))
                    || changed(self.grants.get(grant_id))
                    || changed(self.apps.get(&*client.id))
            }
            Credential::PersonalToken { id } => changed(self.pats.get(id)),
            // Sessions end in the store; foreign tokens are revoked at their issuer (SPEC §7.2:
            // cached no longer than auth.cache_ttl).
            Credential::Session | Credential::Foreign { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use std::sync::Arc;

    use super::*;
    use crate::auth::principal::ClientRef;
    use crate::auth::scope::Scopes;

    /// An app's token (`app-1`, `grant-1`, `jti-1`), or with `pat` a PAT of that id.
    fn principal(pat: Option<&str>) -> Principal {
        let credential = match pat {
            Some(id) => Credential::PersonalToken { id: id.into() },
            None => Credential::AppToken {
                client: Arc::new(ClientRef::new("app-1").unwrap()),
                grant_id: "grant-1".into(),
                jti: "jti-1".into(),
            },
        };
        Principal::unshared(
            credential,
            "alice",
            crate::auth::principal::no_groups(),
            Scopes::EMPTY,
            "",
            SystemTime::UNIX_EPOCH,
        )
        .unwrap()
    }

    const KEEP: Duration = Duration::from_secs(60);

    #[test]
    fn each_kind_of_change_covers_the_principal_and_other_ids_do_not() {
        let (token, pat) = (principal(None), principal(Some("pat-1")));
        let r = Revoked::new(KEEP);
        assert!(!r.covers(&token, r.seq()), "nothing changed yet");
        r.token("jti-2");
        r.grant("grant-2");
        r.app("app-2");
        r.pat("pat-2");
        assert!(!r.covers(&token, 0) && !r.covers(&pat, 0), "other ids only");
        type Change = fn(&Revoked, &str);
        let cases: [(Change, &str, &Principal); 4] = [
            (Revoked::token, "jti-1", &token),
            (Revoked::grant, "grant-1", &token),
            (Revoked::app, "app-1", &token),
            (Revoked::pat, "pat-1", &pat),
        ];
        for (change, id, p) in cases {
            let r = Revoked::new(KEEP);
            let since = r.seq();
            change(&r, id);
            assert!(r.covers(p, since), "{id}");
        }
        let r = Revoked::new(KEEP);
        r.pat("pat-1");
        assert!(
            !r.covers(&principal(None), 0),
            "no PAT id: the PAT set is not consulted"
        );
    }

    /// What decides is the order of the change and the validation, not the time between
    /// them: a validation that started after the change read the store with the change in it.
    #[test]
    fn a_change_covers_only_validations_that_started_before_it() {
        let p = principal(None);
        let r = Revoked::new(KEEP);
        let before = r.seq();
        r.app("app-1");
        let after = r.seq();
        assert!(r.covers(&p, before));
        assert!(!r.covers(&p, after), "validated after the change");
        r.token("unrelated");
        assert!(
            !r.covers(&p, after),
            "a later change of something else does not bring it back"
        );
        r.grant("grant-1");
        assert!(r.covers(&p, after), "a second change of its own does");
        assert!(r.covers(&p, before));
    }
}
