//! Header rewriting between client and upstream (RFC 9110 §7.6.1 hop-by-hop fields, RFC 7239
//! and the X-Forwarded-* convention, SECURITY.md "Headers between client and upstream"):
//! identity headers are stripped in every spelling a backend might fold together, headers
//! named in `Connection` are dropped, and forwarding headers are replaced unless the peer is a
//! trusted proxy.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_AUTH_ASSERTION: HeaderName = HeaderName::from_static("x-auth-assertion");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// A field named `close`, should anyone send one: `Connection: close` names it too.
static CLOSE: HeaderName = HeaderName::from_static("close");
/// The h2c upgrade's settings (RFC 7540 §3.2.1): a field of that one hop, and only ever sent
/// with an upgrade the gateway never passes on.
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Fields that describe one connection and never cross a proxy (RFC 9110 §7.6.1).
static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::PROXY_AUTHENTICATE,
    &header::PROXY_AUTHORIZATION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &HTTP2_SETTINGS,
];

/// Client-sent names (after folding `_` and `.` to `-`) that only a trusted proxy may set.
const FORWARDING_NAMES: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
];

/// What the gateway adds and what it refuses to pass on.
#[derive(Clone, Debug)]
pub struct HeaderPolicy {
    /// Identity header names, lower-case with `-`; stripped from every request in any spelling.
    identity: Vec<String>,
    /// The first letters of `identity` as bits (`a` = bit 0): a field whose name starts with
    /// no such letter is skipped without comparing it with every identity name.
    identity_initials: u32,
    trusted_proxies: Vec<IpNet>,
    user_header: HeaderName,
    scopes_header: HeaderName,
    client_id_header: HeaderName,
    groups_header: HeaderName,
    /// `auth.forward_groups`: the groups the upstream may hear of; empty for every group.
    forward_groups: Vec<String>,
}

/// Who the gateway vouches for, as the upstream receives it (SPEC §3.4).
pub struct Identity<'a> {
    pub user: &'a HeaderValue,
    pub scopes: &'a HeaderValue,
    pub client_id: Option<&'a HeaderValue>,
    /// The caller's groups, for `X-Auth-Groups` (SPEC §7.3).
    pub groups: &'a [std::sync::Arc<str>],
    /// The `X-Auth-Assertion` JWT, on routes with `assertion = true`.
    pub assertion: Option<HeaderValue>,
}

use crate::auth::cookies::SESSION_COOKIE;

/// Facts about the client's connection that go into forwarding headers.
pub struct ClientFacts<'a> {
    pub peer: IpAddr,
    /// `peer` as an `X-Forwarded-For` value, made once per connection.
    pub peer_value: &'a HeaderValue,
    /// `"https"` or `"http"`.
    pub scheme: &'static str,
    pub host: Option<HeaderValue>,
    pub request_id: &'a HeaderValue,
}

impl HeaderPolicy {
    /// `identity_headers` are the user, scopes, client-id and groups header names, in that
    /// order.
    pub fn new(identity_headers: &[&HeaderName], trusted_proxies: Vec<IpNet>) -> Self {
        let name = |i: usize, default: &'static str| {
            identity_headers
                .get(i)
                .map_or_else(|| HeaderName::from_static(default), |h| (*h).clone())
        };
        let (user_header, scopes_header, client_id_header, groups_header) = (
            name(0, "x-auth-user"),
            name(1, "x-auth-scopes"),
            name(2, "x-auth-client-id"),
            name(3, "x-auth-groups"),
        );
        let mut identity: Vec<String> = [&user_header, &scopes_header, &client_id_header]
            .into_iter()
            .chain(identity_headers.iter().copied())
            .chain([&groups_header])
            .map(|h| h.as_str().replace(['_', '.'], "-"))
            .collect();
        identity.push(X_AUTH_ASSERTION.as_str().to_string());
        identity.push(X_REQUEST_ID.as_str().to_string());
        identity.sort();
        identity.dedup();
        let identity_initials = identity
            .iter()
            .filter_map(|name| name.bytes().next())
            .fold(0, |bits, first| bits | initial_bit(first));
        Self {
            identity,
            identity_initials,
            trusted_proxies,
            user_header,
            scopes_header,
            client_id_header,
            groups_header,
            forward_groups: Vec::new(),
        }
    }

    /// Tells the upstream only of `groups` (`auth.forward_groups`; empty: every group).
    #[must_use]
    pub fn forwarding_groups(mut self, groups: Vec<String>) -> Self {
        self.forward_groups = groups;
        self
    }

    /// Whether `peer` is in `server.trusted_proxies`; an IPv4-mapped IPv6 address (a dual-stack
    /// listener's view of an IPv4 peer) is compared as the IPv4 address it is.
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        crate::config::is_trusted_proxy(&self.trusted_proxies, peer)
    }

    /// Rewrites a client's request headers for the upstream, whose `Host` is `upstream_host`
    /// (RFC 9110 §7.2). `upgrade` keeps `Upgrade` and `Connection: upgrade` for a WebSocket
    /// handshake. `Authorization` goes on only with `keep_authorization` (the route's
    /// `forward_authorization`), whatever the route's `auth`: a public upstream must not
    /// collect the clients' tokens.
    pub fn prepare_request(
        &self,
        headers: &mut HeaderMap,
        upstream_host: &HeaderValue,
        facts: &ClientFacts<'_>,
        upgrade: bool,
        keep_authorization: bool,
        identity: Option<&Identity<'_>>,
    ) {
        let trusted = self.is_trusted(facts.peer);
        // `Connection: upgrade` names the Upgrade field itself; keep its value for the handshake.
        let upgrade_to = if upgrade {
            headers.get(header::UPGRADE).cloned()
        } else {
            None
        };
        remove_connection_named(headers);
        // One pass over the (few) fields the client sent, rather than a lookup for each name
        // that might be there: the hot path's cost scales with what is present. Hop-by-hop
        // fields are noted as bits; only identity and forwarding fields need a list.
        let mut hop_by_hop = 0;
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| {
                let bit = hop_by_hop_bit(name, upgrade);
                hop_by_hop |= bit;
                bit == 0
                    && (self.is_identity(name.as_str())
                        || (!trusted && is_forwarding(name.as_str())))
            })
            .cloned()
            .collect();
        remove_marked(headers, hop_by_hop);
        for name in doomed {
            headers.remove(name);
        }
        if !keep_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        // Replaces the client's Host in place: cheaper than a removal and an insertion.
        headers.insert(header::HOST, upstream_host.clone());
        strip_session_cookie(headers);
        self.set_forwarding(headers, facts, trusted);
        headers.insert(X_REQUEST_ID.clone(), facts.request_id.clone());
        if let Some(id) = identity {
            self.set_identity(headers, id);
        }
        if let Some(protocol) = upgrade_to {
            headers.insert(header::UPGRADE, protocol);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }

    /// Sets the identity headers of `id` (with the configured names) in `headers`: a proxied
    /// request's, or a forward-auth answer's for the ingress to copy.
    pub fn set_identity(&self, headers: &mut HeaderMap, id: &Identity<'_>) {
        headers.insert(self.user_header.clone(), id.user.clone());
        headers.insert(self.scopes_header.clone(), id.scopes.clone());
        if let Some(client) = id.client_id {
            headers.insert(self.client_id_header.clone(), client.clone());
        }
        if let Some(groups) = self.groups_value(id.groups) {
            headers.insert(self.groups_header.clone(), groups);
        }
        if let Some(assertion) = &id.assertion {
            headers.insert(X_AUTH_ASSERTION.clone(), assertion.clone());
        }
    }

    /// [`HeaderPolicy::set_identity`] for a forward-auth answer (SPEC §7.4): every identity
    /// header is present, empty when it does not apply (no client id for a PAT or a session, no
    /// group), so that an ingress that copies the answer's headers overwrites any value the
    /// client made up rather than letting it through, and one whose copy of an absent header
    /// misbehaves (Caddy 2.6 passes its placeholder on literally) gets an empty value.
    pub fn set_identity_answer(&self, headers: &mut HeaderMap, id: &Identity<'_>) {
        self.set_identity(headers, id);
        for name in [&self.client_id_header, &self.groups_header] {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), HeaderValue::from_static(""));
            }
        }
    }

    /// The space-separated groups the upstream may hear of; `None` when there are none. A
    /// group name that a header cannot carry as one word (a provider's `"Wiki Admins"`) is
    /// left out rather than split into two groups the caller is not in.
    fn groups_value(&self, groups: &[std::sync::Arc<str>]) -> Option<HeaderValue> {
        if groups.is_empty() {
            return None;
        }
        let mut text = String::new();
        for group in groups {
            let listed = self.forward_groups.is_empty()
                || self.forward_groups.iter().any(|g| **g == **group);
            if listed && !group.is_empty() && group.bytes().all(|b| b.is_ascii_graphic()) {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(group);
            }
        }
        if text.is_empty() {
            return None;
        }
        HeaderValue::from_str(&text).ok()
    }

    fn is_identity(&self, name: &str) -> bool {
        name.bytes()
            .next()
            .is_some_and(|first| self.identity_initials & initial_bit(first) != 0)
            && self.identity.iter().any(|id| folded_eq(name, id))
    }

    fn set_forwarding(&self, headers: &mut HeaderMap, facts: &ClientFacts<'_>, trusted: bool) {
        let peer = facts.peer_value;
        let prior = if trusted {
            headers.get(&X_FORWARDED_FOR).map(|v| v.as_bytes())
        } else {
            None
        };
        match prior {
            Some(prior) => {
                let mut joined = Vec::with_capacity(prior.len() + 2 + peer.len());
                joined.extend_from_slice(prior);
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(peer.as_bytes());
                if let Ok(v) = HeaderValue::from_bytes(&joined) {
                    headers.insert(X_FORWARDED_FOR.clone(), v);
                }
            }
            None => {
                headers.insert(X_FORWARDED_FOR.clone(), peer.clone());
            }
        }
        if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
            headers.insert(
                X_FORWARDED_PROTO.clone(),
                HeaderValue::from_static(facts.scheme),
            );
        }
        if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
            match facts.host.clone() {
                Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host),
                None => headers.remove(&X_FORWARDED_HOST),
            };
        }
    }
}

/// The bit of a header name's first byte among the letters (`a` = bit 0, `z` = bit 25); digits
/// and punctuation share bit 31.
fn initial_bit(first: u8) -> u32 {
    match first {
        b'a'..=b'z' => 1 << (first - b'a'),
        _ => 1 << 31,
    }
}

/// Cleans an upstream response for the client: hop-by-hop fields go (except on a `101` for an
/// upgrade), a `Set-Cookie` for the gateway's own session cookie goes (an upstream must not be
/// able to fix a user's session), and the request id is echoed.
pub fn prepare_response(
    headers: &mut HeaderMap,
    request_id: &HeaderValue,
    switching_protocols: bool,
) {
    if !switching_protocols {
        remove_connection_named(headers);
        let hop_by_hop = headers
            .keys()
            .fold(0, |mask, name| mask | hop_by_hop_bit(name, false));
        remove_marked(headers, hop_by_hop);
    }
    drop_session_set_cookie(headers);
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
}

/// Removes every `Set-Cookie` that names the gateway's session cookie, keeping the others.
fn drop_session_set_cookie(headers: &mut HeaderMap) {
    let names_ours = |v: &HeaderValue| {
        let cookie = v.as_bytes();
        let name = cookie.split(|&b| b == b'=').next().unwrap_or(cookie);
        name.trim_ascii() == SESSION_COOKIE.as_bytes()
    };
    if !headers.get_all(header::SET_COOKIE).iter().any(names_ours) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !names_ours(v))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for v in kept {
        headers.append(header::SET_COOKIE, v);
    }
}

/// `Upgrade`'s bit, after those of `HOP_BY_HOP`, in a mask of fields to remove.
const UPGRADE_BIT: u16 = 1 << HOP_BY_HOP.len();

/// The bit of `name` in a mask of fields to remove: its place in `HOP_BY_HOP`, or
/// `UPGRADE_BIT` for `Upgrade` unless it is kept; 0 for any other field. A mask noted during
/// the one pass over the fields needs no list to be allocated, on every request and response.
fn hop_by_hop_bit(name: &HeaderName, keep_upgrade: bool) -> u16 {
    match HOP_BY_HOP.iter().position(|h| *h == name) {
        Some(i) => 1 << i,
        None if !keep_upgrade && name == header::UPGRADE => UPGRADE_BIT,
        None => 0,
    }
}

/// Removes the fields whose bits are set in `mask` (see [`hop_by_hop_bit`]).
fn remove_marked(headers: &mut HeaderMap, mask: u16) {
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if mask & (1 << i) != 0 {
            headers.remove(*name);
        }
    }
    if mask & UPGRADE_BIT != 0 {
        headers.remove(header::UPGRADE);
    }
}

/// Removes the gateway's session cookie from `Cookie`, keeping the others.
fn strip_session_cookie(headers: &mut HeaderMap) {
    let carries = headers.get_all(header::COOKIE).iter().any(|v| {
        v.as_bytes()
            .windows(SESSION_COOKIE.len())
            .any(|w| w == SESSION_COOKIE.as_bytes())
    });
    if !carries {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty() && pair.split('=').next().map(str::trim) != Some(SESSION_COOKIE)
        })
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if let Ok(v) = HeaderValue::from_str(&kept.join("; "))
        && !kept.is_empty()
    {
        headers.insert(header::COOKIE, v);
    }
}

/// Drops every field named in `Connection` (RFC 9110 §7.6.1). Both callers then remove the
/// hop-by-hop fields and `Upgrade` themselves, so the usual values (`keep-alive`, `upgrade`,
/// `close`) are not parsed as field names: nearly every upstream response carries one.
fn remove_connection_named(headers: &mut HeaderMap) {
    let mut named: Vec<HeaderName> = Vec::new();
    let mut close = false;
    for token in connection_tokens(headers) {
        if token.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if !(token.is_empty()
            || token.eq_ignore_ascii_case(b"upgrade")
            || HOP_BY_HOP
                .iter()
                .any(|h| token.eq_ignore_ascii_case(h.as_str().as_bytes())))
            && let Ok(name) = HeaderName::from_bytes(token)
        {
            named.push(name);
        }
    }
    if close {
        headers.remove(&CLOSE);
    }
    for name in named {
        headers.remove(name);
    }
}

/// The comma-separated tokens of every `Connection` field, trimmed (RFC 9110 §7.6.1). Bytes,
/// not text: a token is only ever compared with ASCII names.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
}

/// Whether the `Connection` header of a request names `token` (case-insensitive).
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// A valid client `X-Request-Id` (1–128 of `[A-Za-z0-9._-]`, not named in `Connection`), or a
/// new UUID.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        let valid = (1..=128).contains(&b.len())
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if valid && !connection_has(headers, "x-request-id") {
            return v.clone();
        }
    }
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn is_forwarding(name: &str) -> bool {
    let starts_x_forwarded = name.len() > 12 && folded_eq(&name[..12], "x-forwarded-");
    starts_x_forwarded || FORWARDING_NAMES.iter().any(|f| folded_eq(name, f))
}

/// Compares a lower-case header name with `target`, treating `_` and `.` as `-` the way WSGI,
/// PHP and others fold them into the same variable.
fn folded_eq(name: &str, target: &str) -> bool {
    name.len() == target.len()
        && name.bytes().zip(target.bytes()).all(|(a, b)| {
            let a = if a == b'_' || a == b'.' { b'-' } else { a };
            a == b
        })
}

/// A client address as a header value (IPv4-mapped IPv6 addresses written as IPv4).
pub fn ip_header_value(ip: IpAddr) -> HeaderValue {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    static UPSTREAM_HOST: HeaderValue = HeaderValue::from_static("backend:8080");

    fn policy(trusted: &[&str]) -> HeaderPolicy {
        let user = HeaderName::from_static("x-auth-user");
        let scopes = HeaderName::from_static("x-auth-scopes");
        HeaderPolicy::new(
            &[&user, &scopes],
            trusted.iter().map(|c| c.parse().unwrap()).collect(),
        )
    }

    static PEER: HeaderValue = HeaderValue::from_static("203.0.113.7");

    fn facts(rid: &HeaderValue) -> ClientFacts<'_> {
        ClientFacts {
            peer: "203.0.113.7".parse().unwrap(),
            peer_value: &PEER,
            scheme: "https",
            host: Some(HeaderValue::from_static("gw.example.com")),
            request_id: rid,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn forged_identity_headers_go_in_every_spelling() {
        let rid = HeaderValue::from_static("r1");
        let mut h = headers(&[
            ("x-auth-user", "admin"),
            ("x_auth_user", "admin"),
            ("x.auth.scopes", "ADMIN"),
            ("x-auth-assertion", "x"),
            ("x-other", "ok"),
        ]);
        policy(&[]).prepare_request(&mut h, &UPSTREAM_HOST, &facts(&rid), false, false, None);
        assert!(
            h.get("x-auth-user").is_none()
                && h.get("x_auth_user").is_none()
                && h.get("x.auth.scopes").is_none()
        );
        assert!(h.get("x-auth-assertion").is_none());
        assert_eq!(h["x-other"], "ok");
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let rid = HeaderValue::from_static("r1");
        let mut h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=1.2.3.4"),
            ("x_forwarded_uri", "/admin"),
            ("x-original-url", "/admin"),
        ]);
        policy(&[]).prepare_request(&mut h, &UPSTREAM_HOST, &facts(&rid), false, false, None);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7");
        assert_eq!(h["x-forwarded-host"], "gw.example.com");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(
            h.get("forwarded").is_none()
                && h.get("x_forwarded_uri").is_none()
                && h.get("x-original-url").is_none()
        );
    }

    #[test]
    fn mapped_ipv4_peers_are_trusted_as_ipv4() {
        let p = policy(&["10.0.0.0/8"]);
        assert!(p.is_trusted("::ffff:10.1.2.3".parse().unwrap()));
        assert!(p.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(!p.is_trusted("::ffff:11.1.2.3".parse().unwrap()));
    }

    #[test]
    fn trusted_proxies_are_appended_to() {
        let rid = HeaderValue::from_static("r1");
        let mut h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        policy(&["203.0.113.0/24"]).prepare_request(
            &mut h,
            &UPSTREAM_HOST,
            &facts(&rid),
            false,
            false,
            None,
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 203.0.113.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["forwarded"], "for=1.2.3.4");
    }

    #[test]
    fn connection_named_and_hop_by_hop_headers_go_but_ours_stay() {
        let rid = HeaderValue::from_static("fresh-id");
        let mut h = headers(&[
            (
                "connection",
                "keep-alive, X-Request-Id, x-forwarded-for, x-secret",
            ),
            ("x-secret", "1"),
            ("x-request-id", "client"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("keep-alive", "5"),
            ("host", "gw"),
        ]);
        policy(&[]).prepare_request(&mut h, &UPSTREAM_HOST, &facts(&rid), false, false, None);
        assert!(h.get("x-secret").is_none() && h.get("te").is_none() && h.get("upgrade").is_none());
        assert!(
            h.get("connection").is_none()
                && h.get("keep-alive").is_none()
                && h["host"] == "backend:8080"
        );
        assert_eq!(h["x-request-id"], "fresh-id");
        assert_eq!(h["x-forwarded-for"], "203.0.113.7");
    }

    #[test]
    fn request_ids_are_kept_only_when_valid() {
        assert_eq!(
            request_id(&headers(&[("x-request-id", "abc-123_x.y")])),
            "abc-123_x.y"
        );
        for bad in ["has space", "semi;colon", &"a".repeat(129)] {
            let id = request_id(&headers(&[("x-request-id", bad)]));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 36);
        }
        let named = headers(&[("x-request-id", "abc"), ("connection", "x-request-id")]);
        assert_ne!(request_id(&named), "abc");
    }

    #[test]
    fn responses_lose_hop_by_hop_fields_and_echo_the_id() {
        let rid = HeaderValue::from_static("r9");
        let mut h = headers(&[
            ("connection", "close, x-internal"),
            ("x-internal", "1"),
            ("keep-alive", "5"),
            ("content-type", "text/plain"),
        ]);
        prepare_response(&mut h, &rid, false);
        assert!(h.get("x-internal").is_none() && h.get("connection").is_none());
        assert_eq!(h["x-request-id"], "r9");
        assert_eq!(h["content-type"], "text/plain");
    }

    #[test]
    fn usual_connection_tokens_still_remove_what_they_name() {
        // The common tokens skip the name parser; what they name must go all the same, in any
        // case and across several Connection lines, and other fields must stay.
        let rid = HeaderValue::from_static("r1");
        let mut h = headers(&[
            ("connection", "Keep-Alive, CLOSE"),
            ("connection", " Upgrade , X-Hop "),
            ("keep-alive", "timeout=5"),
            ("close", "a field named close"),
            ("upgrade", "websocket"),
            ("x-hop", "1"),
            ("x-kept", "2"),
        ]);
        prepare_response(&mut h, &rid, false);
        for gone in ["connection", "keep-alive", "close", "upgrade", "x-hop"] {
            assert!(h.get(gone).is_none(), "{gone} was kept");
        }
        assert_eq!(h["x-kept"], "2");
        // A value with bytes outside ASCII still has its ASCII tokens honoured.
        let mut h = headers(&[("x-hop", "1"), ("x-kept", "2")]);
        h.append(
            "connection",
            HeaderValue::from_bytes(b"x-hop, caf\xc3\xa9").unwrap(),
        );
        prepare_response(&mut h, &rid, false);
        assert!(h.get("x-hop").is_none() && h.get("connection").is_none());
        assert_eq!(h["x-kept"], "2");
        let mut h = headers(&[
            ("connection", "close"),
            ("close", "1"),
            ("content-length", "3"),
        ]);
        policy(&[]).prepare_request(&mut h, &UPSTREAM_HOST, &facts(&rid), false, false, None);
        assert!(h.get("close").is_none() && h.get("connection").is_none());
        assert_eq!(h["content-length"], "3");
    }
}
