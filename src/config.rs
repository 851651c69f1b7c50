//! The TOML configuration (SPEC §5, §7.5): a typed model where every key has a documented
//! default, unknown keys are errors, durations read like "30s", `${ENV}` stands for secrets,
//! `GATEHOUSE_<SECTION>_<KEY>` variables override the file, and validation reports every
//! problem at once with file:line:column (or the variable's name).

mod decode;
pub mod duration;
mod sections;

// One file per section: its struct, its keys with their defaults and doc comments, and the
// decoder that checks them.
mod admin;
mod apps;
mod auth;
mod forward_auth;
mod identity_providers;
mod issuers;
mod log;
mod login;
mod oauth;
mod routes;
mod scopes;
mod server;
mod store;
mod users;

use std::fmt;
use std::path::{Path, PathBuf};

pub use admin::AdminConfig;
pub use apps::{AppEntry, ClientType};
pub use auth::AuthConfig;
pub use decode::{ConfigError, ConfigErrors, ENV_PREFIX, MAX_DURATION, env_name};
pub use forward_auth::ForwardAuthConfig;
pub use identity_providers::{
    ClientAuth, IdentityProviderEntry, is_provider_name, is_user_name_byte,
};
pub use issuers::{IssuerConfig, SELF_ISSUER};
pub use log::{LogConfig, LogFormat, log_filter};
pub use login::LoginConfig;
pub use oauth::{OAuthConfig, RequirePkce};
pub use routes::{AuthMode, RouteConfig};
pub use scopes::ScopeEntry;
pub use sections::KNOWN_KEYS;
pub use server::{CertKeyPair, ServerConfig, TlsConfig, is_trusted_proxy};
pub use store::StoreConfig;
pub use users::UserEntry;

/// The one secret-string type of the gateway (config values, client secrets, tokens):
/// `Debug` and `Display` print `***`, the memory is wiped on drop, and equality is
/// constant-time. Read it with [`Secret::expose`].
#[derive(Clone, Default)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(zeroize::Zeroizing::new(value.into()))
    }
    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// The whole configuration, after validation.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (paths in it are relative to its folder).
    pub path: PathBuf,
    /// `[server]`: the public listener. Required (for `public_url` and `[server.tls]`).
    pub server: ServerConfig,
    /// `[admin]`: the admin listener. Every key has a default.
    pub admin: AdminConfig,
    /// `[log]`: format and filter. Every key has a default.
    pub log: LogConfig,
    /// `[store]`: the database. Every key has a default.
    pub store: StoreConfig,
    /// `[oauth]`: the authorization server. Required (for `signing_keys`).
    pub oauth: OAuthConfig,
    /// `[auth]`: bearer validation on proxied routes. Every key has a default.
    pub auth: AuthConfig,
    /// `[login]`: sessions and throttling. Every key has a default.
    pub login: LoginConfig,
    /// `[[scopes]]`; empty means the default READ ⊂ WRITE ⊂ ADMIN ⊂ SYSTEM_ADMIN set.
    pub scopes: Vec<ScopeEntry>,
    /// `[[users]]`: password users. Default none.
    pub users: Vec<UserEntry>,
    /// `[[apps]]`: apps managed by the config. Default none.
    pub apps: Vec<AppEntry>,
    /// `[[routes]]`: what is proxied where. Default none.
    pub routes: Vec<RouteConfig>,
    /// `[[identity_providers]]`: OpenID Connect providers to sign in with. Default none.
    pub identity_providers: Vec<IdentityProviderEntry>,
    /// `[[issuers]]`: other issuers whose access tokens routes may accept (SPEC §7.2).
    /// Default none.
    pub issuers: Vec<IssuerConfig>,
    /// `[forward_auth]`: the ingress hosts behind `/auth/verify`. Every key has a default.
    pub forward_auth: ForwardAuthConfig,
    /// Where each value is in the file, for problems found after decoding (`error_at`).
    locations: decode::Locations,
}

impl Config {
    /// Reads and validates the file at `path`, with the process's `GATEHOUSE_<SECTION>_<KEY>`
    /// variables overriding its keys (SPEC §7.5): what every command that reads the config
    /// uses.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                name.starts_with(ENV_PREFIX)
                    .then(|| (name, value.to_string_lossy().into_owned()))
            })
            .collect();
        let src = Self::read(path)?;
        Self::parse_with_overrides(&src, path, &|name| std::env::var(name).ok(), &vars)
    }

    /// [`Config::load`] without the environment's overrides (`${VARS}` still expand): for a
    /// config the gateway wrote itself, such as the demo's.
    pub fn load_without_overrides(path: &Path) -> Result<Config, ConfigErrors> {
        let src = Self::read(path)?;
        Self::parse(&src, path, &|name| std::env::var(name).ok())
    }

    fn read(path: &Path) -> Result<String, ConfigErrors> {
        std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
                message: format!("cannot read config: {e}"),
                variable: None,
            }])
        })
    }

    /// Parses and validates `src` as if read from `path`; `env` looks up `${VARS}`.
    pub fn parse(
        src: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        sections::decode(src, path, env, &[])
    }

    /// [`Config::parse`] with `overrides`, the `GATEHOUSE_*` variables as (name, value) pairs
    /// (see [`Config::load`]).
    pub fn parse_with_overrides(
        src: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigErrors> {
        sections::decode(src, path, env, overrides)
    }

    /// A problem with the value of `key` (dotted, with indexes: `server.tls.cert`,
    /// `oauth.signing_keys[1]`, `routes[0].upstream_ca`) found after decoding, such as a file
    /// it names that does not parse: located where the file gives that value, and prefixed by
    /// the key as every config problem is.
    pub fn error_at(&self, key: &str, problem: impl fmt::Display) -> ConfigError {
        self.locations
            .error(&self.path, key, format!("{key}: {problem}"))
    }

    /// The folder that relative paths are relative to.
    pub fn base_dir(&self) -> PathBuf {
        base_dir_of(&self.path)
    }

    /// The `aud` for access tokens.
    pub fn audience(&self) -> &str {
        if self.oauth.audience.is_empty() {
            &self.server.public_url
        } else {
            &self.oauth.audience
        }
    }
}

pub(crate) fn base_dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod env_tests;
#[cfg(test)]
mod tests;
