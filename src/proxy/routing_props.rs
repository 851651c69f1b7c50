//! Property tests of the route decision (SPEC §3.4, SECURITY.md "Paths and routing"): for
//! arbitrary paths built from the pieces attackers use, the route gatehouse chooses is the one a
//! Tomcat-style and an nginx-style backend would reach with the path it forwards, normalizing
//! is idempotent, and nothing forwarded climbs above the chosen route's prefix.

use std::time::Duration;

use proptest::prelude::*;

use super::path::normalize;
use super::routes::RouteTable;
use crate::auth::scope::ScopeSet;
use crate::config::{AuthMode, RouteConfig};
use crate::metrics::Metrics;

const ROUTES: [&str; 6] = ["/", "/rest", "/rest/admin", "/rest/api", "/admin", "/a/b"];

fn table() -> RouteTable {
    let configs: Vec<RouteConfig> = ROUTES
        .iter()
        .map(|path| RouteConfig {
            path: (*path).into(),
            host: String::new(),
            upstream: Some("http://127.0.0.1:1/base".parse().unwrap()),
            auth: AuthMode::None,
            scopes: Default::default(),
            timeout: Duration::from_secs(1),
            forward_authorization: false,
            assertion: false,
            upstream_ca: None,
            allow_groups: Vec::new(),
            allow_users: Vec::new(),
        })
        .collect();
    RouteTable::new(
        &configs,
        &ScopeSet::default_confluence(),
        &Metrics::new().unwrap(),
    )
}

fn route_of(table: &RouteTable, path: &str) -> String {
    table
        .find(None, path)
        .map_or_else(String::new, |r| r.config.path.clone())
}

fn percent_decode(s: &str, refuse_slash: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v == 0 || (refuse_slash && (v == b'/' || v == b'\\')) {
                return None;
            }
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Resolves dot segments and merges slashes the way both servers do; `None` above the root.
fn resolve_dots(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in path.split('/').skip(1) {
        match seg {
            "" | "." => trailing = true,
            ".." => {
                out.pop()?;
                trailing = true;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut s: String = out.iter().map(|seg| format!("/{seg}")).collect();
    if trailing || s.is_empty() {
        s.push('/');
    }
    Some(s)
}

/// How Tomcat maps a request URI: path parameters removed from the raw URI, then decoded
/// (encoded `/`, `\` and NUL refused), then normalized (`//` merged, dot segments resolved).
fn tomcat(raw: &str) -> Option<String> {
    let stripped: Vec<&str> = raw
        .split('/')
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .collect();
    let decoded = percent_decode(&stripped.join("/"), true)?;
    if decoded.contains('\\') {
        return None;
    }
    resolve_dots(&decoded)
}

/// How nginx matches a location with `merge_slashes on`: every `%XX` decoded, slashes merged,
/// dot segments resolved; `;` is an ordinary character.
fn nginx(raw: &str) -> Option<String> {
    resolve_dots(&percent_decode(raw, false)?)
}

/// Whether `path` is at or below `prefix` on whole segments.
fn under(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "",
        ".",
        "..",
        ";",
        ";x",
        ";x=1",
        "%2e",
        "%2E%2e",
        ".%2e",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "%00",
        "%25",
        "%252e",
        "%3B",
        "%3b",
        "é",
        "%C3%A9",
        "rest",
        "admin",
        "api",
        "a",
        "b",
        "x",
        "%61dmin",
        "adm%69n",
        "rest;jsessionid=1",
        "..;",
        ".;x",
        "admin;",
        "~",
        "%7E",
    ])
}

fn paths() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..8).prop_map(|pieces| {
        let mut s = String::new();
        for p in pieces {
            s.push('/');
            s.push_str(p);
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn normalizing_twice_changes_nothing(p in paths()) {
        if let Ok(once) = normalize(&p) {
            let twice = normalize(&once).unwrap();
            prop_assert_eq!(&twice, &once);
        }
    }

    #[test]
    fn the_route_is_the_one_the_backend_reaches(p in paths()) {
        let table = table();
        let Ok(forwarded) = normalize(&p) else { return Ok(()) };
        let chosen = route_of(&table, &forwarded);
        // The backend reads the forwarded path to the same route...
        let by_tomcat = tomcat(&forwarded).expect("a forwarded path Tomcat refuses");
        let by_nginx = nginx(&forwarded).expect("a forwarded path nginx refuses");
        prop_assert_eq!(&route_of(&table, &by_tomcat), &chosen, "tomcat {}", by_tomcat);
        prop_assert_eq!(&route_of(&table, &by_nginx), &chosen, "nginx {}", by_nginx);
        // ...and Tomcat, given the client's own path, would have chosen it too.
        if let Some(direct) = tomcat(&p) {
            prop_assert_eq!(&route_of(&table, &direct), &chosen, "tomcat direct {}", direct);
        }
    }

    #[test]
    fn nothing_forwarded_climbs_above_the_route(p in paths()) {
        let table = table();
        let Ok(forwarded) = normalize(&p) else { return Ok(()) };
        let chosen = route_of(&table, &forwarded);
        prop_assert!(!forwarded.split('/').any(|s| s == "." || s == ".."));
        for resolved in [tomcat(&forwarded), nginx(&forwarded)] {
            let resolved = resolved.unwrap_or_default();
            prop_assert!(under(&chosen, &resolved), "{} escapes {}", resolved, chosen);
        }
        // The upstream's base path comes first; resolved, the target stays below it.
        let target = format!("/base{forwarded}");
        let resolved = nginx(&target).unwrap_or_default();
        prop_assert!(under("/base", &resolved), "{} escapes /base", resolved);
    }
}

#[test]
fn the_review_cases_reach_the_admin_route() {
    let table = table();
    for p in [
        "/;/rest/admin/x",
        "/;x/rest/admin/x",
        "/rest/;/admin/x",
        "//rest//admin/x",
    ] {
        let forwarded = normalize(p).unwrap();
        assert_eq!(route_of(&table, &forwarded), "/rest/admin", "{p}");
        assert_eq!(forwarded, "/rest/admin/x", "{p}");
    }
}
