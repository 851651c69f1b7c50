//! Recently revoked grants, tokens, apps and PATs, kept as long as a cached validation can
//! outlive them (`auth.cache_ttl` plus a margin), so a cache hit for a revoked token is refused
//! on the very next request. After that, the cached entry has expired and the store decides.

use std::time::Duration;

use moka::sync::Cache;

use super::principal::Principal;

pub struct Revoked {
    ids: Cache<String, ()>,
}

impl Revoked {
    pub fn new(keep: Duration) -> Self {
        Self {
            ids: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(keep)
                .build(),
        }
    }

    pub fn token(&self, jti: &str) {
        self.ids.insert(format!("t:{jti}"), ());
    }
    pub fn grant(&self, id: &str) {
        self.ids.insert(format!("g:{id}"), ());
    }
    pub fn app(&self, client_id: &str) {
        self.ids.insert(format!("a:{client_id}"), ());
    }
    pub fn pat(&self, id: &str) {
        self.ids.insert(format!("p:{id}"), ());
    }

    /// Whether anything `p` depends on was revoked recently. Free when nothing was.
    pub fn covers(&self, p: &Principal) -> bool {
        if self.ids.entry_count() == 0 && self.ids.iter().next().is_none() {
            return false;
        }
        let has = |prefix: &str, id: &Option<String>| {
            id.as_ref()
                .is_some_and(|id| self.ids.contains_key(&format!("{prefix}{id}")))
        };
        has("t:", &p.jti)
            || has("g:", &p.grant_id)
            || has("a:", &p.client_id)
            || has("p:", &p.pat_id)
    }
}
