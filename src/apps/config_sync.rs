//! `[[apps]]` from the config into the store (SPEC §3.3, §5): at start (and on reload), each
//! declared app is created or updated by client id with the same validation rules as the API,
//! marked `managedBy: config` (read-only through the API), and config-managed apps no longer
//! declared are deleted, revoking their grants and tokens. An app whose client id belongs to an
//! API-managed app is refused, never taken over.

use std::time::SystemTime;

use super::validate::{self, Rules, Violations};
use crate::auth::directory::Directory;
use crate::config::{AppEntry, ClientType as ConfigClientType, Config};
use crate::store::{
    App, AppCursor, ClientType, ManagedBy, Store, new_app_id, secret_hash, truncate_to_micros,
};

/// Who `createdBy`/`updatedBy` name for config-managed apps.
pub const CONFIG_ACTOR: &str = "config";

/// What a sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub upserted: usize,
    pub deleted: usize,
}

/// Brings the store's config-managed apps in line with `config.apps`; the error is one line
/// per problem, naming the config field.
pub async fn sync(
    store: &Store,
    config: &Config,
    rules: Rules<'_>,
    now: SystemTime,
) -> Result<SyncReport, String> {
    let now = truncate_to_micros(now);
    validate_apps(config, rules)?;
    let mut report = SyncReport::default();
    for (i, entry) in config.apps.iter().enumerate() {
        store
            .upsert_config_app(&to_app(entry, now))
            .await
            .map_err(|e| match e.kind() {
                crate::store::StoreErrorKind::Conflict => format!(
                    "apps[{i}].client_id: '{}' belongs to an app managed by the API; delete that app or pick another client id",
                    entry.client_id
                ),
                _ => format!("apps[{i}]: {e}"),
            })?;
        report.upserted += 1;
    }
    for stale in stale_config_apps(store, config).await? {
        store
            .delete_app(&stale.id)
            .await
            .map_err(|e| format!("deleting config app '{}': {e}", stale.client_id))?;
        tracing::warn!(client_id = %stale.client_id, app = %stale.id, "oauth app removed from the config: deleted, its grants and tokens revoked");
        report.deleted += 1;
    }
    Ok(report)
}

/// Checks every `[[apps]]` entry by the API's rules (without touching the store), so a reload
/// can refuse a config whose apps could not be synced.
pub fn validate_apps(config: &Config, rules: Rules<'_>) -> Result<(), String> {
    let mut v = Violations::default();
    for (i, entry) in config.apps.iter().enumerate() {
        check(&mut v, &format!("apps[{i}]"), entry, rules);
    }
    if v.is_empty() {
        Ok(())
    } else {
        Err(v.message())
    }
}

/// The rules a loaded config implies (its scope set and redirect policy).
pub fn live_rules<'a>(config: &Config, directory: &'a Directory) -> Rules<'a> {
    Rules {
        scopes: &directory.scopes,
        allow_insecure: config.oauth.allow_insecure_redirect_uris,
    }
}

/// [`sync`] with the rules of a loaded config (its scope set and redirect policy).
pub async fn sync_live(
    store: &Store,
    config: &Config,
    directory: &Directory,
    now: SystemTime,
) -> Result<SyncReport, String> {
    let report = sync(store, config, live_rules(config, directory), now).await?;
    if report != SyncReport::default() {
        tracing::info!(
            upserted = report.upserted,
            deleted = report.deleted,
            "oauth apps from the config are in the store"
        );
    }
    Ok(report)
}

fn check(v: &mut Violations, at: &str, e: &AppEntry, rules: Rules<'_>) {
    validate::display_name(v, &format!("{at}.display_name"), &e.display_name);
    validate::description(v, &format!("{at}.description"), &e.description);
    validate::logo_uri(v, &format!("{at}.logo_uri"), &e.logo_uri, rules);
    let callbacks = format!("{at}.allowed_callback_urls");
    validate::url_list(v, &callbacks, &e.allowed_callback_urls, true, rules);
    let logout = format!("{at}.allowed_logout_urls");
    validate::url_list(v, &logout, &e.allowed_logout_urls, false, rules);
    let origins = format!("{at}.allowed_web_origins");
    validate::origin_list(v, &origins, &e.allowed_web_origins, rules);
    validate::scope_list(v, &format!("{at}.scopes"), &e.scopes, rules);
}

fn to_app(e: &AppEntry, now: SystemTime) -> App {
    let client_type = match e.client_type {
        ConfigClientType::Confidential => ClientType::Confidential,
        ConfigClientType::Public => ClientType::Public,
    };
    App {
        // Kept only on insert: an update keeps the stored id and create time.
        id: new_app_id(),
        client_id: e.client_id.clone(),
        display_name: e.display_name.clone(),
        description: e.description.clone(),
        logo_uri: e.logo_uri.clone(),
        allowed_callback_urls: e.allowed_callback_urls.clone(),
        allowed_logout_urls: e.allowed_logout_urls.clone(),
        allowed_web_origins: e.allowed_web_origins.clone(),
        client_type,
        secret_hash: e
            .client_secret
            .as_ref()
            .filter(|_| client_type == ClientType::Confidential)
            .map(|s| secret_hash(s.expose())),
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        scopes: e.scopes.clone(),
        skip_consent: e.skip_consent,
        active: e.active,
        labels: Default::default(),
        created_by: CONFIG_ACTOR.to_owned(),
        updated_by: CONFIG_ACTOR.to_owned(),
        create_time: now,
        update_time: now,
        managed_by: ManagedBy::Config,
    }
}

async fn stale_config_apps(store: &Store, config: &Config) -> Result<Vec<App>, String> {
    let mut stale = Vec::new();
    let mut after: Option<AppCursor> = None;
    loop {
        let page = store
            .list_apps(after.as_ref(), 500)
            .await
            .map_err(|e| format!("listing apps: {e}"))?;
        let Some(last) = page.last() else { break };
        after = Some(AppCursor::after(last));
        let done = page.len() < 500;
        stale.extend(page.into_iter().filter(|a| {
            a.managed_by == ManagedBy::Config
                && !config.apps.iter().any(|c| c.client_id == a.client_id)
        }));
        if done {
            break;
        }
    }
    Ok(stale)
}
