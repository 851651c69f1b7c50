//! Decodes each section of the config file into its typed model, with the defaults of SPEC §5,
//! and checks the rules that span several keys (scope names, duplicate routes, paths).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{Document, Item, TableLike};

use super::decode::{ConfigErrors, Decoder, Span, dotted};
use super::*;

const TOP: &[&str] = &[
    "server", "admin", "log", "store", "oauth", "auth", "login", "scopes", "users", "apps",
    "routes",
];
const SERVER: &[&str] = &[
    "listen",
    "public_url",
    "trusted_proxies",
    "shutdown_grace",
    "header_read_timeout",
    "idle_timeout",
    "request_body_timeout",
    "max_connections",
    "max_header_bytes",
    "max_headers",
    "http_redirect_listen",
    "plain_listen",
    "tls",
];
const TLS: &[&str] = &["cert", "key"];
const ADMIN: &[&str] = &["listen"];
const LOG: &[&str] = &["format", "level"];
const STORE: &[&str] = &["url", "max_connections"];
const OAUTH: &[&str] = &[
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
const AUTH: &[&str] = &[
    "cache_ttl",
    "cache_max_entries",
    "negative_cache_ttl",
    "leeway",
    "revocation_propagation",
    "user_header",
    "scopes_header",
    "client_id_header",
];
const LOGIN: &[&str] = &["max_failures", "window", "ban", "session_ttl"];
const SCOPE: &[&str] = &["name", "description", "implies"];
const USER: &[&str] = &["name", "password_hash", "max_scope"];
const APP: &[&str] = &[
    "client_id",
    "client_secret",
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
const ROUTE: &[&str] = &[
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
];

/// Every section and its keys, for the documentation test that keeps the README and the
/// example config in step with the code.
pub const KNOWN_KEYS: &[(&str, &[&str])] = &[
    ("server", SERVER),
    ("server.tls", TLS),
    ("admin", ADMIN),
    ("log", LOG),
    ("store", STORE),
    ("oauth", OAUTH),
    ("auth", AUTH),
    ("login", LOGIN),
    ("scopes", SCOPE),
    ("users", USER),
    ("apps", APP),
    ("routes", ROUTE),
];

const DEFAULT_SCOPES: &[&str] = &["READ", "WRITE", "ADMIN", "SYSTEM_ADMIN"];

pub(super) fn decode(
    src: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut d = Decoder::new(src, path, env);
    let doc = match Document::parse(src) {
        Ok(doc) => doc,
        Err(e) => {
            d.error(e.span(), format!("TOML syntax: {}", e.message().trim()));
            return Err(ConfigErrors(d.into_errors()));
        }
    };
    let root = doc.as_table();
    d.reject_unknown(root, "", TOP);
    let empty = toml_edit::Table::new();
    let base = base_dir_of(path);

    let t = section(&mut d, root, "server", &empty);
    let server = server(&mut d, t, &base);
    let admin_t = section(&mut d, root, "admin", &empty);
    d.reject_unknown(admin_t, "admin", ADMIN);
    let admin = AdminConfig {
        listen: d
            .socket_addr(admin_t, "admin", "listen", "127.0.0.1:9090", false)
            .unwrap_or_else(default_admin),
    };
    let t = section(&mut d, root, "log", &empty);
    let log = log(&mut d, t);
    let t = section(&mut d, root, "store", &empty);
    let store = store(&mut d, t);
    let t = section(&mut d, root, "oauth", &empty);
    let oauth = oauth(&mut d, t, &base);
    let t = section(&mut d, root, "auth", &empty);
    let auth = auth(&mut d, t);
    let t = section(&mut d, root, "login", &empty);
    let login = login(&mut d, t);
    let scopes = scopes(&mut d, root);
    let scope_names: HashSet<String> = if scopes.is_empty() {
        DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
    } else {
        scopes.iter().map(|s| s.name.clone()).collect()
    };
    let users = users(&mut d, root, &scope_names);
    let apps = apps(&mut d, root, &scope_names);
    let routes = routes(&mut d, root, &scope_names, &base);

    if d.has_errors() {
        return Err(ConfigErrors(d.into_errors()));
    }
    Ok(Config {
        path: path.to_path_buf(),
        locations: d.take_locations(),
        server,
        admin,
        log,
        store,
        oauth,
        auth,
        login,
        scopes,
        users,
        apps,
        routes,
    })
}

fn default_admin() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 9090))
}

/// The table at `key`, or `empty` when absent (a non-table is reported).
fn section<'t>(
    d: &mut Decoder<'_>,
    parent: &'t dyn TableLike,
    key: &str,
    empty: &'t toml_edit::Table,
) -> &'t dyn TableLike {
    match parent.get(key) {
        None => empty,
        Some(item) => match item.as_table_like() {
            Some(t) => t,
            None => {
                d.error(
                    item.span(),
                    format!("{key}: expected a table, found {}", item.type_name()),
                );
                empty
            }
        },
    }
}

/// The entries of an array of tables such as `[[routes]]`, each with its span.
fn array_of_tables<'t>(
    d: &mut Decoder<'_>,
    root: &'t dyn TableLike,
    key: &str,
) -> Vec<(&'t dyn TableLike, Span)> {
    match root.get(key) {
        None => Vec::new(),
        Some(Item::ArrayOfTables(array)) => array
            .iter()
            .map(|t| (t as &dyn TableLike, t.span()))
            .collect(),
        Some(item) => {
            d.error(
                item.span(),
                format!(
                    "{key}: expected [[{key}]] entries, found {}",
                    item.type_name()
                ),
            );
            Vec::new()
        }
    }
}

/// How many items the array at `key` has (0 when absent or not an array).
fn array_len(t: &dyn TableLike, key: &str) -> usize {
    t.get(key).and_then(Item::as_array).map_or(0, |a| a.len())
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

fn server(d: &mut Decoder<'_>, t: &dyn TableLike, base: &Path) -> ServerConfig {
    d.reject_unknown(t, "server", SERVER);
    let s = "server";
    let listen = d
        .socket_addr(t, s, "listen", "0.0.0.0:8443", false)
        .unwrap_or_else(|| ([0, 0, 0, 0], 8443).into());
    let public_url = public_url(d, t);
    let mut trusted_proxies = Vec::new();
    for (cidr, span) in d.str_array(t, s, "trusted_proxies") {
        match cidr
            .parse::<ipnet::IpNet>()
            .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => d.error(
                span,
                format!("server.trusted_proxies: '{cidr}' is not a CIDR such as \"10.0.0.0/8\""),
            ),
        }
    }
    let empty = toml_edit::Table::new();
    let tls_t = section(d, t, "tls", &empty);
    d.reject_unknown(tls_t, "server.tls", TLS);
    let tls_span = t.get("tls").and_then(Item::span);
    let (cert, _) = d.required_non_empty_str(
        tls_t,
        "server.tls",
        "cert",
        tls_span.clone(),
        "the PEM certificate chain file",
    );
    let (key, _) = d.required_non_empty_str(
        tls_t,
        "server.tls",
        "key",
        tls_span,
        "the PEM private key file",
    );
    ServerConfig {
        listen,
        public_url,
        trusted_proxies,
        shutdown_grace: d.duration(t, s, "shutdown_grace", "30s", Duration::ZERO),
        header_read_timeout: d.duration(
            t,
            s,
            "header_read_timeout",
            "10s",
            Duration::from_millis(100),
        ),
        idle_timeout: d.duration(t, s, "idle_timeout", "60s", Duration::from_millis(100)),
        request_body_timeout: d.duration(
            t,
            s,
            "request_body_timeout",
            "30s",
            Duration::from_millis(100),
        ),
        max_connections: d.int(t, s, "max_connections", 10_000, 1, 1_000_000) as usize,
        max_header_bytes: d.int(t, s, "max_header_bytes", 16_384, 8_192, 1_048_576) as usize,
        max_headers: d.int(t, s, "max_headers", 100, 8, 1_000) as usize,
        http_redirect_listen: d.socket_addr(t, s, "http_redirect_listen", "", true),
        plain_listen: d.socket_addr(t, s, "plain_listen", "", true),
        tls: TlsConfig {
            cert: resolve(base, &cert),
            key: resolve(base, &key),
        },
    }
}

/// `server.public_url`: an absolute https:// URL (http:// for a loopback host), without the
/// trailing `/`.
fn public_url(d: &mut Decoder<'_>, t: &dyn TableLike) -> String {
    let what = "the gateway's external URL such as \"https://gateway.example.com\"";
    let (text, span) = d.required_non_empty_str(t, "server", "public_url", None, what);
    if text.is_empty() {
        return text;
    }
    match absolute_url(&text, "https://gateway.example.com") {
        Ok(u) if u.scheme_str() == Some("https") => {}
        Ok(u) if u.host().is_some_and(is_loopback_host) => {}
        Ok(_) => d.error(
            span,
            format!(
                "server.public_url: '{text}' must be https:// (http:// only for a loopback host)"
            ),
        ),
        Err(reason) => d.error(span, format!("server.public_url: '{text}' {reason}")),
    }
    text.trim_end_matches('/').to_string()
}

/// `text` as an absolute http:// or https:// URL with a host, a port (if any) within 1-65535,
/// and no user name, query or fragment; or why not (`example` shows a good one).
fn absolute_url(text: &str, example: &str) -> Result<http::Uri, String> {
    let not_url = || format!("is not an absolute URL such as \"{example}\"");
    // `http::Uri` drops a fragment silently: look for one first.
    if text.contains('#') {
        return Err("must not have a fragment (#…)".into());
    }
    let uri: http::Uri = text.parse().map_err(|_| not_url())?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(not_url());
    };
    if !matches!(scheme, "http" | "https") {
        return Err("must start with http:// or https://".into());
    }
    if authority.as_str().contains('@') {
        return Err("must not hold a user name or password (user@…)".into());
    }
    if authority.host().is_empty() {
        return Err(not_url());
    }
    let port = authority.as_str().get(authority.host().len()..);
    if let Some(port) = port.and_then(|p| p.strip_prefix(':')) {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return Err(format!("has port '{port}', not within 1 to 65535"));
        }
    }
    if uri.query().is_some() {
        return Err("must not have a query (?…)".into());
    }
    Ok(uri)
}

fn log(d: &mut Decoder<'_>, t: &dyn TableLike) -> LogConfig {
    d.reject_unknown(t, "log", LOG);
    let format = match d.opt_str(t, "log", "format") {
        None => LogFormat::Text,
        Some((f, _)) if f == "text" => LogFormat::Text,
        Some((f, _)) if f == "json" => LogFormat::Json,
        Some((f, span)) => {
            d.error(
                span,
                format!("log.format: must be \"text\" or \"json\", got \"{f}\""),
            );
            LogFormat::Text
        }
    };
    let what = "a level or filter such as \"info\"";
    let (level, span) = d
        .opt_non_empty_str(t, "log", "level", what)
        .unwrap_or_else(|| ("info".into(), None));
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        d.error(
            span,
            format!("log.level: '{level}' is not a level or filter such as \"info\""),
        );
    }
    LogConfig { format, level }
}

fn store(d: &mut Decoder<'_>, t: &dyn TableLike) -> StoreConfig {
    d.reject_unknown(t, "store", STORE);
    let (url, span) = d
        .opt_str(t, "store", "url")
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

fn oauth(d: &mut Decoder<'_>, t: &dyn TableLike, base: &Path) -> OAuthConfig {
    let s = "oauth";
    d.reject_unknown(t, s, OAUTH);
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
        _ => "x-auth-client-id",
    }
}

fn auth(d: &mut Decoder<'_>, t: &dyn TableLike) -> AuthConfig {
    let s = "auth";
    d.reject_unknown(t, s, AUTH);
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
    }
}

fn login(d: &mut Decoder<'_>, t: &dyn TableLike) -> LoginConfig {
    let s = "login";
    d.reject_unknown(t, s, LOGIN);
    LoginConfig {
        max_failures: d.int(t, s, "max_failures", 5, 1, 1_000) as u32,
        window: d.duration(t, s, "window", "5m", Duration::from_secs(1)),
        ban: d.duration(t, s, "ban", "15m", Duration::ZERO),
        session_ttl: d.duration(t, s, "session_ttl", "12h", Duration::from_secs(60)),
    }
}

fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn scopes(d: &mut Decoder<'_>, root: &dyn TableLike) -> Vec<ScopeEntry> {
    let entries = array_of_tables(d, root, "scopes");
    let mut out: Vec<ScopeEntry> = Vec::new();
    let mut spans = Vec::new();
    for (i, (t, span)) in entries.into_iter().enumerate() {
        let sec = format!("scopes[{i}]");
        d.reject_unknown(t, &sec, SCOPE);
        let what = "a scope name such as \"READ\"";
        let (name, name_span) = d.required_non_empty_str(t, &sec, "name", span, what);
        if !name.is_empty() && !is_scope_token(&name) {
            d.error(
                name_span.clone(),
                format!(
                    "{sec}.name: '{name}' has characters not allowed in a scope (RFC 6749 §3.3)"
                ),
            );
        }
        if !name.is_empty() && out.iter().any(|s| s.name == name) {
            d.error(
                name_span,
                format!("{sec}.name: scope '{name}' is declared twice"),
            );
        }
        let description = d.str(t, &sec, "description", "");
        let implies = d.str_array(t, &sec, "implies");
        spans.push(implies.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>());
        out.push(ScopeEntry {
            name,
            description,
            implies: implies.into_iter().map(|(s, _)| s).collect(),
        });
    }
    for (i, entry) in out.iter().enumerate() {
        for (j, implied) in entry.implies.iter().enumerate() {
            if !out.iter().any(|s| &s.name == implied) {
                d.error(
                    spans[i][j].clone(),
                    format!("scopes[{i}].implies: unknown scope '{implied}'"),
                );
            }
        }
    }
    out
}

fn check_scope(d: &mut Decoder<'_>, known: &HashSet<String>, name: &str, span: Span, field: &str) {
    if !known.contains(name) {
        let mut list: Vec<&str> = known.iter().map(String::as_str).collect();
        list.sort_unstable();
        d.error(
            span,
            format!(
                "{field}: unknown scope '{name}' (known: {})",
                list.join(", ")
            ),
        );
    }
}

fn users(d: &mut Decoder<'_>, root: &dyn TableLike, known: &HashSet<String>) -> Vec<UserEntry> {
    let mut out: Vec<UserEntry> = Vec::new();
    for (i, (t, span)) in array_of_tables(d, root, "users").into_iter().enumerate() {
        let sec = format!("users[{i}]");
        d.reject_unknown(t, &sec, USER);
        let what = "a user name such as \"alice\"";
        let (name, name_span) = d.required_non_empty_str(t, &sec, "name", span.clone(), what);
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
        if !name.is_empty() && !valid {
            d.error(
                name_span.clone(),
                format!("{sec}.name: '{name}' must be 1-64 characters of A-Z a-z 0-9 . _ @ -"),
            );
        }
        if !name.is_empty() && out.iter().any(|u| u.name == name) {
            d.error(
                name_span,
                format!("{sec}.name: user '{name}' is declared twice"),
            );
        }
        let what = "an argon2id hash from `gatehouse hash-password`";
        let (hash, hash_span) =
            d.required_non_empty_str(t, &sec, "password_hash", span.clone(), what);
        if !hash.is_empty() && !hash.starts_with("$argon2id$") {
            d.error(
                hash_span,
                format!(
                    "{sec}.password_hash: must be an argon2id hash from `gatehouse hash-password`"
                ),
            );
        }
        let what = "the widest scope the user may hold, such as \"WRITE\"";
        let (max_scope, scope_span) = d.required_non_empty_str(t, &sec, "max_scope", span, what);
        if !max_scope.is_empty() {
            check_scope(
                d,
                known,
                &max_scope,
                scope_span,
                &format!("{sec}.max_scope"),
            );
        }
        out.push(UserEntry {
            name,
            password_hash: Secret::new(hash),
            max_scope,
        });
    }
    out
}

fn apps(d: &mut Decoder<'_>, root: &dyn TableLike, known: &HashSet<String>) -> Vec<AppEntry> {
    let mut out: Vec<AppEntry> = Vec::new();
    for (i, (t, span)) in array_of_tables(d, root, "apps").into_iter().enumerate() {
        let sec = format!("apps[{i}]");
        d.reject_unknown(t, &sec, APP);
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
        let secret = d.opt_str(t, &sec, "client_secret");
        match (&secret, client_type) {
            (None, ClientType::Confidential) if t.get("client_secret").is_none() => d.error(
                span.clone(),
                format!("{sec}.client_secret: required for a confidential app"),
            ),
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
            check_scope(d, known, scope, s.clone(), &format!("{sec}.scopes[{j}]"));
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

fn routes(
    d: &mut Decoder<'_>,
    root: &dyn TableLike,
    known: &HashSet<String>,
    base: &Path,
) -> Vec<RouteConfig> {
    let mut out: Vec<RouteConfig> = Vec::new();
    for (i, (t, span)) in array_of_tables(d, root, "routes").into_iter().enumerate() {
        let sec = format!("routes[{i}]");
        d.reject_unknown(t, &sec, ROUTE);
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
        let what = "the backend's URL such as \"http://127.0.0.1:8090\" (a route without an upstream is not supported)";
        let (upstream, up_span) = d.required_non_empty_str(t, &sec, "upstream", span.clone(), what);
        let upstream = upstream_uri(d, &upstream, up_span, &sec);
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
        out.push(RouteConfig {
            path,
            host,
            upstream,
            auth,
            scopes,
            timeout: d.duration(t, &sec, "timeout", "30s", Duration::from_millis(1)),
            forward_authorization: d.bool(t, &sec, "forward_authorization", false),
            assertion: d.bool(t, &sec, "assertion", false),
            upstream_ca,
        });
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

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "*",
];

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
            check_scope(d, known, &scope, s, &format!("{sec}.scope"));
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
                check_scope(d, known, &scope, s, &format!("{sec}.scopes.{method}"));
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

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
