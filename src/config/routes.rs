//! `[[routes]]` (SPEC §5): what is proxied where and which scope each method needs (RFC 6750),
//! each key with its default and its checks, and the route label used in metrics and logs.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{Item, TableLike};

use super::decode::{Decoder, Span, dotted};
use super::scopes::check_known;
use super::sections::{absolute_url, array_of_tables, resolve};

/// `[[routes]]`: a path prefix (and host) proxied to an upstream.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// `path`: the path prefix, matched on whole segments. Always starts with `/`, no trailing
    /// `/` (except the root route `/`); no dot segments, `//`, `%`, `;`, `?`, `#` or `\`.
    /// Required.
    pub path: String,
    /// `host`: lower-case host without port; empty matches any host. Default `""`.
    pub host: String,
    /// `upstream`: the backend's absolute `http://` or `https://` URL, with a host and no user,
    /// query or fragment; `""` (written as such, `None` here) for a route that exists only for
    /// forward-auth (`/auth/verify`, SPEC §7.4), which proxies nothing. Required.
    pub upstream: Option<http::Uri>,
    /// `auth`: how a caller proves who it is. Default `"bearer"`.
    pub auth: AuthMode,
    /// `scope` (one scope for every method, kept as `*`) or `scopes` (a table from upper-case
    /// method or `*` to scope; `HEAD` uses `GET`'s): the scope each method needs. Required for
    /// `auth = "bearer"` or `"session"`; empty (and refused) for `auth = "none"`.
    pub scopes: BTreeMap<String, String>,
    /// `timeout`: from the start of forwarding to the response head, connecting included.
    /// Default `"30s"` (at least 1ms).
    pub timeout: Duration,
    /// `forward_authorization`: send the client's `Authorization` upstream. Default `false`.
    pub forward_authorization: bool,
    /// `assertion`: send a signed `X-Auth-Assertion` JWT upstream. Default `false`.
    pub assertion: bool,
    /// `upstream_ca`: a PEM file to trust for an https upstream, relative to the config
    /// file's folder. Default `""` (the system's roots).
    pub upstream_ca: Option<PathBuf>,
    /// `allow_groups`: after the scope check, the caller must belong to one of these groups
    /// (or be named in `allow_users`). Default `[]` (no group rule). SPEC §7.3.
    pub allow_groups: Vec<String>,
    /// `allow_users`: after the scope check, the caller must be one of these users (or belong
    /// to one of `allow_groups`). Default `[]` (no user rule). SPEC §7.3.
    pub allow_users: Vec<String>,
}

/// `routes.auth`: what a request on the route must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// `"bearer"`: an access token or a PAT in `Authorization: Bearer` (the default).
    Bearer,
    /// `"session"`: as `Bearer`, or the session cookie; a browser without either is sent to
    /// the login page.
    Session,
    /// `"none"`: nothing; the route is public.
    None,
}

impl RouteConfig {
    /// The label used in metrics and logs: the configured path, prefixed by the host if any.
    pub fn label(&self) -> String {
        if self.host.is_empty() {
            self.path.clone()
        } else {
            format!("{}{}", self.host, self.path)
        }
    }
}

/// The keys of a `[[routes]]` entry, in the order of [`RouteConfig`] (`scope` and `scopes`
/// both fill [`RouteConfig::scopes`]).
pub(super) const KEYS: &[&str] = &[
    "path",
    "host",
    "upstream",
    "auth",
    "scope",
    "scopes",
    "timeout",
    "forward_authorization",
    "assertion",
    "upstream_ca",
    "allow_groups",
    "allow_users",
];

/// The methods `scopes` may name.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "*",
];

/// Every `[[routes]]` entry of `root`, with its defaults; `known` is the scope set, paths are
/// resolved against `base`.
pub(super) fn decode(
    d: &mut Decoder<'_>,
    root: &dyn TableLike,
    known: &HashSet<String>,
    base: &Path,
) -> Vec<RouteConfig> {
    let mut out: Vec<RouteConfig> = Vec::new();
    for (i, (t, span)) in array_of_tables(d, root, "routes").into_iter().enumerate() {
        let sec = format!("routes[{i}]");
        d.reject_unknown(t, &sec, KEYS);
        let what = "a path prefix such as \"/rest/api\" (\"/\" for every path)";
        let (path, path_span) = d.required_non_empty_str(t, &sec, "path", span.clone(), what);
        let path = route_path(d, &path, path_span.clone(), &sec);
        let host = d.str(t, &sec, "host", "").to_ascii_lowercase();
        if !path.is_empty() && out.iter().any(|r| r.path == path && r.host == host) {
            d.error(
                path_span,
                format!("{sec}.path: another route already has path '{path}' and host '{host}'"),
            );
        }
        let upstream = route_upstream(d, t, &sec, span.clone());
        let auth = match d.opt_str(t, &sec, "auth") {
            None => AuthMode::Bearer,
            Some((v, s)) => {
                match v.as_str() {
                    "bearer" => AuthMode::Bearer,
                    "session" => AuthMode::Session,
                    "none" => AuthMode::None,
                    _ => {
                        d.error(s, format!("{sec}.auth: must be \"bearer\", \"session\" or \"none\", got \"{v}\""));
                        AuthMode::Bearer
                    }
                }
            }
        };
        let scopes = route_scopes(d, t, &sec, auth, known, span);
        let upstream_ca = d
            .opt_str(t, &sec, "upstream_ca")
            .filter(|(p, _)| !p.is_empty())
            .map(|(p, _)| resolve(base, &p));
        let assertion = d.bool(t, &sec, "assertion", false);
        if assertion && upstream.is_none() {
            let s = t.get("assertion").and_then(Item::span);
            d.error(s, format!("{sec}.assertion: a route with upstream = \"\" has no upstream to address the assertion to (its aud)"));
        }
        let allow_groups = super::users::group_names(d, t, &sec, "allow_groups");
        let allow_users = allowed_users(d, t, &sec);
        if auth == AuthMode::None && !(allow_groups.is_empty() && allow_users.is_empty()) {
            let s = t
                .get("allow_groups")
                .or_else(|| t.get("allow_users"))
                .and_then(Item::span);
            d.error(
                s,
                format!("{sec}: allow_groups and allow_users have no effect on a route with auth = \"none\""),
            );
        }
        out.push(RouteConfig {
            path,
            host,
            upstream,
            auth,
            scopes,
            timeout: d.duration(t, &sec, "timeout", "30s", Duration::from_millis(1)),
            forward_authorization: d.bool(t, &sec, "forward_authorization", false),
            assertion,
            upstream_ca,
            allow_groups,
            allow_users,
        });
    }
    out
}

/// `allow_users`: user names as a token's `sub` carries them. They need not be `[[users]]`
/// entries: federated users and other issuers' subjects are named here too.
fn allowed_users(d: &mut Decoder<'_>, t: &dyn TableLike, sec: &str) -> Vec<String> {
    let what = "a user name such as \"alice\"";
    let mut out: Vec<String> = Vec::new();
    for (i, (user, span)) in d
        .non_empty_str_array(t, sec, "allow_users", what)
        .into_iter()
        .enumerate()
    {
        if user.len() > 256 || user.chars().any(char::is_control) {
            d.error(
                span,
                format!("{sec}.allow_users[{i}]: '{user}' is not a user name"),
            );
        } else if out.contains(&user) {
            d.error(
                span,
                format!("{sec}.allow_users[{i}]: '{user}' is listed twice"),
            );
        } else {
            out.push(user);
        }
    }
    out
}

fn route_path(d: &mut Decoder<'_>, path: &str, span: Span, sec: &str) -> String {
    if path.is_empty() {
        return String::new();
    }
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let ok = trimmed.starts_with('/')
        && !trimmed.contains("//")
        && !trimmed.contains(['?', '#', '%', '\\', ';'])
        && !trimmed.split('/').any(|seg| seg == "." || seg == "..");
    if !ok {
        d.error(span, format!("{sec}.path: '{path}' must be a normalized absolute path such as \"/rest/api\" (no dot segments, //, %, ;, ?, #)"));
    }
    trimmed.to_string()
}

/// `upstream`: required; `""` written as such (not through an empty `${VAR}`) is a
/// forward-auth-only route.
fn route_upstream(
    d: &mut Decoder<'_>,
    t: &dyn TableLike,
    sec: &str,
    table_span: Span,
) -> Option<http::Uri> {
    let written_empty = t.get("upstream").and_then(Item::as_str) == Some("");
    if written_empty {
        return None;
    }
    let what = "the backend's URL such as \"http://127.0.0.1:8090\" (or \"\" for a route that only answers forward-auth checks)";
    let (upstream, up_span) = d.required_non_empty_str(t, sec, "upstream", table_span, what);
    Some(upstream_uri(d, &upstream, up_span, sec))
}

fn upstream_uri(d: &mut Decoder<'_>, text: &str, span: Span, sec: &str) -> http::Uri {
    let fallback = http::Uri::from_static("http://127.0.0.1");
    if text.is_empty() {
        return fallback;
    }
    match absolute_url(text, "http://127.0.0.1:8090") {
        Ok(u) => u,
        Err(reason) => {
            d.error(span, format!("{sec}.upstream: '{text}' {reason}"));
            fallback
        }
    }
}

/// `scope` or `scopes` of the route `t` (named `sec`, at `span`).
fn route_scopes(
    d: &mut Decoder<'_>,
    t: &dyn TableLike,
    sec: &str,
    auth: AuthMode,
    known: &HashSet<String>,
    span: Span,
) -> BTreeMap<String, String> {
    let single = d.opt_str(t, sec, "scope");
    let map = d.str_map(t, sec, "scopes");
    let mut out = BTreeMap::new();
    match (single, map) {
        (Some((_, s)), Some(_)) => {
            d.error(s, format!("{sec}: give either scope or scopes, not both"))
        }
        (Some((scope, s)), None) => {
            check_known(d, known, &scope, s, &format!("{sec}.scope"));
            out.insert("*".to_string(), scope);
        }
        (None, Some((map, _))) => {
            for (method, (scope, s)) in map {
                if !METHODS.contains(&method.as_str()) {
                    d.error(
                        s.clone(),
                        format!(
                            "{}: '{method}' is not an upper-case HTTP method or \"*\"",
                            dotted(sec, "scopes")
                        ),
                    );
                }
                check_known(d, known, &scope, s, &format!("{sec}.scopes.{method}"));
                out.insert(method, scope);
            }
        }
        (None, None) => {
            if auth != AuthMode::None {
                d.error(span, format!("{sec}: a route with auth = \"bearer\" or \"session\" must name `scope` or `scopes`"));
            }
        }
    }
    if auth == AuthMode::None && !out.is_empty() {
        let s = t
            .get("scope")
            .or_else(|| t.get("scopes"))
            .and_then(Item::span);
        d.error(
            s,
            format!("{sec}: scopes have no effect on a route with auth = \"none\""),
        );
    }
    out
}
