//! The OpenID Connect providers of the running config (SPEC §7.1): for each, the HTTPS client
//! of its trust (`ca`), its metadata (OpenID Connect Discovery 1.0) and its signing keys, found
//! in the background from the start and retried until found — a provider that is down never
//! blocks the start, a reload, or another way to sign in; its button says so until then. A
//! reload keeps the state of every provider whose issuer and `ca` it leaves unchanged.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus::IntCounterVec;

use crate::config::{Config, IdentityProviderEntry};
use crate::federation::{KeySet, KeySource, Metadata, Outbound, Trust, client::DEFAULT_TIMEOUT};
use crate::metrics::Metrics;

/// The first pause after a failed discovery; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// The longest pause between two discovery attempts while a provider is unknown.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// The shortest time between two discovery attempts, however often its button is clicked.
const MIN_GAP: Duration = Duration::from_secs(1);
/// How often a provider's keys are fetched again (and at once for an unknown `kid`).
const KEYS_REFRESH: Duration = Duration::from_secs(15 * 60);

/// The `result` labels of `gatehouse_idp_logins_total`: a bounded set, each counted from 0 for
/// every configured provider.
pub const LOGIN_RESULTS: &[&str] = &[
    "success",
    "denied",
    "provider_error",
    "invalid_state",
    "replayed",
    "mixup",
    "exchange_failed",
    "invalid_token",
    "invalid_claims",
    "clash",
    "unavailable",
];

/// A provider whose metadata is known: where to send the browser and where to exchange the
/// code, and the keys its ID tokens are checked with.
pub struct Ready {
    pub metadata: Metadata,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub keys: Arc<KeySet>,
}

/// One provider's live state.
pub struct Provider {
    issuer: String,
    ca: Option<PathBuf>,
    /// The HTTPS client for its trust; `None` when its `ca` could not be loaded (logged).
    pub client: Option<Outbound>,
    ready: ArcSwapOption<Ready>,
    /// Wakes the discovery task early: someone wants to sign in through it now.
    wake: Arc<tokio::sync::Notify>,
}

impl Provider {
    /// The metadata and keys, once discovery has succeeded.
    pub fn ready(&self) -> Option<Arc<Ready>> {
        self.ready.load_full()
    }

    /// Asks the discovery task, while the provider is still unknown, to try again now rather
    /// than at its next retry (at most one attempt a second).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }
}

/// Every configured provider's state, by name.
#[derive(Default)]
pub struct Providers {
    by_name: HashMap<String, Arc<Provider>>,
}

impl Providers {
    /// The providers of `config`: those of `previous` with the same issuer and `ca` are kept
    /// as they are; the others start discovering now (in the background, when a tokio runtime
    /// is running: `check-config` discovers nothing).
    pub fn build(config: &Config, metrics: &Metrics, previous: Option<&Providers>) -> Self {
        let mut by_name = HashMap::with_capacity(config.identity_providers.len());
        for entry in &config.identity_providers {
            for result in LOGIN_RESULTS {
                metrics
                    .idp_logins
                    .with_label_values(&[entry.name.as_str(), result]);
            }
            let kept = previous
                .and_then(|p| p.by_name.get(&entry.name))
                .filter(|p| p.issuer == entry.issuer && p.ca == entry.ca);
            let provider = match kept {
                Some(p) => Arc::clone(p),
                None => start(entry, metrics.jwks_refreshes.clone()),
            };
            by_name.insert(entry.name.clone(), provider);
        }
        Self { by_name }
    }

    /// The provider of this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.by_name.get(name)
    }
}

/// A provider's state, and the background task that discovers it.
fn start(entry: &IdentityProviderEntry, refreshes: IntCounterVec) -> Arc<Provider> {
    let client = client_for(entry);
    let provider = Arc::new(Provider {
        issuer: entry.issuer.clone(),
        ca: entry.ca.clone(),
        client,
        ready: ArcSwapOption::empty(),
        wake: Arc::new(tokio::sync::Notify::new()),
    });
    if provider.client.is_some()
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        let weak = Arc::downgrade(&provider);
        runtime.spawn(discover_until_found(weak, entry.name.clone(), refreshes));
    }
    provider
}

fn client_for(entry: &IdentityProviderEntry) -> Option<Outbound> {
    let trust = match &entry.ca {
        None => Trust::System,
        Some(path) => match Trust::from_ca_path(path) {
            Ok(trust) => trust,
            Err(e) => {
                tracing::error!(provider = %entry.name, error = %e, "identity provider: its ca cannot be read; sign-in through it is off");
                return None;
            }
        },
    };
    match Outbound::new(&trust, DEFAULT_TIMEOUT) {
        Ok(client) => Some(client),
        Err(e) => {
            tracing::error!(provider = %entry.name, error = %e, "identity provider: no HTTPS client; sign-in through it is off");
            None
        }
    }
}

/// Discovers the provider's metadata, retrying with a growing pause until it answers (or the
/// provider is dropped by a reload), then starts the refresh of its keys.
async fn discover_until_found(provider: Weak<Provider>, name: String, refreshes: IntCounterVec) {
    let mut pause = FIRST_RETRY;
    loop {
        let Some(p) = provider.upgrade() else { return };
        let Some(client) = p.client.clone() else {
            return;
        };
        match discover(&client, &p.issuer, &name, refreshes.clone()).await {
            Ok(ready) => {
                tracing::info!(provider = %name, issuer = %p.issuer, "identity provider discovered");
                ready.keys.start(KEYS_REFRESH);
                p.ready.store(Some(Arc::new(ready)));
                return;
            }
            Err(reason) => {
                tracing::warn!(provider = %name, issuer = %p.issuer, error = %reason, retry_in = ?pause, "identity provider: discovery failed; its sign-in button waits");
            }
        }
        let wake = Arc::clone(&p.wake);
        drop(p);
        let tried = tokio::time::Instant::now();
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = wake.notified() => tokio::time::sleep_until(tried + MIN_GAP).await,
        }
        pause = (pause * 2).min(MAX_RETRY);
    }
}

async fn discover(
    client: &Outbound,
    issuer: &str,
    name: &str,
    refreshes: IntCounterVec,
) -> Result<Ready, String> {
    let metadata = crate::federation::discovery::discover(client, issuer)
        .await
        .map_err(|e| e.to_string())?;
    let missing = |member: &str| format!("the metadata has no {member}");
    let authorization_endpoint = metadata
        .authorization_endpoint
        .clone()
        .ok_or_else(|| missing("authorization_endpoint"))?;
    let token_endpoint = metadata
        .token_endpoint
        .clone()
        .ok_or_else(|| missing("token_endpoint"))?;
    let jwks_uri = metadata
        .jwks_uri
        .clone()
        .ok_or_else(|| missing("jwks_uri"))?;
    let keys = KeySet::new(
        name,
        issuer,
        KeySource::Uri(jwks_uri),
        client.clone(),
        refreshes,
    );
    Ok(Ready {
        metadata,
        authorization_endpoint,
        token_endpoint,
        keys,
    })
}
