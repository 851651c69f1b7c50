//! oauth: the authorization server (RFC 6749) and its primitives — PKCE (RFC 7636), client
//! authentication, grants, revocation (RFC 7009), introspection (RFC 7662) and metadata
//! (RFC 8414). The keys that sign its tokens belong to `auth`, which verifies them.

pub mod caches;
pub mod client_auth;
pub mod cors;
pub mod endpoints;
pub mod error;
pub mod grant;
pub mod grant_refresh;
pub mod introspect;
pub mod metadata;
pub mod params;
pub mod pkce;
pub mod redirect;
pub mod reply;
pub mod request;
pub mod revoke;
pub mod token;
