//! The config file as a whole (SPEC §5): which sections it has, the order they are decoded in
//! (each section's keys, defaults and checks live in its own file), the rules that span
//! sections (scope names), and the table and value helpers the sections share.

use std::path::{Path, PathBuf};

use toml_edit::{Document, Item, TableLike};

use super::decode::{ConfigErrors, Decoder, Span};
use super::{
    Config, admin, apps, auth, base_dir_of, forward_auth, log, login, oauth, routes, scopes,
    server, store, users,
};

/// The top-level keys: one per section.
const TOP: &[&str] = &[
    "server",
    "admin",
    "log",
    "store",
    "oauth",
    "auth",
    "login",
    "scopes",
    "users",
    "apps",
    "routes",
    "forward_auth",
];

/// Every section and its keys, for the documentation test that keeps the README and the
/// example config in step with the code. Each list is the one its section's decoder accepts.
pub const KNOWN_KEYS: &[(&str, &[&str])] = &[
    ("server", server::KEYS),
    ("server.tls", server::TLS_KEYS),
    ("admin", admin::KEYS),
    ("log", log::KEYS),
    ("store", store::KEYS),
    ("oauth", oauth::KEYS),
    ("auth", auth::KEYS),
    ("login", login::KEYS),
    ("scopes", scopes::KEYS),
    ("users", users::KEYS),
    ("apps", apps::KEYS),
    ("routes", routes::KEYS),
    ("forward_auth", forward_auth::KEYS),
];

/// Parses `src` (read from `path`) and decodes every section, collecting every problem.
pub(super) fn decode(
    src: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &[(String, String)],
) -> Result<Config, ConfigErrors> {
    let mut d = Decoder::new(src, path, env).with_overrides(overrides);
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

    // The order matters: problems at the same place are reported in the order found.
    let t = section(&mut d, root, "server", &empty);
    let server = server::decode(&mut d, t, &base);
    let t = section(&mut d, root, "admin", &empty);
    let admin = admin::decode(&mut d, t);
    let t = section(&mut d, root, "log", &empty);
    let log = log::decode(&mut d, t);
    let t = section(&mut d, root, "store", &empty);
    let store = store::decode(&mut d, t, &base);
    let t = section(&mut d, root, "oauth", &empty);
    let oauth = oauth::decode(&mut d, t, &base);
    let t = section(&mut d, root, "auth", &empty);
    let auth = auth::decode(&mut d, t);
    let t = section(&mut d, root, "login", &empty);
    let login = login::decode(&mut d, t);
    let scopes = scopes::decode(&mut d, root);
    // Users, apps and routes may name only the scopes of the set.
    let scope_names = scopes::names(&scopes);
    let users = users::decode(&mut d, root, &scope_names);
    let apps = apps::decode(&mut d, root, &scope_names);
    let routes = routes::decode(&mut d, root, &scope_names, &base);
    let t = section(&mut d, root, "forward_auth", &empty);
    let forward_auth = forward_auth::decode(&mut d, t, &server.public_url);
    d.reject_unused_overrides();

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
        forward_auth,
    })
}

/// The table at `key`, or `empty` when absent (a non-table is reported).
pub(super) fn section<'t>(
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
pub(super) fn array_of_tables<'t>(
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
pub(super) fn array_len(t: &dyn TableLike, key: &str) -> usize {
    t.get(key).and_then(Item::as_array).map_or(0, |a| a.len())
}

/// `p` as given when absolute, else relative to `base` (the config file's folder).
pub(super) fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// `text` as an absolute http:// or https:// URL with a host, a port (if any) within 1-65535,
/// and no user name, query or fragment; or why not (`example` shows a good one).
pub(super) fn absolute_url(text: &str, example: &str) -> Result<http::Uri, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each key list and its decoder cannot drift apart: every key of [`KNOWN_KEYS`] given a
    /// value of no key's type (a float) is accepted as a key and then refused by its decoder,
    /// which shows that the decoder reads it.
    #[test]
    fn every_known_key_is_read_by_its_decoder() {
        let arrays = ["scopes", "users", "apps", "routes"];
        for (section, keys) in KNOWN_KEYS {
            for key in *keys {
                let (header, name) = if arrays.contains(section) {
                    (format!("[[{section}]]"), format!("{section}[0].{key}"))
                } else {
                    (format!("[{section}]"), format!("{section}.{key}"))
                };
                let src = format!("{header}\n{key} = 1.5\n");
                let no_env = |_: &str| None;
                let Err(errors) = decode(&src, Path::new("g.toml"), &no_env, &[]) else {
                    panic!("{name} = 1.5 was accepted");
                };
                let messages: Vec<&str> = errors.0.iter().map(|e| e.message.as_str()).collect();
                assert!(
                    !messages.iter().any(|m| m.starts_with("unknown key")),
                    "{name} is not accepted: {messages:#?}"
                );
                // A sub-table such as `server.tls` is reported by its own name.
                let read = [
                    format!("{name}: expected"),
                    format!("{key}: expected a table"),
                ];
                assert!(
                    messages
                        .iter()
                        .any(|m| read.iter().any(|r| m.starts_with(r))),
                    "{name} is accepted but not read: {messages:#?}"
                );
            }
        }
    }
}
