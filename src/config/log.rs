//! `[log]` (SPEC §5, and the access log of SPEC §7.5): the log format and filter, their
//! defaults and their checks.

use toml_edit::TableLike;

use super::decode::Decoder;

/// `[log]`: how the gateway logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `format`: `"text"` or `"json"`, for every line including the access log. Default
    /// `"text"`.
    pub format: LogFormat,
    /// `level`: a `tracing` filter such as `info` or `gatehouse=debug`; `RUST_LOG` wins when
    /// set. Default `"info"`.
    pub level: String,
}

/// `log.format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `"text"`: human-readable lines (the default).
    Text,
    /// `"json"`: one JSON object per line.
    Json,
}

/// The keys of `[log]`, in the order of [`LogConfig`].
pub(super) const KEYS: &[&str] = &["format", "level"];

/// `[log]` (the table `t`), with its defaults.
pub(super) fn decode(d: &mut Decoder<'_>, t: &dyn TableLike) -> LogConfig {
    d.reject_unknown(t, "log", KEYS);
    let format = match d.opt_str(t, "log", "format") {
        None => LogFormat::Text,
        Some((f, _)) if f == "text" => LogFormat::Text,
        Some((f, _)) if f == "json" => LogFormat::Json,
        Some((f, span)) => {
            d.error(
                span,
                format!("log.format: must be \"text\" or \"json\", got \"{f}\""),
            );
            LogFormat::Text
        }
    };
    let what = "a level or filter such as \"info\"";
    let (level, span) = d
        .opt_non_empty_str(t, "log", "level", what)
        .unwrap_or_else(|| ("info".into(), None));
    if log_filter(&level).is_none() {
        d.error(
            span,
            format!("log.level: '{level}' is not a level or filter such as \"info\""),
        );
    }
    LogConfig { format, level }
}

/// `log.level` and `RUST_LOG`: comma-separated directives, each a level (`info`) or
/// `target=level` (`gatehouse::proxy=debug`). A bare word that is not a level is refused rather
/// than read as a target name, as `tracing`'s own parser would (then `level = "verbose"` would
/// silence every log line).
pub fn log_filter(directives: &str) -> Option<tracing_subscriber::filter::Targets> {
    use tracing_subscriber::filter::LevelFilter;
    let level = |s: &str| s.trim().parse::<LevelFilter>().ok();
    let well_formed = directives
        .split(',')
        .all(|directive| match directive.split_once('=') {
            Some((target, lvl)) => {
                let target = target.trim();
                !target.is_empty()
                    && !target.contains(char::is_whitespace)
                    && !lvl.contains('=')
                    && level(lvl).is_some()
            }
            None => level(directive).is_some(),
        });
    if !well_formed {
        return None;
    }
    directives.parse().ok()
}
