//! `[login]` (SPEC §5): the sign-in throttle and the session lifetime, each key with its
//! default and its bounds.

use std::time::Duration;

use toml_edit::TableLike;

use super::decode::Decoder;

/// `[login]`: sessions and throttling.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    /// `max_failures`: failed sign-ins per user name and per client address, within `window`,
    /// before a ban. Default 5 (1 to 1000).
    pub max_failures: u32,
    /// `window`: the period over which failures are counted. Default `"5m"` (at least 1s).
    pub window: Duration,
    /// `ban`: how long a name or an address that reached `max_failures` is refused (429).
    /// Default `"15m"`.
    pub ban: Duration,
    /// `session_ttl`: how long a browser session lasts. Default `"12h"` (at least 1m).
    pub session_ttl: Duration,
}

/// The keys of `[login]`, in the order of [`LoginConfig`].
pub(super) const KEYS: &[&str] = &["max_failures", "window", "ban", "session_ttl"];

/// `[login]` (the table `t`), with its defaults.
pub(super) fn decode(d: &mut Decoder<'_>, t: &dyn TableLike) -> LoginConfig {
    let s = "login";
    d.reject_unknown(t, s, KEYS);
    LoginConfig {
        max_failures: d.int(t, s, "max_failures", 5, 1, 1_000) as u32,
        window: d.duration(t, s, "window", "5m", Duration::from_secs(1)),
        ban: d.duration(t, s, "ban", "15m", Duration::ZERO),
        session_ttl: d.duration(t, s, "session_ttl", "12h", Duration::from_secs(60)),
    }
}
