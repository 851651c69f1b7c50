//! Identity providers and foreign issuers (SPEC §7): sign-in through an OpenID Connect
//! provider (`login`), with the test's own hostile provider for the attacks a real one never
//! makes (`hostile`).

mod hostile;
mod login;
