//! oauth: the authorization server (RFC 6749) and its primitives — PKCE (RFC 7636), signing
//! keys and JWKS (RFC 7517, RFC 7638, RFC 8037) and JWT access tokens (RFC 9068, RFC 8725).

pub mod authorize;
pub mod caches;
pub mod client_auth;
pub mod consent;
pub mod cors;
pub mod endpoints;
pub mod error;
pub mod grant;
pub mod grant_refresh;
pub mod introspect;
pub mod jwt;
pub mod keys;
pub mod logout;
pub mod metadata;
pub mod params;
pub mod pkce;
pub mod redirect;
pub mod reply;
pub mod request;
pub mod revoke;
pub mod token;
