//! The part of the gateway that a SIGHUP replaces atomically: routes, upstream clients, header
//! policy, and the TLS certificate. A new config is validated and fully built before anything
//! is swapped, so a broken one changes nothing; in-flight requests keep the state they began
//! with.

use std::path::Path;
use std::sync::Arc;

use super::{Gateway, StartupError, files};
use crate::config::{Config, ConfigErrors};
use crate::metrics::Metrics;

/// What each request reads once, at its start: the config, its users and scopes, and the
/// proxy's state built from it.
pub struct Snapshot {
    pub config: Config,
    pub directory: crate::auth::directory::Directory,
    /// The identity providers of the config; a reload keeps each unchanged one's discovery.
    pub providers: crate::auth::providers::Providers,
    pub proxy: crate::proxy::pipeline::State,
}

impl Snapshot {
    /// `previous`: the state being replaced on a reload, whose upstream connections carry over
    /// where they still fit.
    pub fn build(
        config: Config,
        metrics: &Metrics,
        previous: Option<&Snapshot>,
    ) -> Result<Self, StartupError> {
        let issuers = crate::auth::foreign::ForeignIssuers::build(
            &config,
            metrics,
            previous.map(|p| &*p.directory.issuers),
        )
        .map_err(StartupError::Directory)?;
        let directory = crate::auth::directory::Directory::from_config(&config)
            .map_err(StartupError::Directory)?
            .with_issuers(Arc::new(issuers));
        let proxy = crate::proxy::pipeline::State::build(
            &config,
            &directory,
            metrics,
            previous.map(|p| &p.proxy),
        )?;
        let providers = crate::auth::providers::Providers::build(
            &config,
            metrics,
            previous.map(|p| &p.providers),
        );
        Ok(Self {
            config,
            directory,
            providers,
            proxy,
        })
    }
}

/// Why a reload was refused (the running state is unchanged).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Build(#[from] StartupError),
}

impl Gateway {
    /// Reads `path` again and swaps in what it describes, or returns why not. Settings bound
    /// at start (listeners, store, limits) are reported as needing a restart.
    pub fn reload(&self, path: &Path) -> Result<Vec<String>, ReloadError> {
        let config = Config::load(path)?;
        // The signing keys are checked but not swapped: they are bound at start.
        let tls = files::load(&config)?.tls;
        let warnings = restart_only_changes(&self.config, &config);
        let live = Snapshot::build(config, &self.metrics, Some(&self.live.load()))?;
        // `[[apps]]` are synced into the store after the swap (`apps::config_sync`): refuse
        // here a config whose apps could not be.
        crate::apps::config_sync::validate_apps(
            &live.config,
            crate::apps::config_sync::live_rules(&live.config, &live.directory),
        )
        .map_err(StartupError::Apps)?;
        self.certs.replace(tls);
        self.live.store(Arc::new(live));
        // Users or their scopes may have changed: validate every token afresh.
        self.auth.flush();
        Ok(warnings)
    }
}

/// Settings a running process cannot change, by name, when the new config changes them.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let (o, n) = (&old.server, &new.server);
    let checks: [(&str, bool); 15] = [
        ("server.listen", o.listen != n.listen),
        ("server.plain_listen", o.plain_listen != n.plain_listen),
        (
            "server.http_redirect_listen",
            o.http_redirect_listen != n.http_redirect_listen,
        ),
        ("server.public_url", o.public_url != n.public_url),
        (
            "server.max_connections",
            o.max_connections != n.max_connections,
        ),
        (
            "server.max_header_bytes",
            o.max_header_bytes != n.max_header_bytes,
        ),
        ("server.max_headers", o.max_headers != n.max_headers),
        (
            "server.header_read_timeout",
            o.header_read_timeout != n.header_read_timeout,
        ),
        ("server.idle_timeout", o.idle_timeout != n.idle_timeout),
        (
            "server.shutdown_grace",
            o.shutdown_grace != n.shutdown_grace,
        ),
        ("admin.listen", old.admin.listen != new.admin.listen),
        ("store.url", old.store.url != new.store.url),
        (
            "store.max_connections",
            old.store.max_connections != new.store.max_connections,
        ),
        // The token cache's capacity; its TTLs and every other auth.* value follow a reload.
        (
            "auth.cache_max_entries",
            old.auth.cache_max_entries != new.auth.cache_max_entries,
        ),
        // Checked by the reload (files::load) but bound at start.
        (
            "oauth.signing_keys",
            old.oauth.signing_keys != new.oauth.signing_keys,
        ),
    ];
    checks
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| format!("{name} changed: takes effect after a restart"))
        .collect()
}
