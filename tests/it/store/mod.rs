//! The store contract suite, run on SQLite and PostgreSQL; `lifecycle` also holds the fixtures
//! the other modules (and the helpers) share.

mod crud;
mod events;
mod flows;
pub(crate) mod lifecycle;
mod races;
mod throttle;
mod tls;
