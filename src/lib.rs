//! gatehouse: a TLS-terminating reverse proxy that is also an OAuth 2.0 authorization server
//! (RFC 6749, RFC 7636, RFC 9068) and enforces bearer tokens (RFC 6750) on every proxied route.
//!
//! `App::build` binds every listener; `App::run` serves until the shutdown future resolves.

pub mod apps;
pub mod auth;
pub mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod federation;
pub mod init;
pub mod metrics;
pub mod oauth;
pub mod proxy;
pub mod server;
pub mod store;
pub mod ui;

pub use server::App;
