//! Error kinds of the gateway's own answers on proxied routes (and of requests refused before
//! a surface is chosen), and SPEC §3.3's JSON shape `{"error": {"code", "message", "details"}}`
//! they become. The other surfaces map errors in one place each: `apps::http::ApiError`,
//! `oauth::reply`, `ui::page`. Clients get a short, fixed message; the cause goes to the log
//! with the request id.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{Body, full};

/// What went wrong, from the client's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayError {
    /// No route matches the path (404).
    NoRoute,
    /// The path is malformed or dangerous (400): encoded `/` or `\`, NUL, climbing above root.
    BadPath(&'static str),
    /// The request's framing is ambiguous (400, and the connection is closed).
    BadFraming(&'static str),
    /// The route has no scope for this method (405).
    MethodNotAllowed,
    /// The upstream could not be reached or broke the exchange (502).
    UpstreamUnreachable,
    /// The upstream did not answer within the route's timeout (504).
    UpstreamTimeout,
    /// A dependency such as the store cannot answer (503); the message says which.
    Unavailable(&'static str),
    /// A bug or an unexpected failure (500).
    Internal,
}

impl GatewayError {
    pub fn status(self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::BadPath(_) | Self::BadFraming(_) => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `error.code`.
    pub fn code(self) -> &'static str {
        match self {
            Self::NoRoute => "not_found",
            Self::BadPath(_) | Self::BadFraming(_) => "invalid_argument",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UpstreamUnreachable => "bad_gateway",
            Self::UpstreamTimeout => "gateway_timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The human-readable `error.message`: fixed text, never internal detail.
    pub fn message(self) -> &'static str {
        match self {
            Self::NoRoute => "no route for this path",
            Self::BadPath(why) | Self::BadFraming(why) | Self::Unavailable(why) => why,
            Self::MethodNotAllowed => "method not allowed on this route",
            Self::UpstreamUnreachable => "the upstream service is unavailable",
            Self::UpstreamTimeout => "the upstream service did not answer in time",
            Self::Internal => "internal error",
        }
    }

    /// The JSON response, carrying the request id so an operator can find the cause in the log.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        json_error(self.status(), self.code(), self.message(), request_id)
    }
}

/// A response in SPEC §3.3's error shape.
pub fn json_error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<Body> {
    let body = serde_json::json!({
        "error": { "code": code, "message": message, "details": { "requestId": request_id } }
    });
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_have_the_spec_shape_and_no_detail() {
        let response = GatewayError::UpstreamUnreachable.into_response("req-1");
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], "bad_gateway");
        assert_eq!(v["error"]["details"]["requestId"], "req-1");
    }
}
