//! The users and scopes of the current config (SPEC §2), resolved once per config load so a
//! request looks a user up in a map and tests scopes as bitsets.

use std::collections::HashMap;
use std::sync::Arc;

use super::jwt::VerifyPolicy;
use super::scope::{ScopeDef, ScopeSet, Scopes};
use crate::config::{Config, Secret};
use std::time::Duration;

/// One configured user.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub password_hash: Secret,
    /// The most this user may hold, expanded.
    pub max_scope: Scopes,
    /// `groups` of the user's config entry.
    pub groups: super::principal::Groups,
}

/// Users and the scope set of one config.
#[derive(Clone, Debug)]
pub struct Directory {
    pub scopes: ScopeSet,
    users: HashMap<String, User>,
    /// How bearer tokens are validated under this config (`auth.*`, the issuer and audience).
    pub tokens: TokenRules,
}

/// The `auth.*` settings of one config, read by every validation made under it, so that a
/// reload changes them for the next request (SPEC §1).
#[derive(Clone, Debug)]
pub struct TokenRules {
    /// Issuer, audience and leeway of the gateway's own access tokens (RFC 9068).
    pub policy: VerifyPolicy,
    /// `auth.cache_ttl`: the longest a validation is reused.
    pub cache_ttl: Duration,
    /// `auth.negative_cache_ttl`: how long a refusal is reused.
    pub negative_ttl: Duration,
    /// `auth.leeway`: clock skew allowed on `exp`.
    pub leeway: Duration,
    /// `auth.revocation_propagation`: how long a replica that stopped hearing the others may
    /// still answer.
    pub propagation: Duration,
}

impl TokenRules {
    pub fn from_config(config: &Config) -> Self {
        let auth = &config.auth;
        Self {
            policy: VerifyPolicy {
                issuer: config.server.public_url.clone(),
                audience: config.audience().to_owned(),
                leeway: auth.leeway.as_secs(),
            },
            cache_ttl: auth.cache_ttl,
            negative_ttl: auth.negative_cache_ttl,
            leeway: auth.leeway,
            propagation: auth.revocation_propagation,
        }
    }
}

impl Directory {
    /// Resolves the config's scopes and users; the config check has already refused unknown
    /// names, so an error here means the two disagree (a bug) and is reported as such.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let scopes = if config.scopes.is_empty() {
            ScopeSet::default_confluence()
        } else {
            let defs = config
                .scopes
                .iter()
                .map(|s| ScopeDef {
                    name: s.name.clone(),
                    description: s.description.clone(),
                    implies: s.implies.clone(),
                })
                .collect();
            ScopeSet::new(defs).map_err(|e| format!("scopes: {e}"))?
        };
        let mut users = HashMap::with_capacity(config.users.len());
        for u in &config.users {
            let max = scopes
                .lookup(&u.max_scope)
                .ok_or_else(|| format!("users.{}: unknown scope {}", u.name, u.max_scope))?;
            let user = User {
                name: u.name.clone(),
                password_hash: u.password_hash.clone(),
                max_scope: scopes.expand(max),
                groups: u.groups.iter().map(|g| Arc::from(g.as_str())).collect(),
            };
            users.insert(u.name.clone(), user);
        }
        Ok(Self {
            scopes,
            users,
            tokens: TokenRules::from_config(config),
        })
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }
}
