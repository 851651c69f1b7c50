//! auth: who the caller is — principals, bearer validation, the key material that signs and
//! verifies the gateway's JWTs (RFC 7515, RFC 7517 JWKS, RFC 7638, RFC 8037, RFC 9068,
//! RFC 8725), and the primitives it builds on: the scope model (SPEC §2, RFC 6749 §3.3),
//! password hashing (RFC 9106 argon2id) and random secrets.

pub mod accounts;
pub mod authenticator;
pub mod context;
pub mod cookies;
pub mod directory;
pub mod foreign;
pub mod jwt;
pub mod keys;
pub mod password;
pub mod principal;
pub mod providers;
mod revoked;
pub mod rules;
pub mod scope;
pub mod secret;
pub mod session;
pub mod throttle;

pub use authenticator::{AuthFailure, Authenticator};
pub use principal::{Credential, Principal};
