//! Federation (SPEC §7): the foundation against a real identity provider (panva's
//! oidc-provider, `helpers::idp`), and foreign access tokens on bearer routes (§7.2).

mod config;
mod keys;
mod tokens;
