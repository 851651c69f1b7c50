//! The public listener's request handler: the gateway's own endpoints first, then path
//! normalization, the route table and forwarding (SPEC §3.4), with one metric update and one
//! log line per request.

use std::time::Instant;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::Gateway;
use super::endpoints;
use crate::auth::context::Caller;
use crate::body::Body;
use crate::error::GatewayError;
use crate::metrics::{method_label, status_label};
use crate::proxy::forward::with_request_id;
use crate::proxy::headers;
use crate::proxy::pipeline::{ConnInfo, Routed};

/// Answers one request on the public listener.
pub async fn handle(gateway: &Gateway, conn: &ConnInfo, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let request_id = headers::request_id(req.headers());
    let method = method_label(req.method());
    let http2 = req.version() == http::Version::HTTP_2;
    let live = gateway.live.load_full();
    let framing = framing_error(&req);
    let own = endpoints::classify(req.uri().path(), live.config.oauth.confluence_paths)
        .filter(|_| framing.is_none());
    // Who a request to an own endpoint came from (a proxied one carries its principal).
    let mut caller: Option<Caller> = None;
    let routed = match (framing, own) {
        (Some(e), _) => Routed::early(Err(e), None),
        (None, Some(endpoints::Endpoint::Verify)) => {
            // Not through `endpoints::handle`: the access log wants the principal decided.
            let ctx = gateway.ctx(&live, conn.peer, &request_id);
            let mut routed =
                Box::pin(crate::proxy::verify::handle(&ctx, &live.proxy, conn, req)).await;
            routed.response = routed.response.map(|r| with_request_id(r, &request_id));
            routed
        }
        (None, Some(endpoint)) => {
            // Boxed: the gateway's own endpoints make a large future, and the proxy path should
            // not carry (and move) its size on every request.
            let mut response = Box::pin(endpoints::handle(
                endpoint,
                gateway,
                &live,
                conn,
                &request_id,
                req,
            ))
            .await;
            if response.status() == http::StatusCode::REQUEST_TIMEOUT && !http2 {
                // The rest of a body that stalled may still come: this connection is done.
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            caller = response.extensions_mut().remove::<Caller>();
            Routed::early(Ok(with_request_id(response, &request_id)), None)
        }
        (None, None) => {
            let ctx = gateway.ctx(&live, conn.peer, &request_id);
            crate::proxy::pipeline::handle(&ctx, &live.proxy, conn, req).await
        }
    };
    let Routed {
        response,
        route,
        principal,
        upstream,
    } = routed;
    let response = response.unwrap_or_else(|e| {
        let mut response = with_request_id(e.into_response(id_str(&request_id)), &request_id);
        if matches!(e, GatewayError::BadFraming(_)) && !http2 {
            // The rest of the byte stream cannot be trusted: close after answering.
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    });
    let status = response.status();
    let elapsed = started.elapsed();
    let label = match &route {
        Some(r) => {
            r.request_duration.observe(elapsed.as_secs_f64());
            r.label.as_str()
        }
        None => own.map_or("none", endpoints::Endpoint::label),
    };
    gateway
        .metrics
        .http_requests
        .with_label_values(&[label, method, status_label(status)])
        .inc();
    tracing::info!(
        target: "gatehouse::access",
        request_id = id_str(&request_id),
        route = label,
        method,
        status = status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        upstream_ms = upstream.map(|d| d.as_secs_f64() * 1000.0),
        user = principal
            .as_deref()
            .map(|p| p.user())
            .or_else(|| caller.as_ref().and_then(|c| c.user.as_deref())),
        client_id = principal
            .as_deref()
            .and_then(|p| p.client_id())
            .or_else(|| caller.as_ref().and_then(|c| c.client_id.as_deref())),
        peer = %conn.peer.ip(),
    );
    response
}

fn id_str(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or("-")
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one `Host`, and it is a valid
/// `host[:port]` (no user information, no spaces); HTTP/2's `:authority` obeys the same rule.
/// hyper already refuses duplicate or invalid `Content-Length`, obs-fold, whitespace before the
/// colon and bare LF, and reads `Transfer-Encoding` + `Content-Length` by the former alone, then
/// closes the connection (RFC 9112 §6.3), so nothing after that request is ever parsed.
fn framing_error(req: &Request<Incoming>) -> Option<GatewayError> {
    if let Some(authority) = req.uri().authority()
        && !is_host_and_port(authority.as_str().as_bytes())
    {
        return Some(GatewayError::BadFraming(
            "the request's authority is not a valid host[:port]",
        ));
    }
    let headers = req.headers();
    let mut hosts = headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => Some(GatewayError::BadFraming(
            "an HTTP/1.1 request needs exactly one Host header",
        )),
        (None, None) if req.version() == http::Version::HTTP_11 => Some(GatewayError::BadFraming(
            "an HTTP/1.1 request needs exactly one Host header",
        )),
        (Some(host), None) if !is_host_and_port(host.as_bytes()) => Some(GatewayError::BadFraming(
            "the Host header is not a valid host[:port]",
        )),
        _ => None,
    }
}

/// RFC 9112 §3.2 / RFC 3986 §3.2.2: `uri-host [ ":" port ]`, where the host is a reg-name
/// (unreserved, percent-encoded and sub-delimiter characters), an IPv4 address or a bracketed
/// IPv6 literal, and the port is digits. User information (`user@host`) and anything else
/// (spaces, `/`, `\`) are refused.
pub fn is_host_and_port(authority: &[u8]) -> bool {
    let (host, port) = match authority.first() {
        Some(b'[') => match authority.iter().position(|&b| b == b']') {
            Some(end) => (&authority[..=end], &authority[end + 1..]),
            None => return false,
        },
        _ => match authority.iter().rposition(|&b| b == b':') {
            Some(colon) => (&authority[..colon], &authority[colon..]),
            None => (authority, &[][..]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    let host_ok = match host {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        _ => {
            !host.is_empty()
                && host
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b))
        }
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::is_host_and_port;

    #[test]
    fn hosts_are_host_and_port_only() {
        for ok in [
            "localhost",
            "localhost:8443",
            "a.example.com",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8443",
            "xn--bcher-kva.example",
        ] {
            assert!(is_host_and_port(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "user@localhost",
            "local host",
            "a/b",
            "a\\b",
            "[::1",
            "host:99999x",
            "host:123456",
            ":80",
            "[]",
            "a:b:c",
        ] {
            assert!(!is_host_and_port(bad.as_bytes()), "{bad}");
        }
    }
}
