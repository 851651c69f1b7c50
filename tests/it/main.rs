//! The one integration-test binary: each module is one area of the project.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod store;
mod store_crud;
mod store_events;
mod store_flows;
mod store_races;
