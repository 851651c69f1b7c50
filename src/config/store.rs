//! `[store]` (SPEC §5, §6): where the gateway keeps its state, the pool size, their defaults
//! and their checks.

use toml_edit::TableLike;

use super::Secret;
use super::decode::Decoder;

/// `[store]`: the database.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `url`: `sqlite://rel/path.db` (relative to the config file's folder),
    /// `sqlite:///abs/path.db` or `postgres://…`; may hold a password, so it is a secret.
    /// Default `"sqlite:///var/lib/gatehouse/gatehouse.db"`.
    pub url: Secret,
    /// `max_connections`: the connection pool's size. Default 16 (1 to 1000).
    pub max_connections: u32,
}

/// The keys of `[store]`, in the order of [`StoreConfig`].
pub(super) const KEYS: &[&str] = &["url", "url_file", "max_connections"];

/// `[store]` (the table `t`), with its defaults.
pub(super) fn decode(d: &mut Decoder<'_>, t: &dyn TableLike) -> StoreConfig {
    d.reject_unknown(t, "store", KEYS);
    let (url, span) = d
        .opt_secret(t, "store", "url")
        .unwrap_or_else(|| ("sqlite:///var/lib/gatehouse/gatehouse.db".into(), None));
    let known = ["sqlite://", "postgres://", "postgresql://"];
    if !known.iter().any(|p| url.starts_with(p)) {
        d.error(span, "store.url: must start with sqlite:// or postgres://");
    } else if url == "sqlite://" {
        d.error(
            span,
            "store.url: 'sqlite://' names no database file (e.g. \"sqlite://data/gatehouse.db\")",
        );
    }
    StoreConfig {
        url: Secret::new(url),
        max_connections: d.int(t, "store", "max_connections", 16, 1, 1_000) as u32,
    }
}
