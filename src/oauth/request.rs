//! Reading a request to the token, revocation or introspection endpoint (RFC 6749 §3.2,
//! RFC 7009 §2.1, RFC 7662 §2.1): `POST` with an `application/x-www-form-urlencoded` body of
//! at most 64 KiB, plus the query string for Confluence compatibility (SPEC §3.1) — except
//! `client_secret`, which a URL may carry only with `oauth.allow_query_credentials`. A
//! parameter given twice, in one place or across both, is `invalid_request`.

use http::request::Parts;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::params::{MAX_FORM_BYTES, Params};
use super::reply;
use crate::auth::context::Ctx;
use crate::body::Body;
use crate::body::{ReadError, read_to_limit};

/// A parsed endpoint request.
pub struct OAuthRequest {
    pub parts: Parts,
    pub params: Params,
}

/// Reads and parses the request, or answers it with the error.
pub async fn read(ctx: &Ctx<'_>, req: Request<Incoming>) -> Result<OAuthRequest, Response<Body>> {
    if req.method() != Method::POST {
        return Err(reply::method_not_allowed("POST"));
    }
    let (parts, body) = req.into_parts();
    let query = match parts.uri.query().map(Params::parse).transpose() {
        Ok(q) => q.unwrap_or_default(),
        Err(e) => return Err(reply::error(&e, false)),
    };
    if query.contains("client_secret") && !ctx.config.oauth.allow_query_credentials {
        let e = reply::invalid_request("client_secret must not be sent in the URL");
        return Err(reply::error(&e, false));
    }
    let timeout = ctx.config.server.request_body_timeout;
    let bytes = match read_to_limit(body, MAX_FORM_BYTES, timeout).await {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge) => {
            let e = reply::invalid_request("the request body is larger than 64 KiB");
            return Err(reply::error_at(StatusCode::PAYLOAD_TOO_LARGE, &e, false));
        }
        Err(ReadError::TimedOut) => {
            let e = reply::invalid_request("the request body did not arrive in time");
            return Err(reply::error_at(StatusCode::REQUEST_TIMEOUT, &e, false));
        }
        Err(ReadError::Unreadable(e)) => {
            tracing::debug!(error = %e, "oauth request body could not be read");
            return Err(reply::error(
                &reply::invalid_request("unreadable body"),
                false,
            ));
        }
    };
    if !bytes.is_empty() && !is_form(&parts) {
        let e = reply::invalid_request("the body must be application/x-www-form-urlencoded");
        return Err(reply::error(&e, false));
    }
    let form = std::str::from_utf8(&bytes)
        .map_err(|_| reply::invalid_request("the body is not UTF-8"))
        .and_then(Params::parse)
        .and_then(|form| form.merge(query));
    match form {
        Ok(params) => Ok(OAuthRequest { parts, params }),
        Err(e) => Err(reply::error(&e, false)),
    }
}

fn is_form(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}
