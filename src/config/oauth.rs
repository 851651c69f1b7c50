//! `[oauth]` (SPEC §5): the authorization server's keys (RFC 6749, RFC 7636 PKCE, RFC 9068
//! access tokens), each with its default and its checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{Item, TableLike};

use super::decode::Decoder;
use super::sections::{array_len, resolve};

/// `[oauth]`: the authorization server.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    /// `signing_keys`: Ed25519 PKCS#8 PEM files, relative to the config file's folder; the
    /// first signs, all verify. Required: at least one.
    pub signing_keys: Vec<PathBuf>,
    /// `audience`: the `aud` of access tokens; `server.public_url` when empty in the file (see
    /// [`Config::audience`](super::Config::audience)). Default `""`.
    pub audience: String,
    /// `access_token_ttl`: how long an access token lives. Default `"2h"` (at least 1s).
    pub access_token_ttl: Duration,
    /// `refresh_token_ttl`: how long a refresh token lives. Default `"30d"` (at least 1s).
    pub refresh_token_ttl: Duration,
    /// `refresh_grace`: a repeated refresh within this gets the same answer and never revokes
    /// the grant. Default `"10s"`.
    pub refresh_grace: Duration,
    /// `code_ttl`: how long an authorization code may wait to be exchanged. Default `"60s"`
    /// (at least 1s).
    pub code_ttl: Duration,
    /// `require_pkce`: which clients must use PKCE. Default `"public"`.
    pub require_pkce: RequirePkce,
    /// `allow_plain_pkce`: accept `code_challenge_method=plain` as well as `S256`. Default
    /// `true`.
    pub allow_plain_pkce: bool,
    /// `allow_insecure_redirect_uris`: accept `http://` redirect URIs for any host
    /// (development only). Default `false`.
    pub allow_insecure_redirect_uris: bool,
    /// `allow_query_credentials`: accept `client_secret` in a URL (a Confluence habit).
    /// Default `false`.
    pub allow_query_credentials: bool,
    /// `confluence_paths`: serve the `/rest/oauth2/{latest,1.0}/{authorize,token}` aliases.
    /// Default `true`.
    pub confluence_paths: bool,
}

/// `oauth.require_pkce`: which clients must send a PKCE challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequirePkce {
    /// `"public"`: public clients only (the default).
    Public,
    /// `"all"`: every client.
    All,
    /// `"none"`: PKCE is optional for every client.
    None,
}

/// The keys of `[oauth]`, in the order of [`OAuthConfig`].
pub(super) const KEYS: &[&str] = &[
    "signing_keys",
    "audience",
    "access_token_ttl",
    "refresh_token_ttl",
    "refresh_grace",
    "code_ttl",
    "require_pkce",
    "allow_plain_pkce",
    "allow_insecure_redirect_uris",
    "allow_query_credentials",
    "confluence_paths",
];

/// `[oauth]` (the table `t`), with its defaults; paths are resolved against `base`.
pub(super) fn decode(d: &mut Decoder<'_>, t: &dyn TableLike, base: &Path) -> OAuthConfig {
    let s = "oauth";
    d.reject_unknown(t, s, KEYS);
    let what = "the path of an Ed25519 PEM key file";
    let keys = d.non_empty_str_array(t, s, "signing_keys", what);
    if keys.is_empty() && array_len(t, "signing_keys") == 0 {
        let span = t.get("signing_keys").and_then(Item::span);
        d.error(span, "oauth.signing_keys: required: at least one Ed25519 PEM key file (the first signs, all verify)");
    }
    let require_pkce = match d.opt_str(t, s, "require_pkce") {
        None => RequirePkce::Public,
        Some((v, span)) => {
            match v.as_str() {
                "public" => RequirePkce::Public,
                "all" => RequirePkce::All,
                "none" => RequirePkce::None,
                _ => {
                    d.error(span, format!("oauth.require_pkce: must be \"public\", \"all\" or \"none\", got \"{v}\""));
                    RequirePkce::Public
                }
            }
        }
    };
    OAuthConfig {
        signing_keys: keys.iter().map(|(k, _)| resolve(base, k)).collect(),
        audience: d.str(t, s, "audience", ""),
        access_token_ttl: d.duration(t, s, "access_token_ttl", "2h", Duration::from_secs(1)),
        refresh_token_ttl: d.duration(t, s, "refresh_token_ttl", "30d", Duration::from_secs(1)),
        refresh_grace: d.duration(t, s, "refresh_grace", "10s", Duration::ZERO),
        code_ttl: d.duration(t, s, "code_ttl", "60s", Duration::from_secs(1)),
        require_pkce,
        allow_plain_pkce: d.bool(t, s, "allow_plain_pkce", true),
        allow_insecure_redirect_uris: d.bool(t, s, "allow_insecure_redirect_uris", false),
        allow_query_credentials: d.bool(t, s, "allow_query_credentials", false),
        confluence_paths: d.bool(t, s, "confluence_paths", true),
    }
}
