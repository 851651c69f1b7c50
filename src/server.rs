//! Listeners, TLS, dispatch and graceful shutdown (being written for issue 2).

/// The running gateway.
pub struct App;
