//! Validation of what a management-API caller or an `[[apps]]` entry registers (SPEC §3.3):
//! display names, registered URLs (RFC 6749 §3.1.2: absolute, no fragment; RFC 8252 §7.3/§8.3:
//! `http` only for loopback hosts), web origins as bare RFC 6454 origins, scopes from the
//! configured set, bounded labels, and what a caller may give an app (scopes within its
//! own, `skipConsent` only with SYSTEM_ADMIN). Every failure names the field and the rule.

use std::collections::BTreeMap;

use url::{Host, Url};

use crate::auth::scope::{ScopeSet, Scopes};

/// The scope a caller needs to let an app skip the consent page (SPEC §3.3).
pub const SKIP_CONSENT_SCOPE: &str = "SYSTEM_ADMIN";

pub const MAX_DISPLAY_NAME: usize = 100;
pub const MAX_DESCRIPTION: usize = 1000;
pub const MAX_URL: usize = 2048;
pub const MAX_URLS: usize = 32;
pub const MAX_SCOPES: usize = 64;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY: usize = 63;
pub const MAX_LABEL_VALUE: usize = 256;

/// One broken rule: `field` is a JSON path such as `allowedCallbackUrls[0]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub rule: String,
}

/// Every rule a request broke, in the order they were found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        self.0.push(Violation {
            field: field.into(),
            rule: rule.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `field: rule; field: rule`, the error message.
    pub fn message(&self) -> String {
        self.0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.rule))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What the rules depend on: the configured scope set and `oauth.allow_insecure_redirect_uris`.
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    pub scopes: &'a ScopeSet,
    pub allow_insecure: bool,
}

/// 1–100 characters, not only spaces, no control characters.
pub fn display_name(v: &mut Violations, field: &str, s: &str) {
    if s.trim().is_empty() {
        v.add(field, "must not be empty");
    } else if s.chars().count() > MAX_DISPLAY_NAME {
        v.add(
            field,
            format!("must be at most {MAX_DISPLAY_NAME} characters"),
        );
    } else if s.chars().any(char::is_control) {
        v.add(field, "must not contain control characters");
    }
}

/// At most 1000 characters; line breaks allowed, other control characters not.
pub fn description(v: &mut Violations, field: &str, s: &str) {
    if s.chars().count() > MAX_DESCRIPTION {
        v.add(
            field,
            format!("must be at most {MAX_DESCRIPTION} characters"),
        );
    } else if s
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        v.add(field, "must not contain control characters");
    }
}

/// Empty (no logo) or a URL that obeys the same rules as a registered URL.
pub fn logo_uri(v: &mut Violations, field: &str, s: &str, rules: Rules<'_>) {
    if !s.is_empty()
        && let Err(rule) = registered_url(s, rules.allow_insecure)
    {
        v.add(field, rule);
    }
}

/// A list of callback or logout URLs; `required` asks for at least one.
pub fn url_list(
    v: &mut Violations,
    field: &str,
    list: &[String],
    required: bool,
    rules: Rules<'_>,
) {
    if required && list.is_empty() {
        v.add(field, "at least one URL is required");
    }
    if list.len() > MAX_URLS {
        v.add(field, format!("at most {MAX_URLS} URLs"));
        return;
    }
    for (i, s) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if let Err(rule) = registered_url(s, rules.allow_insecure) {
            v.add(at, rule);
        } else if list[..i].contains(s) {
            v.add(at, "duplicate URL");
        }
    }
}

/// A list of bare origins (`https://host[:port]`) for CORS.
pub fn origin_list(v: &mut Violations, field: &str, list: &[String], rules: Rules<'_>) {
    if list.len() > MAX_URLS {
        v.add(field, format!("at most {MAX_URLS} origins"));
        return;
    }
    for (i, s) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if let Err(rule) = origin(s, rules.allow_insecure) {
            v.add(at, rule);
        } else if list[..i].contains(s) {
            v.add(at, "duplicate origin");
        }
    }
}

/// Scope names from the configured set, each once.
pub fn scope_list(v: &mut Violations, field: &str, list: &[String], rules: Rules<'_>) {
    if list.len() > MAX_SCOPES {
        v.add(field, format!("at most {MAX_SCOPES} scopes"));
        return;
    }
    for (i, s) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if rules.scopes.lookup(s).is_none() {
            v.add(
                at,
                format!(
                    "unknown scope '{}' (known: {})",
                    truncated(s, 64),
                    rules.scopes
                ),
            );
        } else if list[..i].contains(s) {
            v.add(at, "duplicate scope");
        }
    }
}

/// SPEC §3.3: an app's `scopes` may not go beyond `caller` (the caller's expanded scopes:
/// each app scope is expanded through the hierarchy before the comparison), and
/// `skip_consent` needs [`SKIP_CONSENT_SCOPE`]. Names the set does not know grant nothing and
/// pass (`scope_list` refuses them in input).
pub fn within_caller(
    v: &mut Violations,
    scopes: &ScopeSet,
    caller: Scopes,
    app_scopes: &[String],
    skip_consent: bool,
) {
    for (i, name) in app_scopes.iter().enumerate() {
        if scopes
            .lookup(name)
            .is_some_and(|s| !caller.contains(scopes.expand(s)))
        {
            v.add(
                format!("scopes[{i}]"),
                format!(
                    "{} is beyond the caller's scope {}",
                    truncated(name, 64),
                    scopes.to_highest_string(caller)
                ),
            );
        }
    }
    let may_skip = scopes
        .lookup(SKIP_CONSENT_SCOPE)
        .is_some_and(|s| caller.contains(s));
    if skip_consent && !may_skip {
        v.add("skipConsent", format!("needs {SKIP_CONSENT_SCOPE}"));
    }
}

/// At most 64 labels; keys 1–63 of `a-z 0-9 _ - .` starting with a letter; values at most
/// 256 characters without control characters.
pub fn labels(v: &mut Violations, field: &str, map: &BTreeMap<String, String>) {
    if map.len() > MAX_LABELS {
        v.add(field, format!("at most {MAX_LABELS} labels"));
        return;
    }
    for (key, value) in map {
        let at = format!("{field}.{}", truncated(key, 64));
        let key_ok = key.len() <= MAX_LABEL_KEY
            && key.starts_with(|c: char| c.is_ascii_lowercase())
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
        if !key_ok {
            v.add(
                at,
                format!(
                    "label keys must be 1-{MAX_LABEL_KEY} characters of a-z, 0-9, '_', '-', '.', starting with a letter"
                ),
            );
        } else if value.chars().count() > MAX_LABEL_VALUE {
            v.add(
                at,
                format!("label values must be at most {MAX_LABEL_VALUE} characters"),
            );
        } else if value.chars().any(char::is_control) {
            v.add(at, "label values must not contain control characters");
        }
    }
}

/// The rules for a registered redirect, logout or logo URL.
pub fn registered_url(s: &str, allow_insecure: bool) -> Result<(), String> {
    let url = absolute(s)?;
    if s.contains('#') {
        return Err("must not contain a fragment".into());
    }
    if s.contains('*') {
        return Err("must not contain wildcards".into());
    }
    secure_or_loopback(&url, allow_insecure)
}

/// A bare origin: scheme, host and optional port, written as browsers send `Origin`.
pub fn origin(s: &str, allow_insecure: bool) -> Result<(), String> {
    let url = absolute(s)?;
    let bare = url.origin().ascii_serialization();
    if bare != s {
        return Err(format!(
            "must be a bare origin (scheme://host[:port], lower case, no path, query or fragment), such as '{}'",
            truncated(&bare, 200)
        ));
    }
    secure_or_loopback(&url, allow_insecure)
}

fn absolute(s: &str) -> Result<Url, String> {
    if s.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    if !s.starts_with("https://") && !s.starts_with("http://") {
        return Err("must be an absolute URL starting with https://".into());
    }
    let url = Url::parse(s).map_err(|e| format!("is not a valid URL ({e})"))?;
    if url.host().is_none() {
        return Err("must have a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user information".into());
    }
    Ok(url)
}

fn secure_or_loopback(url: &Url, allow_insecure: bool) -> Result<(), String> {
    if url.scheme() == "https" || allow_insecure || is_loopback(url) {
        Ok(())
    } else {
        Err("must use https (http only for loopback hosts)".into())
    }
}

/// RFC 8252 §7.3 / §8.3 loopback hosts, as SPEC §3.1 lists them.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d == "localhost",
        Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    }
}

fn truncated(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn url_rules_never_panic(s in "\\PC{0,80}", insecure in any::<bool>()) {
            let _ = registered_url(&s, insecure);
            let _ = origin(&s, insecure);
        }

        #[test]
        fn origins_as_browsers_write_them_are_accepted(
            host in "[a-z]{1,10}(\\.[a-z]{1,10}){0,2}",
            port in proptest::option::of(1u16..),
        ) {
            let s = match port {
                Some(p) => format!("https://{host}:{p}"),
                None => format!("https://{host}"),
            };
            // Written as browsers write it, an https origin is accepted; only the default
            // port, which browsers leave out, is not.
            prop_assert_eq!(origin(&s, false).is_ok(), port != Some(443), "{}", s);
        }
    }

    #[test]
    fn registered_urls() {
        for good in [
            "https://client.example.com/callback",
            "https://client.example.com:8443/cb?x=1",
            "http://127.0.0.1:8080/cb",
            "http://[::1]/cb",
            "http://localhost/cb",
        ] {
            assert_eq!(registered_url(good, false), Ok(()), "{good}");
        }
        for (bad, rule) in [
            ("http://client.example.com/cb", "must use https"),
            ("https://client.example.com/cb#x", "fragment"),
            ("https://*.example.com/cb", "wildcards"),
            ("client.example.com/cb", "absolute URL"),
            ("ftp://x/cb", "absolute URL"),
            ("https://user:pw@x.example/cb", "user information"),
            ("https://x.example/a b", "spaces"),
            ("https://[zz]/", "not a valid URL"),
            ("http://127.0.0.2/cb", "must use https"),
            ("http://localhost.evil.example/cb", "must use https"),
        ] {
            let err = registered_url(bad, false).unwrap_err();
            assert!(err.contains(rule), "{bad}: {err}");
        }
        assert_eq!(registered_url("http://client.example.com/cb", true), Ok(()));
    }

    #[test]
    fn origins_are_bare() {
        assert_eq!(origin("https://client.example.com", false), Ok(()));
        assert_eq!(origin("https://client.example.com:8443", false), Ok(()));
        assert_eq!(origin("http://localhost:3000", false), Ok(()));
        for bad in [
            "https://client.example.com/",
            "https://client.example.com/app",
            "https://Client.example.com",
            "https://client.example.com:443",
            "https://client.example.com?x",
        ] {
            assert!(
                origin(bad, false).unwrap_err().contains("bare origin"),
                "{bad}"
            );
        }
        assert!(origin("http://client.example.com", false).is_err());
    }

    #[test]
    fn callers_give_apps_at_most_what_they_hold() {
        let set = ScopeSet::default_confluence();
        let held = |name| set.expand(set.lookup(name).unwrap());
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut v = Violations::default();
        within_caller(
            &mut v,
            &set,
            held("ADMIN"),
            &names(&["READ", "ADMIN"]),
            false,
        );
        assert!(v.is_empty(), "{}", v.message());
        within_caller(
            &mut v,
            &set,
            held("ADMIN"),
            &names(&["SYSTEM_ADMIN", "GONE"]),
            true,
        );
        assert_eq!(
            v.message(),
            "scopes[0]: SYSTEM_ADMIN is beyond the caller's scope ADMIN; skipConsent: needs SYSTEM_ADMIN"
        );
        let mut v = Violations::default();
        within_caller(
            &mut v,
            &set,
            held("SYSTEM_ADMIN"),
            &names(&["SYSTEM_ADMIN"]),
            true,
        );
        assert!(v.is_empty());
    }

    #[test]
    fn labels_are_bounded() {
        let mut v = Violations::default();
        let ok = BTreeMap::from([("team".to_owned(), "docs".to_owned())]);
        labels(&mut v, "labels", &ok);
        assert!(v.is_empty());
        for key in ["Team", "1team", "", "t/eam", &"k".repeat(64)] {
            let mut v = Violations::default();
            labels(
                &mut v,
                "labels",
                &BTreeMap::from([(key.to_owned(), "x".to_owned())]),
            );
            assert!(v.message().contains("label keys"), "{key:?}");
        }
        let mut v = Violations::default();
        labels(
            &mut v,
            "labels",
            &BTreeMap::from([("k".to_owned(), "x".repeat(257))]),
        );
        assert_eq!(v.0[0].field, "labels.k");
    }
}
