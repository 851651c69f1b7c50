//! `gatehouse token create` (SPEC §1): mints a personal access token straight into the store of
//! `--config`, for a user of that config, with a scope no more than the user's `max_scope`.
//! The way to bootstrap the first admin before any token exists.

use std::time::SystemTime;

use super::pats::{MintError, MintRequest, mint};
use crate::auth::directory::Directory;
use crate::auth::secret::Secret;
use crate::config::Config;
use crate::store::{PersonalToken, Store};

/// The command's arguments.
#[derive(Clone, Debug)]
pub struct TokenCreate {
    pub user: String,
    pub scope: String,
    pub ttl: Option<String>,
    pub name: Option<String>,
}

/// Why the command failed; `Usage` exits 2, `Failed` exits 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Failed(_) => 1,
        }
    }
}

/// Mints the PAT and returns it with its record; the caller prints the token once.
pub async fn token_create(
    config: &Config,
    args: &TokenCreate,
    now: SystemTime,
) -> Result<(Secret, PersonalToken), CliError> {
    let directory = Directory::from_config(config).map_err(CliError::Usage)?;
    let user = directory.user(&args.user).ok_or_else(|| {
        CliError::Usage(format!(
            "--user: no user '{}' in {}",
            args.user,
            config.path.display()
        ))
    })?;
    let store = Store::open_with_ca(
        config.store.url.expose(),
        &config.base_dir(),
        config.store.max_connections.min(2),
        config.store.tls_ca.as_deref(),
    )
    .await
    .map_err(|e| CliError::Failed(format!("store: {e}")))?;
    let request = MintRequest {
        user: &user.name,
        display_name: args.name.as_deref().unwrap_or("cli"),
        scope: &args.scope,
        ttl: args.ttl.as_deref(),
        not_after: None,
    };
    let result = mint(&store, &directory.scopes, user.max_scope, &request, now).await;
    store.close().await;
    result.map_err(|e| match e {
        MintError::Invalid(v) => CliError::Usage(
            v.0.iter()
                .map(|x| format!("{}: {}", flag(&x.field), x.rule))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        MintError::Exceeds { asked, allowed } => CliError::Usage(format!(
            "--scope: {asked} exceeds {}'s max_scope ({allowed})",
            user.name
        )),
        MintError::Rng => CliError::Failed("the OS random number generator failed".into()),
        MintError::Store(e) => CliError::Failed(format!("store: {e}")),
    })
}

fn flag(field: &str) -> &str {
    match field {
        "displayName" => "--name",
        "scope" => "--scope",
        "ttl" => "--ttl",
        other => other,
    }
}
