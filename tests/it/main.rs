//! One integration-test binary (linked once) with a module per area; every test starts the
//! real parts: the gateway on port 0 with real TLS and a real upstream, SQLite files and a
//! throwaway PostgreSQL cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod support;

mod apps;
mod apps_cli;
mod apps_flow;
mod apps_measure;
mod apps_openapi;
mod apps_pats;
mod apps_privilege;
mod apps_revoke;
mod apps_validation;
mod architecture;
mod auth;
mod auth_replicas;
mod authorize;
mod authorize_consent;
mod authorize_flow;
mod browser;
mod cli;
mod demo;
mod gateway;
mod hardening;
mod interop;
mod limits;
mod login;
mod login_support;
mod oauth_endpoints;
mod oauth_fixture;
mod prometheus;
mod reload;
mod store;
mod store_crud;
mod store_events;
mod store_flows;
mod store_races;
mod token;
mod token_load;
mod token_refresh;
mod upstream_pool;
