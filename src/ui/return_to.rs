//! Where a login sends the browser back to (SPEC §3.2, SECURITY.md "Browser pages"): only a
//! path on this origin. Anything a browser could read as another origin — `//host`, `/\host`,
//! a scheme, control characters (browsers drop tab and newline inside URLs), or any of these
//! percent-encoded — becomes `/`.

/// The path to redirect to after login: `candidate` if it is a safe same-origin path,
/// otherwise `/`.
pub fn sanitize(candidate: Option<&str>) -> &str {
    match candidate {
        Some(c) if is_safe(c) => c,
        _ => "/",
    }
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
