//! `GET /.well-known/oauth-authorization-server` (RFC 8414 §2–3, with RFC 9207's
//! `authorization_response_iss_parameter_supported`) and `GET /oauth2/jwks` (RFC 7517 §5):
//! every key that may still verify a live token.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;

use super::reply;
use crate::auth::context::Ctx;
use crate::body::{Body, full};
use crate::oauth::endpoints::canonical_oauth_path;

pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply::method_not_allowed("GET");
    }
    let body = match canonical_oauth_path(req.uri().path()) {
        "/oauth2/jwks" => ctx.keys.jwks_json().to_owned(),
        _ => metadata(ctx),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Public and the same for everyone; short so a key rotation is seen soon.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// The RFC 8414 document, exactly the fields SPEC §3.1 lists.
pub fn metadata(ctx: &Ctx<'_>) -> String {
    let config = &ctx.config;
    let base = config.server.public_url.trim_end_matches('/');
    let scopes: Vec<&str> = ctx
        .directory
        .scopes
        .defs()
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    let pkce: &[&str] = if config.oauth.allow_plain_pkce {
        &["S256", "plain"]
    } else {
        &["S256"]
    };
    let client_auth = ["client_secret_basic", "client_secret_post", "none"];
    json!({
        "issuer": config.server.public_url,
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "introspection_endpoint": format!("{base}/oauth2/introspect"),
        "jwks_uri": format!("{base}/oauth2/jwks"),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": pkce,
        "token_endpoint_auth_methods_supported": client_auth,
        "revocation_endpoint_auth_methods_supported": client_auth,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
    })
    .to_string()
}
