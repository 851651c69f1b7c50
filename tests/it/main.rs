//! One integration-test binary (linked once) with a module per area; every test starts the
//! real gateway on port 0 with real TLS and a real upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod cli;
mod gateway;
mod limits;
mod prometheus;
mod reload;
