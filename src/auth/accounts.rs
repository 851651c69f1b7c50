//! Who a user name stands for (SPEC §2, §7.1): a `[[users]]` entry of the config, or a person
//! who signed in through one of its `[[identity_providers]]`. Every check of a session, a
//! consent, a code, a refresh, an access token or a PAT resolves its user here, so a federated
//! user does everything a config user does, with the scope and groups of their latest login
//! under the provider rules of the current config.

use super::directory::Directory;
use super::principal::Groups;
use super::scope::Scopes;
use crate::store::{Store, StoreError};
use std::sync::Arc;

/// A user the current config recognises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The user name (`sub`, `X-Auth-User`).
    pub name: String,
    /// The most the user may hold, expanded.
    pub max_scope: Scopes,
    /// The user's groups (config `groups`, or the provider's groups claim at the latest login).
    pub groups: Groups,
    /// Where the user comes from.
    pub origin: Origin,
}

/// Where an [`Account`] comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A `[[users]]` entry.
    Config,
    /// A login through the `[[identity_providers]]` entry of this name.
    Provider(String),
}

/// The account named `name`: the config's user of that name, else the federated user of
/// that name while their provider is configured and still lets them in. `None` for anyone
/// else (a removed user: their credentials stop working, as a config user's do).
pub async fn resolve(
    directory: &Directory,
    store: &Store,
    name: &str,
) -> Result<Option<Account>, StoreError> {
    if let Some(user) = directory.user(name) {
        return Ok(Some(Account {
            name: user.name.clone(),
            max_scope: user.max_scope,
            groups: user.groups.clone(),
            origin: Origin::Config,
        }));
    }
    let Some(federated) = store.get_federated_user(name).await? else {
        return Ok(None);
    };
    let Some(rules) = directory.provider(&federated.provider) else {
        return Ok(None);
    };
    if !rules.allows(&federated.groups) {
        return Ok(None);
    }
    Ok(Some(Account {
        max_scope: rules.max_scope(&federated.groups),
        name: federated.name,
        groups: federated
            .groups
            .iter()
            .map(|g| Arc::from(g.as_str()))
            .collect(),
        origin: Origin::Provider(federated.provider),
    }))
}

/// Ends every federated user whose name is now a `[[users]]` entry of `config` (at start and
/// after a reload): their sessions, grants and PATs were made for another identity and must
/// not pass to the config user (SECURITY.md: identities never merge silently). Each clash is
/// logged by name; returns how many were ended.
pub async fn retire_clashing_federated_users(
    store: &Store,
    config: &crate::config::Config,
    now: std::time::SystemTime,
) -> Result<usize, StoreError> {
    let mut retired = 0;
    for user in &config.users {
        if store.retire_federated_user(&user.name, now).await? {
            tracing::error!(user = %user.name, "a [[users]] entry has the name of a user who signed in through an identity provider: that user's sessions, grants and personal tokens were ended (identities are never merged)");
            retired += 1;
        }
    }
    Ok(retired)
}
