//! apps: the OAuth app registry and personal access tokens (SPEC §3.3) — the management API
//! (`api`, `oauth_apps`, `pats`), its JSON and validation (`model`, `validate`, `wire`), the
//! `[[apps]]` config sync at start (`config_sync`) and `gatehouse token create` (`cli`).

pub mod api;
pub mod cli;
pub mod config_sync;
pub mod http;
pub mod model;
pub mod oauth_apps;
pub mod pats;
pub mod validate;
