//! Where a login sends the browser back to (SPEC §3.2, SECURITY.md "Browser pages"): only a
//! path on this origin. Anything a browser could read as another origin — `//host`, `/\host`,
//! a scheme, control characters (browsers drop tab and newline inside URLs), or any of these
//! percent-encoded — becomes `/`. After a forward-auth check (SPEC §7.4) the original URL on
//! the ingress's host may be named too: an absolute `https://` URL whose host is one of
//! `forward_auth.allowed_hosts`, exactly.

use crate::config::ForwardAuthConfig;

/// The path to redirect to after login: `candidate` if it is a safe same-origin path,
/// otherwise `/`.
pub fn sanitize(candidate: Option<&str>) -> &str {
    match candidate {
        Some(c) if is_safe(c) => c,
        _ => "/",
    }
}

/// The place to redirect to after login: `candidate` if it is a safe same-origin path or an
/// absolute `https://` URL on one of `forward_auth.allowed_hosts`, otherwise `/`.
pub fn sanitize_for<'a>(candidate: Option<&'a str>, forward_auth: &ForwardAuthConfig) -> &'a str {
    match candidate {
        Some(c) if is_safe(c) || is_allowed_absolute(c, forward_auth) => c,
        _ => "/",
    }
}

/// Whether `candidate` is `https://HOST[:PORT]` followed by nothing or a safe path (as
/// [`is_safe`] judges it), with `HOST[:PORT]` in `allowed_hosts`. The authority may hold only
/// letters, digits, `-`, `.` and one `:PORT`, so that no parser can read another host out of it
/// (no `@`, `\`, `%`, whitespace).
fn is_allowed_absolute(candidate: &str, forward_auth: &ForwardAuthConfig) -> bool {
    if forward_auth.allowed_hosts.is_empty() || candidate.len() > 8192 {
        return false;
    }
    let Some(rest) = candidate.strip_prefix("https://") else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().unwrap_or(0))
        }
        Some(_) => return false,
    };
    if !host_ok || port == Some(0) {
        return false;
    }
    let host = host.to_ascii_lowercase();
    let key = match port {
        None | Some(443) => host,
        Some(p) => format!("{host}:{p}"),
    };
    forward_auth.allows_host(&key) && (path.is_empty() || is_safe(path))
}

/// Whether `candidate` is a same-origin absolute path (with an optional query) that stays one
/// however many times it is percent-decoded.
pub fn is_safe(candidate: &str) -> bool {
    if candidate.len() > 8192 {
        return false;
    }
    if !is_safe_once(candidate) {
        return false;
    }
    let mut text = candidate.to_owned();
    // Decode until stable (bounded): an attacker may encode twice, hoping for a second
    // decoder. Decoded forms are checked up to the query: the query may hold anything
    // (`scope=READ%20WRITE`), but the path must stay a path on this origin.
    for _ in 0..4 {
        let path = text.split('?').next().unwrap_or_default();
        if !is_safe_once(path) {
            return false;
        }
        match percent_decode(&text) {
            Some(decoded) if decoded == text => return true,
            Some(decoded) => text = decoded,
            // Not decodable to UTF-8: a browser would see raw bytes; refuse.
            None => return false,
        }
    }
    false
}

fn is_safe_once(s: &str) -> bool {
    let bytes = s.as_bytes();
    // Must be an absolute path: "/" then anything but a second "/" or "\" (RFC 3986 §4.2
    // network-path reference, and the WHATWG parser's backslash-as-slash rule).
    if bytes.first() != Some(&b'/') || matches!(bytes.get(1), Some(b'/' | b'\\')) {
        return false;
    }
    // No backslash, whitespace or control anywhere: browsers strip tab/CR/LF and so would
    // turn "/\t/evil" into "//evil"; a header value could not carry them either.
    !bytes
        .iter()
        .any(|&b| b == b'\\' || b <= b' ' || b == 0x7f || !b.is_ascii())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`: a path and query
/// made safe to carry as the value of `return_to`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_paths_pass() {
        for ok in [
            "/",
            "/wiki/page",
            "/oauth2/authorize?client_id=abc&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=x",
            "/oauth2/authorize?scope=READ%20WRITE&state=a%2520b%5C",
        ] {
            assert_eq!(sanitize(Some(ok)), ok, "{ok}");
        }
    }

    #[test]
    fn anything_that_could_leave_the_origin_becomes_root() {
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https://evil.com",
            "https:evil.com",
            "javascript:alert(1)",
            "evil.com",
            "",
            "/%2F/evil.com",
            "/%2f%2fevil.com",
            "%2F%2Fevil.com",
            "/%5Cevil.com",
            "/%09/evil.com",
            "/\t/evil.com",
            "/%0d%0aSet-Cookie:x",
            "/%252F%252Fevil.com",
            "/%25252F/evil.com",
            "/ /evil.com",
            "/a%20b",
            "/\u{e9}",
            "/%ff",
        ] {
            assert_eq!(sanitize(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(sanitize(None), "/");
    }

    fn allowing(hosts: &[&str]) -> ForwardAuthConfig {
        ForwardAuthConfig {
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            cookie_domain: String::new(),
        }
    }

    #[test]
    fn absolute_urls_only_on_allowed_hosts() {
        let fa = allowing(&["app.example.com", "wiki.example.com:8443"]);
        for ok in [
            "https://app.example.com",
            "https://app.example.com/",
            "https://App.Example.com/x?y=1",
            "https://app.example.com:443/x",
            "https://wiki.example.com:8443/page",
            "/same/origin",
        ] {
            assert_eq!(sanitize_for(Some(ok), &fa), ok, "{ok}");
        }
        for bad in [
            "http://app.example.com/x",
            "https://evil.com/x",
            "https://app.example.com.evil.com/",
            "https://app.example.com@evil.com/",
            "https://evil.com\\@app.example.com/",
            "https://app.example.com:8443/x",
            "https://wiki.example.com/x",
            "https://app.example.com//evil.com",
            "https://app.example.com/\\evil.com",
            "https://app.example.com%2F@evil.com",
            "https://app.example.com:/x",
            "https://app.example.com/%09/evil.com",
            "HTTPS://app.example.com/",
            "//app.example.com/",
        ] {
            assert_eq!(sanitize_for(Some(bad), &fa), "/", "{bad:?}");
        }
        // Without allowed hosts, only same-origin paths.
        let none = allowing(&[]);
        assert_eq!(sanitize_for(Some("https://app.example.com/"), &none), "/");
    }

    proptest::proptest! {
        /// Whatever comes in, what goes out is "/" or the input itself, and neither it nor
        /// any decoding of it starts a network-path reference.
        #[test]
        fn output_is_root_or_a_safe_input(input in "[/\\\\%0-9a-fA-F:.?=&a-z\t ]{0,24}") {
            let out = sanitize(Some(&input));
            proptest::prop_assert!(out == "/" || out == input);
            let mut text = out.to_owned();
            for _ in 0..4 {
                proptest::prop_assert!(text.starts_with('/'));
                proptest::prop_assert!(!text.starts_with("//") && !text.starts_with("/\\"));
                match percent_decode(&text) {
                    Some(d) => text = d,
                    None => break,
                }
            }
        }
    }
}
