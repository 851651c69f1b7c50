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
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        d.error(
            span,
            format!("log.level: '{level}' is not a level or filter such as \"info\""),
        );
    }
    LogConfig { format, level }
}
