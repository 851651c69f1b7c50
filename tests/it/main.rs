//! One integration-test binary (linked once) with a module per area; every test starts the
//! real parts: the gateway on port 0 with real TLS and a real upstream, SQLite files and a
//! throwaway PostgreSQL cluster. `helpers` holds what the tests share; it holds no tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod apps;
mod forward_auth;
mod oauth;
mod ops;
mod proxy;
mod store;
mod ui;
