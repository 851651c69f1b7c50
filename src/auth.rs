//! auth: principals, bearer validation and the security primitives it builds on — the scope
//! model (SPEC §2, RFC 6749 §3.3), password hashing (RFC 9106 argon2id) and random secrets.

pub mod authenticator;
pub mod directory;
pub mod password;
pub mod principal;
mod revoked;
pub mod rules;
pub mod scope;
pub mod secret;
pub mod throttle;

pub use authenticator::{AuthFailure, Authenticator};
pub use principal::{Principal, PrincipalKind};
