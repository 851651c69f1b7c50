//! `[auth]` (SPEC §5): bearer validation on proxied routes (RFC 6750, RFC 9068) and the
//! identity headers an upstream receives, each key with its default and its checks.

use std::time::Duration;

use toml_edit::TableLike;

use super::decode::Decoder;

/// `[auth]`: bearer validation on proxied routes.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// `cache_ttl`: validated tokens are cached at most this long (and never past their
    /// expiry). Default `"30s"`.
    pub cache_ttl: Duration,
    /// `cache_max_entries`: the most validations the cache holds. Default 100000 (0 to
    /// 100000000).
    pub cache_max_entries: u64,
    /// `negative_cache_ttl`: invalid tokens are remembered this long. Default `"5s"`.
    pub negative_cache_ttl: Duration,
    /// `leeway`: the clock skew allowed on `exp` / `nbf`. Default `"5s"`.
    pub leeway: Duration,
    /// `revocation_propagation`: how soon a revocation reaches the other replicas sharing
    /// PostgreSQL. Default `"1s"` (at least 10ms).
    pub revocation_propagation: Duration,
    /// `user_header`: the header that tells the upstream the user's name. Default
    /// `"X-Auth-User"`.
    pub user_header: http::HeaderName,
    /// `scopes_header`: the header that tells the upstream the granted scopes (expanded).
    /// Default `"X-Auth-Scopes"`.
    pub scopes_header: http::HeaderName,
    /// `client_id_header`: the header that tells the upstream the client's id. Default
    /// `"X-Auth-Client-Id"`.
    pub client_id_header: http::HeaderName,
    /// `groups_header`: the header that tells the upstream the caller's groups,
    /// space-separated (SPEC §7.3). Default `"X-Auth-Groups"`.
    pub groups_header: http::HeaderName,
    /// `forward_groups`: the only groups the upstream is told about; empty forwards every
    /// group. Default `[]`.
    pub forward_groups: Vec<String>,
}

/// The keys of `[auth]`, in the order of [`AuthConfig`].
pub(super) const KEYS: &[&str] = &[
    "cache_ttl",
    "cache_max_entries",
    "negative_cache_ttl",
    "leeway",
    "revocation_propagation",
    "user_header",
    "scopes_header",
    "client_id_header",
    "groups_header",
    "forward_groups",
];

/// `[auth]` (the table `t`), with its defaults.
pub(super) fn decode(d: &mut Decoder<'_>, t: &dyn TableLike) -> AuthConfig {
    let s = "auth";
    d.reject_unknown(t, s, KEYS);
    AuthConfig {
        cache_ttl: d.duration(t, s, "cache_ttl", "30s", Duration::ZERO),
        cache_max_entries: d.int(t, s, "cache_max_entries", 100_000, 0, 100_000_000),
        negative_cache_ttl: d.duration(t, s, "negative_cache_ttl", "5s", Duration::ZERO),
        leeway: d.duration(t, s, "leeway", "5s", Duration::ZERO),
        revocation_propagation: d.duration(
            t,
            s,
            "revocation_propagation",
            "1s",
            Duration::from_millis(10),
        ),
        user_header: header_name(d, t, "user_header", "X-Auth-User"),
        scopes_header: header_name(d, t, "scopes_header", "X-Auth-Scopes"),
        client_id_header: header_name(d, t, "client_id_header", "X-Auth-Client-Id"),
        groups_header: header_name(d, t, "groups_header", "X-Auth-Groups"),
        forward_groups: super::users::group_names(d, t, s, "forward_groups"),
    }
}

fn header_name(
    d: &mut Decoder<'_>,
    t: &dyn TableLike,
    key: &str,
    default: &'static str,
) -> http::HeaderName {
    let fallback = http::HeaderName::from_static(lowercase_static(default));
    let Some((name, span)) = d.opt_str(t, "auth", key) else {
        return fallback;
    };
    match http::HeaderName::from_bytes(name.as_bytes()) {
        Ok(h) => h,
        Err(_) => {
            d.error(
                span,
                format!("auth.{key}: '{name}' is not a valid header name"),
            );
            fallback
        }
    }
}

fn lowercase_static(name: &'static str) -> &'static str {
    match name {
        "X-Auth-User" => "x-auth-user",
        "X-Auth-Scopes" => "x-auth-scopes",
        "X-Auth-Groups" => "x-auth-groups",
        _ => "x-auth-client-id",
    }
}
