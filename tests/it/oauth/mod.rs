//! The authorization server (SPEC §3.1): `/oauth2/authorize`, the token endpoint, revocation,
//! introspection, metadata and JWKS, and an independent client against all of them.

pub(crate) mod authorize;
mod authorize_flow;
mod crash;
mod endpoints;
mod interop;
mod token;
mod token_load;
mod token_refresh;
