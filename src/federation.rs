//! federation: the gateway's calls out to identity providers and other token issuers (SPEC §7):
//! an HTTPS client with its own trust, limits and timeout (`client`), RFC 8414 / OpenID
//! Connect Discovery 1.0 metadata (`discovery`), and each issuer's JSON Web Key Set with the
//! verification of the JWTs it signs (`jwks`, RFC 7517, RFC 7515, RFC 8725).
//!
//! It sits between `store` and `auth`: `auth` checks foreign access tokens (§7.2) with it, and
//! the login through an OpenID Connect provider (§7.1) verifies ID tokens with the same
//! [`jwks::KeySet::verify`]. It imports leaves only.
//!
//! The public surface is small on purpose:
//! - [`Outbound`]: `get_json`, `post_form` (one client per provider, built from its `ca`);
//! - [`discovery::discover`] → [`discovery::Metadata`];
//! - [`KeySet`]: `new`, `start` (background refresh), `verify` → [`Verified`] or
//!   [`VerifyError`] (`is_unavailable()` tells "no keys at all", a 503, from a bad token, a 401).

pub mod client;
pub mod discovery;
pub mod jwks;

pub use client::{Outbound, OutboundError, Reply, Trust};
pub use discovery::{DiscoveryError, Metadata};
pub use jwks::{Expectations, KeySet, KeySource, Verified, VerifyError};
