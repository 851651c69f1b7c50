//! The proxy half of the gateway (SPEC §3.4): path normalization, the route table, header
//! rewriting and forwarding to upstreams.

pub mod forward;
#[cfg(test)]
mod header_props;
pub mod headers;
pub mod path;
pub mod routes;
#[cfg(test)]
mod routing_props;
pub mod tunnel;
pub mod upstream;
