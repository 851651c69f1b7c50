//! The proxied request (SPEC §3.4, §5): forwarding, token enforcement, the upstream pool and
//! the holes a hostile review found in the proxy path and the connection layer.

mod auth;
mod auth_replicas;
mod forwarding;
mod groups;
mod hardening;
mod parking;
mod upstream_pool;
