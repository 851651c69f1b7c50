//! `[server]` and `[server.tls]` (SPEC §5): the public listener's keys, each with its default
//! and its checks, decoded in one place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use toml_edit::{Item, TableLike};

use super::decode::Decoder;
use super::sections::{absolute_url, resolve, section};

/// `[server]`: the public listener.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `listen`: the TLS listener's address. Default `"0.0.0.0:8443"`.
    pub listen: SocketAddr,
    /// `public_url`: the issuer and the base of every redirect, e.g.
    /// `https://gateway.example.com`: an absolute `https://` URL (`http://` only for a loopback
    /// host) with no user, query or fragment, kept without its trailing `/`. Required.
    pub public_url: String,
    /// `trusted_proxies`: CIDRs (or bare addresses) whose `X-Forwarded-*` / `Forwarded` headers
    /// are kept. Default none.
    pub trusted_proxies: Vec<IpNet>,
    /// `shutdown_grace`: how long in-flight requests may run after SIGTERM. Default `"30s"`.
    pub shutdown_grace: Duration,
    /// `header_read_timeout`: a client must send its request head within this. Default `"10s"`
    /// (at least 100ms).
    pub header_read_timeout: Duration,
    /// `idle_timeout`: a connection with no request in flight is closed after this. Default
    /// `"60s"` (at least 100ms).
    pub idle_timeout: Duration,
    /// `request_body_timeout`: a request body to one of the gateway's own endpoints that stalls
    /// this long gets 408. Default `"30s"` (at least 100ms).
    pub request_body_timeout: Duration,
    /// `max_connections`: connections beyond this wait in the kernel's backlog. Default 10000
    /// (1 to 1000000).
    pub max_connections: usize,
    /// `max_header_bytes`: the largest request head in bytes; over it: 431. Default 16384
    /// (8192 to 1048576).
    pub max_header_bytes: usize,
    /// `max_headers`: the most header fields in one request; over it: 431. Default 100 (8 to
    /// 1000). (gatehouse extension)
    pub max_headers: usize,
    /// `http_redirect_listen`: a plain listener that answers 308 to https. Default `""` (off).
    pub http_redirect_listen: Option<SocketAddr>,
    /// `plain_listen`: a plain-HTTP listener serving everything, for use behind a
    /// TLS-terminating load balancer on a private network. Default `""` (off). (gatehouse
    /// extension)
    pub plain_listen: Option<SocketAddr>,
    /// `[server.tls]`: the certificate and key. Required.
    pub tls: TlsConfig,
}

/// `[server.tls]`: PEM files, relative to the config file's folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// `cert`: the PEM certificate chain file, served to a client whose SNI names no other
    /// certificate (or that sends none). Required.
    pub cert: PathBuf,
    /// `key`: the PEM private key file. Required.
    pub key: PathBuf,
    /// `extra = [ { cert = "b.pem", key = "b.key" } ]`: more certificates, each served to the
    /// clients whose SNI one of its SAN DNS names (wildcards included) matches. Default none.
    pub extra: Vec<CertKeyPair>,
    /// `watch`: reload every certificate and key file when it changes (certbot, cert-manager).
    /// Default `true`.
    pub watch: bool,
}

/// One `server.tls.extra` entry: a PEM certificate chain and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertKeyPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The keys of `[server]`, in the order of [`ServerConfig`].
/// Whether `ip` is in `trusted` (`server.trusted_proxies`): the one test the forwarding
/// headers and the throttles' client address both use. An IPv4-mapped IPv6 address (a
/// dual-stack listener's view of an IPv4 peer) is compared as the IPv4 address it is.
pub fn is_trusted_proxy(trusted: &[IpNet], ip: std::net::IpAddr) -> bool {
    !trusted.is_empty() && {
        let ip = ip.to_canonical();
        trusted.iter().any(|net| net.contains(&ip))
    }
}

pub(super) const KEYS: &[&str] = &[
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

/// The keys of `[server.tls]`, in the order of [`TlsConfig`].
pub(super) const TLS_KEYS: &[&str] = &["cert", "key", "extra", "watch"];

/// The keys of a `server.tls.extra` entry.
const EXTRA_KEYS: &[&str] = &["cert", "key"];

/// `[server]` (the table `t`), with its defaults; paths are resolved against `base`.
pub(super) fn decode(d: &mut Decoder<'_>, t: &dyn TableLike, base: &Path) -> ServerConfig {
    d.reject_unknown(t, "server", KEYS);
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
    d.reject_unknown(tls_t, "server.tls", TLS_KEYS);
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
    let extra = extra_pairs(d, tls_t, base);
    let watch = d.bool(tls_t, "server.tls", "watch", true);
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
            extra,
            watch,
        },
    }
}

/// `server.tls.extra`: an array of `{ cert, key }` tables, inline or as `[[server.tls.extra]]`.
fn extra_pairs(d: &mut Decoder<'_>, tls: &dyn TableLike, base: &Path) -> Vec<CertKeyPair> {
    d.refuse_env_array("server.tls", "extra");
    let Some(item) = tls.get("extra") else {
        return Vec::new();
    };
    let entries: Vec<(&dyn TableLike, crate::config::decode::Span)> = match item {
        Item::ArrayOfTables(array) => array
            .iter()
            .map(|t| (t as &dyn TableLike, t.span()))
            .collect(),
        Item::Value(toml_edit::Value::Array(array)) => {
            let mut entries = Vec::new();
            for (i, v) in array.iter().enumerate() {
                match v.as_inline_table() {
                    Some(t) => entries.push((t as &dyn TableLike, v.span())),
                    None => d.error(
                        v.span(),
                        format!(
                            "server.tls.extra[{i}]: expected a table such as {{ cert = \"b.pem\", key = \"b.key\" }}, found {}",
                            v.type_name()
                        ),
                    ),
                }
            }
            entries
        }
        other => {
            d.error(
                other.span(),
                format!(
                    "server.tls.extra: expected an array of {{ cert, key }} tables, found {}",
                    other.type_name()
                ),
            );
            return Vec::new();
        }
    };
    let mut pairs = Vec::with_capacity(entries.len());
    for (i, (t, span)) in entries.into_iter().enumerate() {
        let sec = format!("server.tls.extra[{i}]");
        d.reject_unknown(t, &sec, EXTRA_KEYS);
        let (cert, _) = d.required_non_empty_str(
            t,
            &sec,
            "cert",
            span.clone(),
            "a PEM certificate chain file",
        );
        let (key, _) = d.required_non_empty_str(t, &sec, "key", span, "a PEM private key file");
        pairs.push(CertKeyPair {
            cert: resolve(base, &cert),
            key: resolve(base, &key),
        });
    }
    pairs
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

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
