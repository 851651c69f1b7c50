//! Federation (SPEC §7): the foundation against a real identity provider (panva's
//! oidc-provider, `helpers::idp`), foreign access tokens on bearer routes (§7.2), and sign-in
//! through an OpenID Connect provider (§7.1, `login`), with the test's own hostile provider
//! for the attacks a real one never makes (`hostile`).

mod config;
mod hostile;
mod keys;
mod login;
mod login_browser;
mod tokens;
