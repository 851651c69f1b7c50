//! `[[apps]]` (SPEC §5, client types per RFC 6749 §2.1): the OAuth clients managed by the
//! config, each key with its default and its checks.

use std::collections::HashSet;

use toml_edit::TableLike;

use super::Secret;
use super::decode::Decoder;
use super::scopes::check_known;
use super::sections::{array_len, array_of_tables};

/// `[[apps]]`: an app (OAuth client) managed by the config, read-only through the API.
#[derive(Clone, Debug)]
pub struct AppEntry {
    /// `client_id`: URL-unreserved characters (`A-Z a-z 0-9 - . _ ~`), unique. Required.
    pub client_id: String,
    /// `client_secret`: at least 16 characters; required for a confidential app, absent for a
    /// public one.
    pub client_secret: Option<Secret>,
    /// `display_name`: the name users see on the consent page. Required.
    pub display_name: String,
    /// `description`: shown on the consent page. Default `""`.
    pub description: String,
    /// `logo_uri`: shown on the consent page when `https:` or `data:image/`. Default `""`.
    pub logo_uri: String,
    /// `client_type`: `"confidential"` or `"public"`. Default `"confidential"`.
    pub client_type: ClientType,
    /// `allowed_callback_urls`: the redirect URIs, matched exactly (any port for a loopback
    /// IP, RFC 8252 §7.3). Required: at least one.
    pub allowed_callback_urls: Vec<String>,
    /// `allowed_logout_urls`: where `/logout` may send the browser afterwards. Default none.
    pub allowed_logout_urls: Vec<String>,
    /// `allowed_web_origins`: the origins that may read the gateway's OAuth answers
    /// cross-origin (CORS). Default none.
    pub allowed_web_origins: Vec<String>,
    /// `scopes`: the scopes the app may request, each in the scope set. Default none.
    pub scopes: Vec<String>,
    /// `skip_consent`: grant without asking the user. Default `false`.
    pub skip_consent: bool,
    /// `active`: an inactive app can neither authorize nor authenticate. Default `true`.
    pub active: bool,
}

/// `apps.client_type` (RFC 6749 §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientType {
    /// `"confidential"`: authenticates with its `client_secret` (the default).
    Confidential,
    /// `"public"`: has no secret, so PKCE protects its codes.
    Public,
}

/// The keys of an `[[apps]]` entry, in the order of [`AppEntry`].
pub(super) const KEYS: &[&str] = &[
    "client_id",
    "client_secret",
    "client_secret_file",
    "display_name",
    "description",
    "logo_uri",
    "client_type",
    "allowed_callback_urls",
    "allowed_logout_urls",
    "allowed_web_origins",
    "scopes",
    "skip_consent",
    "active",
];

/// Every `[[apps]]` entry of `root`, with its defaults; `known` is the scope set.
pub(super) fn decode(
    d: &mut Decoder<'_>,
    root: &dyn TableLike,
    known: &HashSet<String>,
) -> Vec<AppEntry> {
    let mut out: Vec<AppEntry> = Vec::new();
    for (i, (t, span)) in array_of_tables(d, root, "apps").into_iter().enumerate() {
        let sec = format!("apps[{i}]");
        d.reject_unknown(t, &sec, KEYS);
        let what = "an id such as \"reporting\"";
        let (client_id, id_span) =
            d.required_non_empty_str(t, &sec, "client_id", span.clone(), what);
        if !client_id.is_empty()
            && !client_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            d.error(
                id_span.clone(),
                format!("{sec}.client_id: only URL-unreserved characters (A-Z a-z 0-9 - . _ ~)"),
            );
        }
        if !client_id.is_empty() && out.iter().any(|a| a.client_id == client_id) {
            d.error(
                id_span,
                format!("{sec}.client_id: '{client_id}' is declared twice"),
            );
        }
        let client_type = match d.opt_str(t, &sec, "client_type") {
            None => ClientType::Confidential,
            Some((v, _)) if v == "confidential" => ClientType::Confidential,
            Some((v, _)) if v == "public" => ClientType::Public,
            Some((v, s)) => {
                d.error(
                    s,
                    format!(
                        "{sec}.client_type: must be \"confidential\" or \"public\", got \"{v}\""
                    ),
                );
                ClientType::Confidential
            }
        };
        let secret = d.opt_secret(t, &sec, "client_secret");
        match (&secret, client_type) {
            (None, ClientType::Confidential)
                if t.get("client_secret").is_none() && t.get("client_secret_file").is_none() =>
            {
                d.error(
                    span.clone(),
                    format!("{sec}.client_secret: required for a confidential app"),
                )
            }
            (Some((_, s)), ClientType::Public) => d.error(
                s.clone(),
                format!("{sec}.client_secret: a public app has no secret"),
            ),
            (Some((v, s)), _) if v.len() < 16 => d.error(
                s.clone(),
                format!("{sec}.client_secret: must be at least 16 characters"),
            ),
            _ => {}
        }
        let what = "the name users see on the consent page";
        let (display_name, _) =
            d.required_non_empty_str(t, &sec, "display_name", span.clone(), what);
        let what = "a URL such as \"https://app.example.com/callback\"";
        let callbacks = d.non_empty_str_array(t, &sec, "allowed_callback_urls", what);
        if callbacks.is_empty() && array_len(t, "allowed_callback_urls") == 0 {
            d.error(
                span,
                format!("{sec}.allowed_callback_urls: at least one is required"),
            );
        }
        let scopes = d.str_array(t, &sec, "scopes");
        for (j, (scope, s)) in scopes.iter().enumerate() {
            check_known(d, known, scope, s.clone(), &format!("{sec}.scopes[{j}]"));
        }
        out.push(AppEntry {
            client_id,
            client_secret: secret.map(|(s, _)| Secret::new(s)),
            display_name,
            description: d.str(t, &sec, "description", ""),
            logo_uri: d.str(t, &sec, "logo_uri", ""),
            client_type,
            allowed_callback_urls: callbacks.into_iter().map(|(s, _)| s).collect(),
            allowed_logout_urls: d
                .non_empty_str_array(t, &sec, "allowed_logout_urls", "a URL")
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
            allowed_web_origins: d
                .non_empty_str_array(
                    t,
                    &sec,
                    "allowed_web_origins",
                    "an origin such as \"https://app.example.com\"",
                )
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
            scopes: scopes.into_iter().map(|(s, _)| s).collect(),
            skip_consent: d.bool(t, &sec, "skip_consent", false),
            active: d.bool(t, &sec, "active", true),
        });
    }
    out
}
