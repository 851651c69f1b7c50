//! What the tests share, none of it a test: the harness (certificates, a recording upstream,
//! the gateway in-process or as the real binary, real credentials), a database per test on
//! either engine, the authorization-server fixture and the login pieces.

pub(crate) mod harness;
pub(crate) mod idp;
pub(crate) mod login_support;
pub(crate) mod oauth_fixture;
pub(crate) mod support;
