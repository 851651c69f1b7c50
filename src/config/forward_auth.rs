//! `[forward_auth]` (SPEC §7.4, §7.5): where a login started by an ingress's forward-auth
//! check may send the browser back to, and the session cookie's `Domain` that lets one login
//! serve every host behind that ingress, each key with its default and its checks.

use toml_edit::TableLike;

use super::decode::{Decoder, Span};

/// `[forward_auth]`: the hosts of an ingress that asks `/auth/verify`.
#[derive(Clone, Debug, Default)]
pub struct ForwardAuthConfig {
    /// `allowed_hosts`: the hosts (`app.example.com`, or `app.example.com:8443` for another
    /// port than 443) that `return_to` may name as an absolute `https://` URL after a login.
    /// Exact names, lower-case, no wildcard. Default none.
    pub allowed_hosts: Vec<String>,
    /// `cookie_domain`: the `Domain` of the `gatehouse_session` cookie (e.g. `.example.com`),
    /// kept lower-case without its leading dot; it must be `public_url`'s host or a parent of
    /// it. Default `""`: a host-only cookie.
    pub cookie_domain: String,
}

impl ForwardAuthConfig {
    /// Whether `host` (lower-case, with `:port` unless the port is 443) is one of
    /// `allowed_hosts`.
    pub fn allows_host(&self, host: &str) -> bool {
        self.allowed_hosts.iter().any(|h| h == host)
    }
}

/// The keys of `[forward_auth]`, in the order of [`ForwardAuthConfig`].
pub(super) const KEYS: &[&str] = &["allowed_hosts", "cookie_domain"];

/// `[forward_auth]` (the table `t`), with its defaults; `public_url` is `server.public_url`,
/// which `cookie_domain` must cover.
pub(super) fn decode(
    d: &mut Decoder<'_>,
    t: &dyn TableLike,
    public_url: &str,
) -> ForwardAuthConfig {
    let s = "forward_auth";
    d.reject_unknown(t, s, KEYS);
    let what = "a host name such as \"app.example.com\"";
    let mut allowed_hosts = Vec::new();
    for (i, (host, span)) in d
        .non_empty_str_array(t, s, "allowed_hosts", what)
        .into_iter()
        .enumerate()
    {
        match allowed_host(&host) {
            Ok(h) => allowed_hosts.push(h),
            Err(reason) => d.error(span, format!("{s}.allowed_hosts[{i}]: '{host}' {reason}")),
        }
    }
    let cookie_domain = match d.opt_str(t, s, "cookie_domain") {
        Some((text, span)) if !text.is_empty() => cookie_domain(d, &text, span, public_url),
        _ => String::new(),
    };
    ForwardAuthConfig {
        allowed_hosts,
        cookie_domain,
    }
}

/// An `allowed_hosts` entry: a DNS name with an optional port, kept as `return_to` URLs are
/// compared (lower-case, `:443` dropped).
fn allowed_host(text: &str) -> Result<String, String> {
    if text.contains("://") || text.contains(['/', '?', '#', '@', '*']) {
        return Err(
            "must be a host name with an optional port such as \"app.example.com\" (no scheme, path or wildcard)"
                .into(),
        );
    }
    let (name, port) = match text.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (text, None),
    };
    if !is_dns_name(name) {
        return Err("is not a host name such as \"app.example.com\"".into());
    }
    let name = name.to_ascii_lowercase();
    match port {
        None => Ok(name),
        Some(p) => match p.parse::<u16>() {
            Ok(443) => Ok(name),
            Ok(p) if p != 0 => Ok(format!("{name}:{p}")),
            _ => Err(format!("has port '{p}', not within 1 to 65535")),
        },
    }
}

/// `cookie_domain`: a DNS name (a leading `.` is allowed and dropped, as RFC 6265 §5.2.3 does)
/// that is `public_url`'s host or a parent domain of it, else the browser would refuse the
/// cookie that the login sets.
fn cookie_domain(d: &mut Decoder<'_>, text: &str, span: Span, public_url: &str) -> String {
    let domain = text.strip_prefix('.').unwrap_or(text).to_ascii_lowercase();
    if !is_dns_name(&domain) || domain.parse::<std::net::IpAddr>().is_ok() {
        d.error(
            span,
            format!(
                "forward_auth.cookie_domain: '{text}' is not a domain name such as \".example.com\""
            ),
        );
        return String::new();
    }
    let host = public_url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_ascii_lowercase));
    if let Some(host) = host {
        let covered = host == domain || host.ends_with(&format!(".{domain}"));
        if !covered {
            d.error(
                span,
                format!(
                    "forward_auth.cookie_domain: '{text}' does not cover server.public_url's host '{host}': the browser would refuse the session cookie (give '{host}' or a parent domain of it)"
                ),
            );
            return String::new();
        }
    }
    domain
}

/// Letters, digits and `-` in dot-separated labels of 1 to 63 characters.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigErrors};

    const BASE: &str = r#"[server]
public_url = "https://gw.example.com"
[server.tls]
cert = "c.pem"
key = "k.pem"
[oauth]
signing_keys = ["s.pem"]
"#;

    fn parse(extra: &str) -> Result<Config, ConfigErrors> {
        let src = format!("{BASE}{extra}");
        Config::parse(&src, std::path::Path::new("/etc/g.toml"), &|_| None)
    }

    #[test]
    fn forward_auth_keys_and_forward_auth_only_routes() {
        let c = parse(
            "[forward_auth]\nallowed_hosts = [\"App.example.com\", \"wiki.example.com:8443\"]\ncookie_domain = \".Example.com\"\n[[routes]]\npath = \"/app\"\nupstream = \"\"\nauth = \"session\"\nscope = \"READ\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.forward_auth.allowed_hosts,
            ["app.example.com", "wiki.example.com:8443"]
        );
        assert_eq!(c.forward_auth.cookie_domain, "example.com");
        assert!(c.routes[0].upstream.is_none());
        let c = parse("").unwrap();
        assert!(c.forward_auth.allowed_hosts.is_empty() && c.forward_auth.cookie_domain.is_empty());
    }

    #[test]
    fn environment_overrides_reach_forward_auth() {
        let vars = [(
            "GATEHOUSE_FORWARD_AUTH_COOKIE_DOMAIN".to_string(),
            ".example.com".to_string(),
        )];
        let c = Config::parse_with_overrides(
            BASE,
            std::path::Path::new("/etc/g.toml"),
            &|_| None,
            &vars,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.forward_auth.cookie_domain, "example.com");
        let vars = [(
            "GATEHOUSE_FORWARD_AUTH_COOKIE_DOMAIN".to_string(),
            "other.com".to_string(),
        )];
        let errors = Config::parse_with_overrides(
            BASE,
            std::path::Path::new("/etc/g.toml"),
            &|_| None,
            &vars,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            errors.contains("GATEHOUSE_FORWARD_AUTH_COOKIE_DOMAIN"),
            "{errors}"
        );
        assert!(errors.contains("does not cover"), "{errors}");
    }

    #[test]
    fn forward_auth_problems_are_located() {
        let cases = [
            (
                "[forward_auth]\ncookie_domain = \".other.com\"\n",
                "/etc/g.toml:9:17: forward_auth.cookie_domain: '.other.com' does not cover server.public_url's host 'gw.example.com'",
            ),
            (
                "[forward_auth]\ncookie_domain = \"ample.com\"\n",
                "/etc/g.toml:9:17: forward_auth.cookie_domain: 'ample.com' does not cover",
            ),
            (
                "[forward_auth]\ncookie_domain = \"10.0.0.1\"\n",
                "/etc/g.toml:9:17: forward_auth.cookie_domain: '10.0.0.1' is not a domain name",
            ),
            (
                "[forward_auth]\nallowed_hosts = [\"ok.example.com\", \"https://app.example.com\"]\n",
                "/etc/g.toml:9:36: forward_auth.allowed_hosts[1]: 'https://app.example.com' must be a host name",
            ),
            (
                "[forward_auth]\nallowed_host = []\n",
                "/etc/g.toml:9:1: unknown key 'forward_auth.allowed_host' (did you mean 'allowed_hosts'?)",
            ),
            (
                "[[routes]]\npath = \"/a\"\nupstream = \"\"\nscope = \"READ\"\nassertion = true\n",
                "/etc/g.toml:12:13: routes[0].assertion: a route with upstream = \"\" has no upstream",
            ),
        ];
        for (extra, want) in cases {
            let errors = parse(extra)
                .err()
                .unwrap_or_else(|| panic!("{extra} was accepted"));
            let got = errors.to_string();
            assert!(got.starts_with(want), "{extra}\n want {want}\n got  {got}");
        }
    }

    #[test]
    fn allowed_hosts_are_names_with_an_optional_port() {
        assert_eq!(allowed_host("App.Example.com").unwrap(), "app.example.com");
        assert_eq!(
            allowed_host("app.example.com:443").unwrap(),
            "app.example.com"
        );
        assert_eq!(
            allowed_host("app.example.com:8443").unwrap(),
            "app.example.com:8443"
        );
        for bad in [
            "https://app.example.com",
            "app.example.com/x",
            "*.example.com",
            "app..example.com",
            "app.example.com:0",
            "app.example.com:99999",
            "user@app.example.com",
            "-app.example.com",
        ] {
            assert!(allowed_host(bad).is_err(), "{bad}");
        }
    }
}
