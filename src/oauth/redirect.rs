//! Redirect URIs (RFC 6749 §3.1.2, §4.1.2; RFC 9700 §4.1.3; RFC 8252 §7.3; RFC 9207): exact
//! string matching against the registered URIs, the only exception being the port of an
//! `http` loopback IP literal; and building the redirect back to the client with `state` and
//! `iss` on every answer.

/// Loopback IP-literal prefixes whose port may vary (RFC 8252 §7.3). `localhost` is not one:
/// RFC 8252 §8.3 advises against it, and SPEC §3.1 names the IP literals only.
const LOOPBACK_PREFIXES: [&str; 2] = ["http://127.0.0.1", "http://[::1]"];

/// Whether `presented` is one of `registered`: byte-for-byte equal (RFC 3986 §6.2.1 simple
/// string comparison: no case folding, no normalization, no prefix), or equal but for the
/// port of a loopback IP literal.
pub fn is_registered(presented: &str, registered: &[String]) -> bool {
    registered.iter().any(|r| {
        r == presented
            || matches!((split_loopback(r), split_loopback(presented)), (Some(a), Some(b)) if a == b)
    })
}

/// `http://127.0.0.1:8080/cb?x` → `("http://127.0.0.1", "/cb?x")`, the port dropped; `None`
/// for anything that is not an http loopback IP-literal URI.
fn split_loopback(uri: &str) -> Option<(&str, &str)> {
    let prefix = LOOPBACK_PREFIXES.iter().find(|p| uri.starts_with(*p))?;
    let rest = &uri[prefix.len()..];
    let rest = match rest.strip_prefix(':') {
        Some(port_and_rest) => {
            let digits = port_and_rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 5 {
                return None;
            }
            &port_and_rest[digits..]
        }
        None => rest,
    };
    // The authority must end here, or "http://127.0.0.1.evil.com" would count.
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return None;
    }
    Some((prefix, rest))
}

/// Whether a redirect URI may be used at all: `https`, or `http` to a loopback host (RFC 8252
/// §7.3), or any `http` when `allow_insecure` (development only). No fragment (RFC 6749
/// §3.1.2), no whitespace or control characters.
pub fn is_acceptable(uri: &str, allow_insecure: bool) -> bool {
    if uri.contains('#') || uri.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return false;
    }
    if uri.starts_with("https://") {
        return origin(uri).is_some();
    }
    if !uri.starts_with("http://") {
        return false;
    }
    allow_insecure
        || split_loopback(uri).is_some()
        || matches!(
            origin(uri).map(|o| o.trim_start_matches("http://")),
            Some(a) if a == "localhost" || a.starts_with("localhost:")
        )
}

/// `scheme://authority` of an http(s) URI, when the authority is plain (letters, digits,
/// `.-:[]`); what a CSP `form-action` source may name.
pub fn origin(uri: &str) -> Option<&str> {
    let scheme_len = if uri.starts_with("https://") {
        8
    } else if uri.starts_with("http://") {
        7
    } else {
        return None;
    };
    let end = uri[scheme_len..]
        .find(['/', '?', '#'])
        .map_or(uri.len(), |i| scheme_len + i);
    let authority = &uri[scheme_len..end];
    let plain = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    plain.then(|| &uri[..end])
}

/// `uri` with `params` appended to its query (RFC 6749 §4.1.2: the registered query is
/// kept), form-encoded.
pub fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let query = query.finish();
    let sep = match uri.find('?') {
        None => "?",
        Some(i) if i + 1 == uri.len() || uri.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{uri}{sep}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn matching_is_exact_but_for_loopback_ports() {
        let r = reg(&[
            "https://app.example/cb",
            "http://127.0.0.1/native",
            "http://[::1]:8080/v6",
        ]);
        assert!(is_registered("https://app.example/cb", &r));
        for bad in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://app.example/Cb",
            "https://APP.example/cb",
            "https://app.example/cb#f",
            "https://app.example/c",
            "https://app.example/cb/../cb",
            "https://app.example:443/cb",
            "https://app.example.evil.com/cb",
            "http://app.example/cb",
            "http://127.0.0.1.evil.com/native",
            "http://127.0.0.1:80x/native",
            "http://127.0.0.1:1234/other",
            "http://localhost:1234/native",
        ] {
            assert!(!is_registered(bad, &r), "{bad}");
        }
        assert!(is_registered("http://127.0.0.1:53127/native", &r));
        assert!(is_registered("http://127.0.0.1/native", &r));
        assert!(is_registered("http://[::1]/v6", &r));
        assert!(is_registered("http://[::1]:1/v6", &r));
    }

    #[test]
    fn insecure_uris_only_for_loopback_or_when_allowed() {
        assert!(is_acceptable("https://a.example/cb", false));
        assert!(is_acceptable("http://127.0.0.1:9/cb", false));
        assert!(is_acceptable("http://localhost:9/cb", false));
        assert!(!is_acceptable("http://a.example/cb", false));
        assert!(is_acceptable("http://a.example/cb", true));
        assert!(!is_acceptable("https://a.example/cb#x", true));
        assert!(!is_acceptable("javascript:alert(1)", true));
        assert!(!is_acceptable("https://a.example/c b", false));
    }

    #[test]
    fn parameters_are_appended_encoded() {
        assert_eq!(
            with_params(
                "https://a.example/cb",
                &[("code", "x y"), ("state", "a&b=c")]
            ),
            "https://a.example/cb?code=x+y&state=a%26b%3Dc"
        );
        assert_eq!(
            with_params("https://a.example/cb?k=v", &[("error", "access_denied")]),
            "https://a.example/cb?k=v&error=access_denied"
        );
        assert_eq!(
            origin("https://a.example:8443/cb?x"),
            Some("https://a.example:8443")
        );
        assert_eq!(origin("https://a.example"), Some("https://a.example"));
        assert_eq!(origin("https://a;b/cb"), None);
    }

    proptest::proptest! {
        /// Outside the loopback exception, only the identical string matches.
        #[test]
        fn only_identical_uris_match(suffix in "[a-zA-Z0-9/?=&.%:#-]{0,16}") {
            let registered = reg(&["https://app.example/cb"]);
            let presented = format!("https://app.example/cb{suffix}");
            proptest::prop_assert_eq!(is_registered(&presented, &registered), suffix.is_empty());
        }

        #[test]
        fn loopback_matching_never_panics(uri in "http://(127\\.0\\.0\\.1|\\[::1\\])[:0-9a-z/?.]{0,12}") {
            let registered = reg(&["http://127.0.0.1/cb", "http://[::1]:80/cb"]);
            let _ = is_registered(&uri, &registered);
        }
    }
}
