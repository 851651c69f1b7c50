//! `[store]` (SPEC §5, §6, §7.5): where the gateway keeps its state, the pool size, the CA
//! that PostgreSQL's certificate must chain to, their defaults and their checks.

use std::path::{Path, PathBuf};

use toml_edit::TableLike;

use super::Secret;
use super::decode::Decoder;
use super::sections::resolve;

/// The values of libpq's `sslmode`, which `store.url` may carry.
pub const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// `[store]`: the database.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `url`: `sqlite://rel/path.db` (relative to the config file's folder),
    /// `sqlite:///abs/path.db` or `postgres://…`; may hold a password, so it is a secret.
    /// Default `"sqlite:///var/lib/gatehouse/gatehouse.db"`.
    pub url: Secret,
    /// `max_connections`: the connection pool's size. Default 16 (1 to 1000).
    pub max_connections: u32,
    /// `tls_ca`: PostgreSQL only, a PEM file of the CA(s) the server's certificate must chain
    /// to, resolved against the config's folder; `None` (`""`) trusts the system's roots.
    /// With it, `sslmode=require` verifies the chain as `verify-ca` does (as libpq does when
    /// it has a root certificate). Default `""`.
    pub tls_ca: Option<PathBuf>,
}

/// The keys of `[store]`, in the order of [`StoreConfig`].
pub(super) const KEYS: &[&str] = &["url", "url_file", "max_connections", "tls_ca"];

/// `[store]` (the table `t`), with its defaults; `tls_ca` is resolved against `base`.
pub(super) fn decode(d: &mut Decoder<'_>, t: &dyn TableLike, base: &Path) -> StoreConfig {
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
    } else if let Some(mode) = ssl_mode(&url)
        && !SSL_MODES.contains(&mode.to_ascii_lowercase().as_str())
    {
        // The URL may hold a password: name only the parameter.
        d.error(
            span,
            format!(
                "store.url: sslmode '{mode}' is not one of {}",
                SSL_MODES.join(", ")
            ),
        );
    }
    let tls_ca = d.str(t, "store", "tls_ca", "");
    StoreConfig {
        url: Secret::new(url),
        max_connections: d.int(t, "store", "max_connections", 16, 1, 1_000) as u32,
        tls_ca: (!tls_ca.is_empty()).then(|| resolve(base, &tls_ca)),
    }
}

/// The `sslmode` query parameter of a `postgres://` URL, if it has one (the last one wins, as
/// with libpq).
fn ssl_mode(url: &str) -> Option<String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return None;
    }
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "sslmode" || k == "ssl-mode")
        .map(|(_, v)| v.into_owned())
        .last()
}
