//! The browser pages (SPEC §3.1, §3.2): login and logout, consent, and the whole flow in
//! headless Chromium.

mod browser;
mod consent;
mod login;
mod throttle_replicas;
