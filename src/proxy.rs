//! The proxy half of the gateway (SPEC §3.4): the proxied request from route match to the
//! upstream's answer (`pipeline`), with path normalization, the route table, the check of the
//! caller against the route (`guard`), header rewriting, forwarding and tunnels; and the
//! forward-auth decision for an ingress (`verify`, SPEC §7.4) made by the same route and guard.

pub mod forward;
pub mod guard;
#[cfg(test)]
mod header_props;
pub mod headers;
pub mod path;
pub mod pipeline;
pub mod routes;
#[cfg(test)]
mod routing_props;
pub mod tunnel;
pub mod upstream;
pub mod verify;
