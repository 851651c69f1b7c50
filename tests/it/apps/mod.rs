//! The management API and the app and PAT registry (SPEC §3.3); `api` also holds the helpers
//! the other modules here share.

mod api;
mod cli;
mod flow;
mod measure;
mod openapi;
mod pats;
mod privilege;
mod revoke;
mod validation;
