//! A span-aware reader over a parsed TOML document that keeps going after a mistake, so that
//! `check-config` reports every problem at once, each with file:line:column.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use super::duration::parse_duration;

/// One problem in a config file, located at a line and column (both 1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The line of the problem, 1-based.
    pub line: usize,
    /// The column of the problem, 1-based, in characters.
    pub column: usize,
    /// What is wrong; most messages start with the key they are about (`server.listen: …`).
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in a config file, in the order of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where a value came from, for errors raised after decoding (cross-field checks).
pub type Span = Option<Range<usize>>;

/// A table of strings with the span of each value, and the table's own span.
pub type SpannedMap = (BTreeMap<String, (String, Span)>, Span);

/// The longest duration any key accepts: ten years. Longer ones are mistakes, and some
/// consumers (cache expiry, timestamps in the store) cannot represent them.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Where each value of the file is, by dotted key (`server.tls.cert`,
/// `oauth.signing_keys[0]`, `routes[2].upstream_ca`), as 1-based (line, column): problems found
/// after decoding, such as a certificate file that does not parse, are reported there.
#[derive(Clone, Debug, Default)]
pub struct Locations(BTreeMap<String, (usize, usize)>);

impl Locations {
    /// The line and column of `key`'s value; the start of the file when it is not in the file.
    pub fn of(&self, key: &str) -> (usize, usize) {
        self.0.get(key).copied().unwrap_or((1, 1))
    }
}

/// Reads values out of TOML tables, recording every mistake instead of stopping at the first.
pub struct Decoder<'a> {
    src: &'a str,
    file: &'a Path,
    errors: Vec<(usize, ConfigError)>,
    locations: Locations,
    lookup_env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Decoder<'a> {
    pub fn new(
        src: &'a str,
        file: &'a Path,
        lookup_env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Self {
        Self {
            src,
            file,
            errors: Vec::new(),
            locations: Locations::default(),
            lookup_env,
        }
    }

    /// The byte offset, line and column (1-based) where `span` starts (the start of the file
    /// when unknown).
    fn position(&self, span: &Span) -> (usize, usize, usize) {
        let mut offset = span.as_ref().map_or(0, |r| r.start).min(self.src.len());
        while !self.src.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.src[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (offset, line, column)
    }

    /// Remembers where the value of `section.key` is, for problems found after decoding.
    fn locate(&mut self, section: &str, key: &str, span: &Span) {
        if span.is_some() {
            let (_, line, column) = self.position(span);
            self.locations
                .0
                .insert(dotted(section, key), (line, column));
        }
    }

    /// Records a problem at `span` (the start of the file when unknown).
    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        let (offset, line, column) = self.position(&span);
        let error = ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        };
        self.errors.push((offset, error));
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// All problems, sorted by position in the file.
    pub fn into_errors(mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|(offset, _)| *offset);
        self.errors.into_iter().map(|(_, e)| e).collect()
    }

    /// Where every value read is.
    pub fn take_locations(&mut self) -> Locations {
        std::mem::take(&mut self.locations)
    }

    /// Reports every key of `table` that is not in `known`.
    pub fn reject_unknown(&mut self, table: &dyn TableLike, section: &str, known: &[&str]) {
        for (key, _) in table.iter() {
            if !known.contains(&key) {
                let span = table.key(key).and_then(|k| k.span());
                let hint = closest(key, known)
                    .map(|k| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                self.error(
                    span,
                    format!("unknown key '{}'{hint}", dotted(section, key)),
                );
            }
        }
    }

    fn value<'t>(&mut self, t: &'t dyn TableLike, section: &str, key: &str) -> Option<&'t Value> {
        match t.get(key)? {
            Item::Value(v) => {
                self.locate(section, key, &v.span());
                Some(v)
            }
            other => {
                let found = other.type_name();
                self.error(
                    other.span(),
                    format!("{}: expected a value, found {found}", dotted(section, key)),
                );
                None
            }
        }
    }

    fn wrong_type(&mut self, v: &Value, section: &str, key: &str, expected: &str) {
        let msg = format!(
            "{}: expected {expected}, found {}",
            dotted(section, key),
            v.type_name()
        );
        self.error(v.span(), msg);
    }

    /// A string (with `${ENV}` substituted) and its span; `None` when absent or wrong.
    pub fn opt_str(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
    ) -> Option<(String, Span)> {
        let v = self.value(t, section, key)?;
        match v.as_str() {
            Some(s) => {
                let span = v.span();
                let before = self.errors.len();
                let expanded = self.expand_env(s, span.clone(), section, key);
                // A value whose substitution failed is left out, so no rule downstream
                // reports a second, confusing problem about the same value.
                (self.errors.len() == before).then_some((expanded, span))
            }
            None => {
                self.wrong_type(v, section, key, "a string");
                None
            }
        }
    }

    /// A string that, when given, must not be empty: `None` when absent, wrong or empty (each
    /// reported). `what` says what to write instead, e.g. "an address such as \"0.0.0.0:8443\"".
    pub fn opt_non_empty_str(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
        what: &str,
    ) -> Option<(String, Span)> {
        let (text, span) = self.opt_str(t, section, key)?;
        if text.is_empty() {
            let raw = t.get(key).and_then(Item::as_str).unwrap_or_default();
            self.empty(raw, span, &dotted(section, key), what);
            return None;
        }
        Some((text, span))
    }

    /// Reports that `name`'s value (`raw` in the file) is empty, saying when an empty `${VAR}`
    /// made it so.
    fn empty(&mut self, raw: &str, span: Span, name: &str, what: &str) {
        let via = if raw.contains("${") {
            format!(" ('{raw}' expands to \"\")")
        } else {
            String::new()
        };
        self.error(span, format!("{name}: must not be empty{via}: give {what}"));
    }

    /// A secret that may instead be given as `KEY_file = "PATH"` (SPEC §7.5): the content of
    /// that file without its trailing newline, a relative path being relative to the config's
    /// folder. Giving both is a problem; `None` when neither is given or one was reported.
    pub fn opt_secret(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
    ) -> Option<(String, Span)> {
        let file_key = format!("{key}_file");
        if t.get(&file_key).is_none() {
            return self.opt_str(t, section, key);
        }
        let what = "the path of a file that holds the value";
        let (path, span) = self.opt_non_empty_str(t, section, &file_key, what)?;
        if t.get(key).is_some() {
            let message = format!(
                "{}: give {key} or {file_key}, not both",
                dotted(section, &file_key)
            );
            self.error(span, message);
            return None;
        }
        let base = self.file.parent().unwrap_or(Path::new("."));
        match std::fs::read_to_string(base.join(&path)) {
            Ok(mut text) => {
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                Some((text, span))
            }
            Err(e) => {
                let message = format!("{}: cannot read {path}: {e}", dotted(section, &file_key));
                self.error(span, message);
                None
            }
        }
    }

    /// [`Decoder::opt_secret`] for a secret that must be given (as `KEY` or `KEY_file`) and not
    /// be empty.
    pub fn required_secret(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
        table_span: Span,
        what: &str,
    ) -> (String, Span) {
        let file_key = format!("{key}_file");
        if t.get(key).is_none() && t.get(&file_key).is_none() {
            let message = format!("{}: required (or {file_key})", dotted(section, key));
            self.error(table_span, message);
            return (String::new(), None);
        }
        match self.opt_secret(t, section, key) {
            Some((text, span)) if text.is_empty() => {
                let raw = t.get(key).and_then(Item::as_str).unwrap_or_default();
                self.empty(raw, span, &dotted(section, key), what);
                (String::new(), None)
            }
            Some(found) => found,
            None => (String::new(), None),
        }
    }

    pub fn str(&mut self, t: &dyn TableLike, section: &str, key: &str, default: &str) -> String {
        self.opt_str(t, section, key)
            .map_or_else(|| default.to_string(), |(s, _)| s)
    }

    /// A string that must be present and not empty; `what` says what to write (see
    /// [`Decoder::opt_non_empty_str`]). An empty string and no span when it is not.
    pub fn required_non_empty_str(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
        table_span: Span,
        what: &str,
    ) -> (String, Span) {
        if t.get(key).is_none() {
            self.error(table_span, format!("{}: required", dotted(section, key)));
            return (String::new(), None);
        }
        self.opt_non_empty_str(t, section, key, what)
            .unwrap_or_default()
    }

    pub fn bool(&mut self, t: &dyn TableLike, section: &str, key: &str, default: bool) -> bool {
        let Some(v) = self.value(t, section, key) else {
            return default;
        };
        match v.as_bool() {
            Some(b) => b,
            None => {
                self.wrong_type(v, section, key, "true or false");
                default
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn int(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        let Some(v) = self.value(t, section, key) else {
            return default;
        };
        let Some(n) = v.as_integer() else {
            self.wrong_type(v, section, key, "an integer");
            return default;
        };
        match u64::try_from(n) {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.error(
                    v.span(),
                    format!(
                        "{}: must be between {min} and {max}, got {n}",
                        dotted(section, key)
                    ),
                );
                default
            }
        }
    }

    /// A duration string such as "30s"; must be at least `min` and at most [`MAX_DURATION`].
    pub fn duration(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
        default: &str,
        min: Duration,
    ) -> Duration {
        let fallback = parse_duration(default).unwrap_or_default();
        let Some((text, span)) = self.opt_str(t, section, key) else {
            return fallback;
        };
        match parse_duration(&text) {
            Ok(d) if d > MAX_DURATION => {
                let max = super::duration::format_duration(MAX_DURATION);
                self.error(
                    span,
                    format!("{}: must be at most {max}", dotted(section, key)),
                );
                fallback
            }
            Ok(d) if d >= min => d,
            Ok(_) => {
                let min = super::duration::format_duration(min);
                self.error(
                    span,
                    format!("{}: must be at least {min}", dotted(section, key)),
                );
                fallback
            }
            Err(reason) => {
                self.error(span, format!("{}: {reason}", dotted(section, key)));
                fallback
            }
        }
    }

    /// An address such as "127.0.0.1:8443". `default` applies when the key is absent; an empty
    /// string means "off" (`None`) where `empty_is_off`, and is a mistake elsewhere.
    pub fn socket_addr(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
        default: &str,
        empty_is_off: bool,
    ) -> Option<SocketAddr> {
        let (text, span) = self
            .opt_str(t, section, key)
            .unwrap_or_else(|| (default.to_string(), None));
        if text.is_empty() {
            if !empty_is_off && span.is_some() {
                let raw = t.get(key).and_then(Item::as_str).unwrap_or_default();
                let what = format!(
                    "an address such as \"{default}\" (or leave the key out for that default)"
                );
                self.empty(raw, span, &dotted(section, key), &what);
            }
            return None;
        }
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                let msg = format!(
                    "{}: '{text}' is not an address such as \"127.0.0.1:8443\"",
                    dotted(section, key)
                );
                self.error(span, msg);
                None
            }
        }
    }

    /// An array of strings, each with its span.
    pub fn str_array(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
    ) -> Vec<(String, Span)> {
        self.str_items(t, section, key, None)
    }

    /// An array of strings none of which may be empty (`what` says what to write instead);
    /// empty ones are reported and left out.
    pub fn non_empty_str_array(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
        what: &str,
    ) -> Vec<(String, Span)> {
        self.str_items(t, section, key, Some(what))
    }

    fn str_items(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
        non_empty: Option<&str>,
    ) -> Vec<(String, Span)> {
        let Some(v) = self.value(t, section, key) else {
            return Vec::new();
        };
        let Some(array) = v.as_array() else {
            self.wrong_type(v, section, key, "an array of strings");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(array.len());
        for (i, item) in array.iter().enumerate() {
            let name = format!("{key}[{i}]");
            self.locate(section, &name, &item.span());
            match item.as_str() {
                Some(s) => {
                    let before = self.errors.len();
                    let expanded = self.expand_env(s, item.span(), section, &name);
                    match non_empty {
                        Some(what) if expanded.is_empty() && self.errors.len() == before => {
                            self.empty(s, item.span(), &dotted(section, &name), what);
                        }
                        _ => out.push((expanded, item.span())),
                    }
                }
                None => self.wrong_type(item, section, &name, "a string"),
            }
        }
        out
    }

    /// A table of string values, such as a route's `scopes = { GET = "READ" }`.
    pub fn str_map(&mut self, t: &dyn TableLike, section: &str, key: &str) -> Option<SpannedMap> {
        let item = t.get(key)?;
        let Some(table) = item.as_table_like() else {
            let msg = format!(
                "{}: expected a table such as {{ GET = \"READ\" }}, found {}",
                dotted(section, key),
                item.type_name()
            );
            self.error(item.span(), msg);
            return None;
        };
        let inner = dotted(section, key);
        let mut out = BTreeMap::new();
        for (k, _) in table.iter() {
            if let Some(pair) = self.opt_str(table, &inner, k) {
                out.insert(k.to_string(), pair);
            }
        }
        Some((out, item.span()))
    }

    /// Replaces `${NAME}` with the environment variable's value; `$${` writes a literal `${`.
    fn expand_env(&mut self, raw: &str, span: Span, section: &str, key: &str) -> String {
        if !raw.contains("${") {
            return raw.to_string();
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(pos) = rest.find("${") {
            if rest[..pos].ends_with('$') {
                out.push_str(&rest[..pos - 1]);
                out.push_str("${");
                rest = &rest[pos + 2..];
                continue;
            }
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 2..];
            let Some(end) = after.find('}') else {
                self.error(
                    span,
                    format!(
                        "{}: unterminated '${{' (write $${{ for a literal)",
                        dotted(section, key)
                    ),
                );
                return out;
            };
            let name = &after[..end];
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                self.error(
                    span.clone(),
                    format!(
                        "{}: '${{{name}}}' is not an environment variable name",
                        dotted(section, key)
                    ),
                );
            } else {
                match (self.lookup_env)(name) {
                    Some(value) => out.push_str(&value),
                    None => self.error(
                        span.clone(),
                        format!(
                            "{}: environment variable {name} is not set",
                            dotted(section, key)
                        ),
                    ),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// `section.key`, or `key` for top-level keys.
pub fn dotted(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// The known key nearest to a misspelt one, when it is close enough to be a likely typo.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
