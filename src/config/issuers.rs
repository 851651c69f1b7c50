//! `[[issuers]]` (SPEC §7.2, §7.5): other token issuers whose access tokens bearer routes may
//! accept (`routes.issuers`), each key with its default and its checks.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use toml_edit::TableLike;

use super::Secret;
use super::decode::{Decoder, Span};
use super::scopes::check_known;
use super::sections::{array_of_tables, resolve};

/// The name a route uses for gatehouse's own tokens; no `[[issuers]]` entry may take it.
pub const SELF_ISSUER: &str = "self";

/// `[[issuers]]`: an issuer whose access tokens routes may accept.
#[derive(Clone, Debug, PartialEq)]
pub struct IssuerConfig {
    /// `name`: `[a-z0-9-]{1,32}`, unique, not `"self"`; what `routes.issuers` names. Required.
    pub name: String,
    /// `issuer`: the exact `iss` of its tokens, an `https://` URL. Required.
    pub issuer: String,
    /// `jwks_uri`: where its keys are; `""` finds them through discovery (RFC 8414, then
    /// OpenID Connect). Default `""`.
    pub jwks_uri: String,
    /// `audiences`: a token's `aud` must contain one of these. Required, at least one.
    pub audiences: Vec<String>,
    /// `algorithms`: the `alg`s accepted (never `none` or an HMAC). Default
    /// `["RS256", "ES256", "EdDSA"]`.
    pub algorithms: Vec<Algorithm>,
    /// `jwks_refresh`: how often the keys are fetched again. Default `"15m"` (at least 10s).
    pub jwks_refresh: Duration,
    /// `introspection_endpoint`: RFC 7662 endpoint for opaque tokens; `""` refuses them.
    /// Default `""`.
    pub introspection_endpoint: String,
    /// `introspection_client_id`: gatehouse's client id at that endpoint. Default `""`
    /// (required with an endpoint).
    pub introspection_client_id: String,
    /// `introspection_client_secret` (or `_file`): its secret (client_secret_basic). Default
    /// none (required with an endpoint).
    pub introspection_client_secret: Option<Secret>,
    /// `username_claim`: the claim that names the user. Default `"sub"`.
    pub username_claim: String,
    /// `username_prefix`: put before that name (keeps names apart from config users).
    /// Default `""`.
    pub username_prefix: String,
    /// `scope_claim`: the claim with the token's scopes (a space-separated string or an
    /// array). Default `"scope"`.
    pub scope_claim: String,
    /// `scope_map`: the issuer's scope → a gatehouse scope; unmapped scopes are dropped.
    /// Default `{}`.
    pub scope_map: BTreeMap<String, String>,
    /// `max_scope`: the widest gatehouse scope a token of this issuer may hold. Default
    /// `"READ"`.
    pub max_scope: String,
    /// `groups_claim`: the claim with the user's groups (an array of strings). Default
    /// `"groups"`.
    pub groups_claim: String,
    /// `allow_management`: its tokens may use the management API, create PATs and authorize
    /// apps. Default `false`.
    pub allow_management: bool,
    /// `ca`: a PEM file to trust for the issuer's endpoints, relative to the config's folder.
    /// Default `""` (the system's roots).
    pub ca: Option<PathBuf>,
}

/// The keys of an `[[issuers]]` entry, in the order of [`IssuerConfig`].
pub(super) const KEYS: &[&str] = &[
    "name",
    "issuer",
    "jwks_uri",
    "audiences",
    "algorithms",
    "jwks_refresh",
    "introspection_endpoint",
    "introspection_client_id",
    "introspection_client_secret",
    "introspection_client_secret_file",
    "username_claim",
    "username_prefix",
    "scope_claim",
    "scope_map",
    "max_scope",
    "groups_claim",
    "allow_management",
    "ca",
];

/// The algorithms an issuer may use: asymmetric ones only (RFC 8725 §3.1, §3.2).
const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// `algorithms` names, with the reason for the ones never accepted; shared with
/// `[[identity_providers]]`.
pub(super) fn algorithm(
    d: &mut Decoder<'_>,
    name: &str,
    span: Span,
    key: &str,
) -> Option<Algorithm> {
    if let Some((_, alg)) = ALGORITHMS.iter().find(|(n, _)| *n == name) {
        return Some(*alg);
    }
    let why = if name.eq_ignore_ascii_case("none") {
        "an unsigned token is never accepted".to_string()
    } else if name.to_ascii_uppercase().starts_with("HS") {
        "an HMAC would let anyone with the issuer's public key sign".to_string()
    } else {
        let known: Vec<&str> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
        format!("known ones are {}", known.join(", "))
    };
    d.error(span, format!("{key}: '{name}' is not accepted ({why})"));
    None
}

/// Every `[[issuers]]` entry of `root`, with its defaults; `known` is the scope set.
pub(super) fn decode(
    d: &mut Decoder<'_>,
    root: &dyn TableLike,
    known: &HashSet<String>,
    base: &Path,
) -> Vec<IssuerConfig> {
    let mut out: Vec<IssuerConfig> = Vec::new();
    for (i, (t, span)) in array_of_tables(d, root, "issuers").into_iter().enumerate() {
        let sec = format!("issuers[{i}]");
        d.reject_unknown(t, &sec, KEYS);
        let what = "a short name such as \"corp\" that routes list in `issuers`";
        let (name, name_span) = d.required_non_empty_str(t, &sec, "name", span.clone(), what);
        if name == SELF_ISSUER {
            d.error(
                name_span.clone(),
                format!("{sec}.name: \"self\" is reserved for gatehouse's own tokens"),
            );
        } else if !name.is_empty() && !valid_name(&name) {
            d.error(
                name_span.clone(),
                format!("{sec}.name: '{name}' must be 1-32 characters of a-z 0-9 -"),
            );
        }
        if !name.is_empty() && out.iter().any(|o| o.name == name) {
            d.error(
                name_span,
                format!("{sec}.name: issuer '{name}' is declared twice"),
            );
        }
        let what = "the exact `iss` of its tokens, such as \"https://sso.example.com/realms/corp\"";
        let (issuer, issuer_span) = d.required_non_empty_str(t, &sec, "issuer", span.clone(), what);
        if !issuer.is_empty() {
            https_url(d, &issuer, issuer_span.clone(), &format!("{sec}.issuer"));
            if let Some(other) = out.iter().find(|o| o.issuer == issuer) {
                d.error(
                    issuer_span,
                    format!(
                        "{sec}.issuer: issuer '{}' has the same URL; a token's iss must pick one",
                        other.name
                    ),
                );
            }
        }
        let jwks_uri = d.str(t, &sec, "jwks_uri", "");
        if !jwks_uri.is_empty() {
            let span = t.get("jwks_uri").and_then(toml_edit::Item::span);
            https_url(d, &jwks_uri, span, &format!("{sec}.jwks_uri"));
        }
        let what = "an audience such as \"gatehouse\"";
        let audiences: Vec<String> = d
            .non_empty_str_array(t, &sec, "audiences", what)
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        match t.get("audiences") {
            None => d.error(
                span.clone(),
                format!("{sec}.audiences: required, at least one (the `aud` its tokens carry for gatehouse)"),
            ),
            Some(item) if item.as_array().is_some_and(|a| a.is_empty()) => d.error(
                item.span(),
                format!("{sec}.audiences: at least one is required"),
            ),
            Some(_) => {}
        }
        let algorithms = algorithms(d, t, &sec);
        let endpoint = d.str(t, &sec, "introspection_endpoint", "");
        let endpoint_span = t
            .get("introspection_endpoint")
            .and_then(toml_edit::Item::span);
        if !endpoint.is_empty() {
            https_url(
                d,
                &endpoint,
                endpoint_span.clone(),
                &format!("{sec}.introspection_endpoint"),
            );
        }
        let client_id = d.str(t, &sec, "introspection_client_id", "");
        let secret = d
            .opt_secret(t, &sec, "introspection_client_secret")
            .filter(|(s, _)| !s.is_empty());
        if !endpoint.is_empty() && (client_id.is_empty() || secret.is_none()) {
            d.error(
                endpoint_span,
                format!("{sec}.introspection_endpoint: needs introspection_client_id and introspection_client_secret"),
            );
        }
        let scope_map = match d.str_map(t, &sec, "scope_map") {
            None => BTreeMap::new(),
            Some((map, _)) => map
                .into_iter()
                .map(|(theirs, (ours, s))| {
                    check_known(d, known, &ours, s, &format!("{sec}.scope_map.{theirs}"));
                    (theirs, ours)
                })
                .collect(),
        };
        let max_scope = match d.opt_str(t, &sec, "max_scope") {
            None => "READ".to_string(),
            Some((scope, s)) => {
                check_known(d, known, &scope, s, &format!("{sec}.max_scope"));
                scope
            }
        };
        let claim = |d: &mut Decoder<'_>, key: &str, default: &str| {
            let value = d.str(t, &sec, key, default);
            if value.is_empty() {
                let s = t.get(key).and_then(toml_edit::Item::span);
                d.error(
                    s,
                    format!("{sec}.{key}: must name a claim such as \"{default}\""),
                );
            }
            value
        };
        let username_claim = claim(d, "username_claim", "sub");
        let scope_claim = claim(d, "scope_claim", "scope");
        let groups_claim = claim(d, "groups_claim", "groups");
        out.push(IssuerConfig {
            name,
            issuer,
            jwks_uri,
            audiences,
            algorithms,
            jwks_refresh: d.duration(t, &sec, "jwks_refresh", "15m", Duration::from_secs(10)),
            introspection_endpoint: endpoint,
            introspection_client_id: client_id,
            introspection_client_secret: secret.map(|(s, _)| Secret::new(s)),
            username_claim,
            username_prefix: d.str(t, &sec, "username_prefix", ""),
            scope_claim,
            scope_map,
            max_scope,
            groups_claim,
            allow_management: d.bool(t, &sec, "allow_management", false),
            ca: d
                .opt_str(t, &sec, "ca")
                .filter(|(p, _)| !p.is_empty())
                .map(|(p, _)| resolve(base, &p)),
        });
    }
    out
}

/// `[a-z0-9-]{1,32}`, as names in URLs and metric labels want.
fn valid_name(name: &str) -> bool {
    name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn algorithms(d: &mut Decoder<'_>, t: &dyn TableLike, sec: &str) -> Vec<Algorithm> {
    if !t.contains_key("algorithms") {
        return vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
    }
    let names = d.str_array(t, sec, "algorithms");
    let mut out = Vec::new();
    for (j, (name, span)) in names.iter().enumerate() {
        let alg = algorithm(d, name, span.clone(), &format!("{sec}.algorithms[{j}]"));
        if let Some(alg) = alg.filter(|a| !out.contains(a)) {
            out.push(alg);
        }
    }
    if names.is_empty() && t.get("algorithms").is_some_and(|a| a.as_array().is_some()) {
        let s = t.get("algorithms").and_then(toml_edit::Item::span);
        d.error(s, format!("{sec}.algorithms: at least one is required"));
    }
    out
}

/// Reports `text` unless it is an `https://` URL with a host and no query or fragment.
fn https_url(d: &mut Decoder<'_>, text: &str, span: Span, key: &str) {
    let ok = url::Url::parse(text).is_ok_and(|u| {
        u.scheme() == "https"
            && u.host_str().is_some_and(|h| !h.is_empty())
            && u.query().is_none()
            && u.fragment().is_none()
            && u.username().is_empty()
    });
    if !ok {
        d.error(
            span,
            format!(
                "{key}: '{text}' must be an https:// URL with a host and no query, fragment or user"
            ),
        );
    }
}
