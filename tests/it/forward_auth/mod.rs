//! Forward-auth (SPEC §7.4): `/auth/verify` called directly and through the real ingresses.

mod direct;
mod ingress;
mod support;
