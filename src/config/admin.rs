//! `[admin]` (SPEC §5): the admin listener's one key, its default and its check.

use std::net::SocketAddr;

use toml_edit::TableLike;

use super::decode::Decoder;

/// `[admin]`: the plain-HTTP admin listener (`/metrics`, `/healthz`, `/readyz`).
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// `listen`: the admin listener's address; keep it private. Default `"127.0.0.1:9090"`.
    pub listen: SocketAddr,
}

/// The keys of `[admin]`, in the order of [`AdminConfig`].
pub(super) const KEYS: &[&str] = &["listen"];

/// `[admin]` (the table `t`), with its default.
pub(super) fn decode(d: &mut Decoder<'_>, t: &dyn TableLike) -> AdminConfig {
    d.reject_unknown(t, "admin", KEYS);
    AdminConfig {
        listen: d
            .socket_addr(t, "admin", "listen", "127.0.0.1:9090", false)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9090))),
    }
}
