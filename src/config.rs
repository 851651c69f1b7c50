//! The TOML configuration (SPEC §5): a typed model where every key has a documented default,
//! unknown keys are errors, durations read like "30s", `${ENV}` stands for secrets, and
//! validation reports every problem at once with file:line:column.

mod decode;
pub mod duration;
mod sections;
pub use sections::KNOWN_KEYS;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use decode::{ConfigError, ConfigErrors, MAX_DURATION};
use ipnet::IpNet;

/// A value that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
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

/// The whole configuration, after validation.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (paths in it are relative to its folder).
    pub path: PathBuf,
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub oauth: OAuthConfig,
    pub auth: AuthConfig,
    pub login: LoginConfig,
    /// `[[scopes]]`; empty means the default READ ⊂ WRITE ⊂ ADMIN ⊂ SYSTEM_ADMIN set.
    pub scopes: Vec<ScopeEntry>,
    pub users: Vec<UserEntry>,
    pub apps: Vec<AppEntry>,
    pub routes: Vec<RouteConfig>,
    /// Where each value is in the file, for problems found after decoding (`error_at`).
    locations: decode::Locations,
}

/// `[server]`: the public listener.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// TLS listener address. Default `0.0.0.0:8443`.
    pub listen: SocketAddr,
    /// Required: the issuer and the base of every redirect, e.g. `https://gateway.example.com`.
    pub public_url: String,
    /// CIDRs whose `X-Forwarded-*` / `Forwarded` headers are kept. Default none.
    pub trusted_proxies: Vec<IpNet>,
    /// How long in-flight requests may run after SIGTERM. Default 30s.
    pub shutdown_grace: Duration,
    /// A client must send its request head within this. Default 10s.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this. Default 60s.
    pub idle_timeout: Duration,
    /// A request body to one of the gateway's own endpoints that stalls this long gets 408.
    /// Default 30s.
    pub request_body_timeout: Duration,
    /// Connections beyond this wait in the kernel's backlog. Default 10000.
    pub max_connections: usize,
    /// Largest request head in bytes; over it: 431. Default 16384.
    pub max_header_bytes: usize,
    /// Most header fields in one request; over it: 431. Default 100. (gatehouse extension)
    pub max_headers: usize,
    /// Plain listener that answers 308 to https. Default off.
    pub http_redirect_listen: Option<SocketAddr>,
    /// Plain-HTTP listener serving everything, for use behind a TLS-terminating load balancer
    /// on a private network. Default off. (gatehouse extension)
    pub plain_listen: Option<SocketAddr>,
    pub tls: TlsConfig,
}

/// `[server.tls]`: PEM files.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[admin]`: the plain-HTTP admin listener (`/metrics`, `/healthz`, `/readyz`).
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Default `127.0.0.1:9090`.
    pub listen: SocketAddr,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `gatehouse=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[store]`.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `sqlite://…` or `postgres://…`; may hold a password, so it is a secret.
    pub url: Secret,
    pub max_connections: u32,
}

/// `[oauth]`: the authorization server.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    pub signing_keys: Vec<PathBuf>,
    /// `aud` of access tokens; `server.public_url` when empty in the file.
    pub audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub refresh_grace: Duration,
    pub code_ttl: Duration,
    pub require_pkce: RequirePkce,
    pub allow_plain_pkce: bool,
    pub allow_insecure_redirect_uris: bool,
    pub allow_query_credentials: bool,
    pub confluence_paths: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequirePkce {
    Public,
    All,
    None,
}

/// `[auth]`: bearer validation on proxied routes.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub cache_ttl: Duration,
    pub cache_max_entries: u64,
    pub negative_cache_ttl: Duration,
    pub leeway: Duration,
    pub revocation_propagation: Duration,
    pub user_header: http::HeaderName,
    pub scopes_header: http::HeaderName,
    pub client_id_header: http::HeaderName,
}

/// `[login]`: sessions and throttling.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    pub max_failures: u32,
    pub window: Duration,
    pub ban: Duration,
    pub session_ttl: Duration,
}

/// `[[scopes]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeEntry {
    pub name: String,
    pub description: String,
    pub implies: Vec<String>,
}

/// `[[users]]`.
#[derive(Clone, Debug)]
pub struct UserEntry {
    pub name: String,
    pub password_hash: Secret,
    pub max_scope: String,
}

/// `[[apps]]`: apps managed by the config.
#[derive(Clone, Debug)]
pub struct AppEntry {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub display_name: String,
    pub description: String,
    pub logo_uri: String,
    pub client_type: ClientType,
    pub allowed_callback_urls: Vec<String>,
    pub allowed_logout_urls: Vec<String>,
    pub allowed_web_origins: Vec<String>,
    pub scopes: Vec<String>,
    pub skip_consent: bool,
    pub active: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientType {
    Confidential,
    Public,
}

/// `[[routes]]`.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// Path prefix, matched on whole segments. Always starts with `/`, no trailing `/`
    /// (except the root route `/`).
    pub path: String,
    /// Lower-case host without port; empty matches any host.
    pub host: String,
    pub upstream: http::Uri,
    pub auth: AuthMode,
    /// The scope each method needs (`*` for the rest); empty for `auth = "none"`.
    pub scopes: BTreeMap<String, String>,
    pub timeout: Duration,
    pub forward_authorization: bool,
    pub assertion: bool,
    pub upstream_ca: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    Bearer,
    Session,
    None,
}

impl RouteConfig {
    /// The label used in metrics and logs: the configured path, prefixed by the host if any.
    pub fn label(&self) -> String {
        if self.host.is_empty() {
            self.path.clone()
        } else {
            format!("{}{}", self.host, self.path)
        }
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
                message: format!("cannot read config: {e}"),
            }])
        })?;
        Self::parse(&src, path, &|name| std::env::var(name).ok())
    }

    /// Parses and validates `src` as if read from `path`; `env` looks up `${VARS}`.
    pub fn parse(
        src: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        sections::decode(src, path, env)
    }

    /// A problem with the value of `key` (dotted, with indexes: `server.tls.cert`,
    /// `oauth.signing_keys[1]`, `routes[0].upstream_ca`) found after decoding, such as a file
    /// it names that does not parse: located where the file gives that value, and prefixed by
    /// the key as every config problem is.
    pub fn error_at(&self, key: &str, problem: impl fmt::Display) -> ConfigError {
        let (line, column) = self.locations.of(key);
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            message: format!("{key}: {problem}"),
        }
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
mod tests;
