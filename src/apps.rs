//! apps: the OAuth app registry and personal access tokens (SPEC §3.3).

pub mod api;
