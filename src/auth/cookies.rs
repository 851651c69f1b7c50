//! The gateway's cookies (RFC 6265, SPEC §3.2): reading one by name and writing them with
//! `Secure; HttpOnly`, a `SameSite` and a `Path`.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

/// The login session (SPEC §3.2): a credential for the gateway, never for an upstream.
pub const SESSION_COOKIE: &str = "gatehouse_session";
/// The login form's CSRF secret (signed double-submit), sent only to `/login`.
pub const LOGIN_COOKIE: &str = "gatehouse_login";

/// The value of cookie `name`, if the request carries exactly one non-empty such cookie
/// made of characters the gateway itself uses (base64url).
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v);
    let value = found.next()?;
    let ok = !value.is_empty()
        && value.len() <= 256
        && value.bytes().all(crate::auth::secret::is_base64url_byte);
    // Two cookies of one name (e.g. one tossed in by a sibling domain): trust neither.
    (ok && found.next().is_none()).then_some(value)
}

/// `Set-Cookie` for `name=value`, with `Max-Age` when the cookie should outlive the browser.
pub fn set(name: &str, value: &str, path: &str, same_site: &str, max_age: Duration) -> HeaderValue {
    set_for_domain(name, value, path, same_site, max_age, "")
}

/// [`set`] with a `Domain` (RFC 6265 §5.2.3) unless `domain` is empty: the cookie then goes to
/// that domain and every host below it, not only to the host that set it.
pub fn set_for_domain(
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
    max_age: Duration,
    domain: &str,
) -> HeaderValue {
    let domain = if domain.is_empty() {
        String::new()
    } else {
        format!("; Domain={domain}")
    };
    let text = format!(
        "{name}={value}; Path={path}{domain}; Max-Age={}; Secure; HttpOnly; SameSite={same_site}",
        max_age.as_secs()
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

/// `Set-Cookie` that deletes cookie `name`.
pub fn clear(name: &str, path: &str, same_site: &str) -> HeaderValue {
    set(name, "", path, same_site, Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_cookie_and_refuses_doubles_and_odd_values() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; gatehouse_session=abc_-9"),
        );
        assert_eq!(get(&h, SESSION_COOKIE), Some("abc_-9"));
        assert_eq!(get(&h, "b"), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("gatehouse_session=other"),
        );
        assert_eq!(get(&h, SESSION_COOKIE), None);
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("gatehouse_session=a\"b"),
        );
        assert_eq!(get(&h, SESSION_COOKIE), None);
        let c = set(SESSION_COOKIE, "v", "/", "Lax", Duration::from_secs(60));
        assert_eq!(
            c,
            "gatehouse_session=v; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax"
        );
        let c = set_for_domain(
            SESSION_COOKIE,
            "v",
            "/",
            "Lax",
            Duration::from_secs(60),
            "example.com",
        );
        assert_eq!(
            c,
            "gatehouse_session=v; Path=/; Domain=example.com; Max-Age=60; Secure; HttpOnly; SameSite=Lax"
        );
    }
}
