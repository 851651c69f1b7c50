//! A span-aware reader over a parsed TOML document that keeps going after a mistake, so that
//! `check-config` reports every problem at once, each with file:line:column — or, for a value
//! from the environment (`GATEHOUSE_<SECTION>_<KEY>`, SPEC §7.5), with the variable's name.
//!
//! The environment overrides live here, in the one place every key is read through: a key of
//! a table section read with any of the [`Decoder`]'s typed readers (`server.tls.cert` through
//! `opt_str`, `login.max_failures` through `int`, …) is first looked up as
//! `GATEHOUSE_SERVER_TLS_CERT`, `GATEHOUSE_LOGIN_MAX_FAILURES`, and the variable's text is
//! parsed as that reader's type. A section added later gets its overrides by reading its keys
//! through the decoder (`Decoder::present` instead of `t.get(key)` for presence). Keys of
//! arrays of tables (`routes[0].path`) have none.

use std::collections::{BTreeMap, BTreeSet};
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
    /// The environment variable the value came from (`GATEHOUSE_STORE_URL`), named instead of
    /// the line and column; `None` for a value of the file.
    pub variable: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(variable) = &self.variable {
            return write!(f, "{variable}: {}", self.message);
        }
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

/// Where each value is, by dotted key (`server.tls.cert`, `oauth.signing_keys[0]`,
/// `routes[2].upstream_ca`): a 1-based (line, column) of the file, or the environment variable
/// that gave it. Problems found after decoding, such as a certificate file that does not
/// parse, are reported there.
#[derive(Clone, Debug, Default)]
pub struct Locations(BTreeMap<String, Place>);

/// Where one value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Place {
    File { line: usize, column: usize },
    Env(String),
}

impl Locations {
    /// A problem with `key`'s value in `file`: at its line and column (the start of the file
    /// when it is not in the file), or naming its environment variable.
    pub fn error(&self, file: &Path, key: &str, message: String) -> ConfigError {
        let (line, column, variable) = match self.0.get(key) {
            Some(Place::File { line, column }) => (*line, *column, None),
            Some(Place::Env(var)) => (1, 1, Some(var.clone())),
            None => (1, 1, None),
        };
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            message,
            variable,
        }
    }
}

/// The prefix of every override (SPEC §7.5).
pub const ENV_PREFIX: &str = "GATEHOUSE_";

/// `GATEHOUSE_<SECTION>_<KEY>` for a key of a table section (`server.tls`, `cert` →
/// `GATEHOUSE_SERVER_TLS_CERT`); `None` at the top level and in arrays of tables, whose keys
/// the environment cannot set.
pub fn env_name(section: &str, key: &str) -> Option<String> {
    if section.is_empty() || section.contains('[') {
        return None;
    }
    Some(format!(
        "{ENV_PREFIX}{}_{}",
        section.replace('.', "_").to_ascii_uppercase(),
        key.to_ascii_uppercase()
    ))
}

/// A `GATEHOUSE_*` variable of the environment, offered to the decoder as an override.
struct Override {
    name: String,
    value: String,
    /// Whether a key read it.
    used: bool,
}

/// Reads values out of TOML tables, recording every mistake instead of stopping at the first.
pub struct Decoder<'a> {
    src: &'a str,
    file: &'a Path,
    errors: Vec<(usize, ConfigError)>,
    locations: Locations,
    lookup_env: &'a dyn Fn(&str) -> Option<String>,
    /// The `GATEHOUSE_*` variables, by name. A value taken from one gets a span past the end
    /// of `src` (`src.len() + 1 + index`), so that every problem reported at that span, now or
    /// after decoding, names the variable instead of a line.
    overrides: Vec<Override>,
    /// Every variable name a key could be set by, for "did you mean" hints.
    env_names: BTreeSet<String>,
    /// The top-level keys (sections) and the table sections read: a `GATEHOUSE_<SECTION>_…`
    /// variable under one of them must name a key.
    env_sections: BTreeSet<String>,
}

/// What a key's value is: a value of the file, or the text of an environment variable with
/// its (virtual) span.
enum Found<'t> {
    File(&'t Value),
    Env(String, Span),
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
            overrides: Vec::new(),
            env_names: BTreeSet::new(),
            env_sections: BTreeSet::new(),
        }
    }

    /// Offers `vars` (name, value: the process's `GATEHOUSE_*` variables) as overrides.
    pub fn with_overrides(mut self, vars: &[(String, String)]) -> Self {
        self.overrides = vars
            .iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .map(|(name, value)| Override {
                name: name.clone(),
                value: value.clone(),
                used: false,
            })
            .collect();
        self
    }

    /// The override of `section.key`, if one is set: its text and virtual span (marked used).
    fn override_of(&mut self, section: &str, key: &str) -> Option<(String, Span)> {
        let name = env_name(section, key)?;
        self.env_sections.insert(section.to_owned());
        let index = self.overrides.iter().position(|o| o.name == name);
        self.env_names.insert(name);
        let index = index?;
        self.overrides[index].used = true;
        let at = self.src.len() + 1 + index;
        let var = self.overrides[index].name.clone();
        self.locations
            .0
            .insert(dotted(section, key), Place::Env(var));
        Some((self.overrides[index].value.clone(), Some(at..at + 1)))
    }

    /// Refuses an override of `section.key`, a key the environment cannot set (an array of
    /// tables such as `server.tls.extra`), naming the variable.
    pub fn refuse_env_array(&mut self, section: &str, key: &str) {
        if let Some((_, span)) = self.override_of(section, key) {
            let msg = format!(
                "{}: an array cannot be set from the environment; set it in the file",
                dotted(section, key)
            );
            self.error(span, msg);
        }
    }

    /// Whether `key` is given, in `t` or by the environment: what decoders use instead of
    /// `t.get(key)` to tell a missing key.
    pub fn present(&mut self, t: &dyn TableLike, section: &str, key: &str) -> bool {
        self.override_of(section, key).is_some() || t.get(key).is_some()
    }

    /// The variable a span past the end of the file stands for.
    fn variable_at(&self, span: &Span) -> Option<&str> {
        let start = span.as_ref()?.start;
        let index = start.checked_sub(self.src.len() + 1)?;
        self.overrides.get(index).map(|o| o.name.as_str())
    }

    /// Reports every `GATEHOUSE_<SECTION>_…` variable that no key read, where `<SECTION>` is
    /// a section of the file (a misspelt key must not silently do nothing). Not overrides, and
    /// so never reported: a variable the file itself names in `${…}`, the ones Kubernetes sets
    /// for a Service (`…_SERVICE_HOST`, `…_SERVICE_PORT…`, `…_PORT`, `…_PORT_<n>_<proto>…`),
    /// and every `GATEHOUSE_*` variable under no section (`GATEHOUSE_CONFIG`, test switches).
    pub fn reject_unused_overrides(&mut self) {
        let referenced = referenced_variables(self.src);
        let prefixes: Vec<String> = self
            .env_sections
            .iter()
            .map(|s| format!("{ENV_PREFIX}{}_", s.replace('.', "_").to_ascii_uppercase()))
            .collect();
        let names: Vec<&str> = self.env_names.iter().map(String::as_str).collect();
        let mut problems = Vec::new();
        for (index, o) in self.overrides.iter().enumerate() {
            let ours = prefixes.iter().any(|p| o.name.starts_with(p.as_str()));
            if o.used
                || !ours
                || referenced.contains(&o.name)
                || is_kubernetes_service_variable(&o.name)
            {
                continue;
            }
            let hint = closest(&o.name, &names)
                .map(|n| format!(" (did you mean {n}?)"))
                .unwrap_or_default();
            let at = self.src.len() + 1 + index;
            problems.push((
                Some(at..at + 1),
                format!(
                    "names no key that the environment can set{hint}: GATEHOUSE_<SECTION>_<KEY> \
                     sets a key of a table section (not of [[arrays]], not an array)"
                ),
            ));
        }
        for (span, message) in problems {
            self.error(span, message);
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
                .insert(dotted(section, key), Place::File { line, column });
        }
    }

    /// Records a problem at `span` (the start of the file when unknown; the variable when the
    /// value came from the environment).
    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        let variable = self.variable_at(&span).map(str::to_owned);
        let (offset, line, column) = match (&variable, &span) {
            (Some(_), Some(range)) => (range.start, 1, 1),
            _ => self.position(&span),
        };
        let error = ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
            variable,
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

    /// Reports every key of `table` that is not in `known`. At the top level (`section` ""),
    /// `known` are the sections, whose names start the environment's overrides.
    pub fn reject_unknown(&mut self, table: &dyn TableLike, section: &str, known: &[&str]) {
        if section.is_empty() {
            self.env_sections
                .extend(known.iter().map(|k| (*k).to_owned()));
        }
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

    fn value<'t>(&mut self, t: &'t dyn TableLike, section: &str, key: &str) -> Option<Found<'t>> {
        if let Some((text, span)) = self.override_of(section, key) {
            return Some(Found::Env(text, span));
        }
        match t.get(key)? {
            Item::Value(v) => {
                self.locate(section, key, &v.span());
                Some(Found::File(v))
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

    /// An environment variable's text that is not of the key's type.
    fn wrong_env(&mut self, text: &str, span: Span, section: &str, key: &str, expected: &str) {
        let msg = format!(
            "{}: expected {expected}, found '{text}'",
            dotted(section, key)
        );
        self.error(span, msg);
    }

    /// The text the file gives `key` (for the "expands to" hint), or "" when the value came
    /// from the environment.
    fn file_text(&self, t: &dyn TableLike, key: &str, span: &Span) -> String {
        if self.variable_at(span).is_some() {
            return String::new();
        }
        t.get(key)
            .and_then(Item::as_str)
            .unwrap_or_default()
            .to_owned()
    }
    /// A string (with `${ENV}` substituted) and its span; `None` when absent or wrong.
    pub fn opt_str(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
    ) -> Option<(String, Span)> {
        let v = match self.value(t, section, key)? {
            // Taken as it is: `${…}` is the file's syntax, not the environment's.
            Found::Env(text, span) => return Some((text, span)),
            Found::File(v) => v,
        };
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
            let raw = self.file_text(t, key, &span);
            self.empty(&raw, span, &dotted(section, key), what);
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
    /// folder. Giving both is a problem; `None` when neither is given or one was reported. The
    /// environment's `KEY` or `KEY_file` replaces both of the file's.
    pub fn opt_secret(
        &mut self,
        t: &dyn TableLike,
        section: &str,
        key: &str,
    ) -> Option<(String, Span)> {
        let file_key = format!("{key}_file");
        let what = "the path of a file that holds the value";
        match (
            self.override_of(section, key),
            self.override_of(section, &file_key),
        ) {
            (Some(_), Some((_, span))) => {
                let message = format!(
                    "{}: give {key} or {file_key}, not both",
                    dotted(section, &file_key)
                );
                self.error(span, message);
                return None;
            }
            (Some(found), None) => return Some(found),
            (None, Some((path, span))) => {
                if path.is_empty() {
                    self.empty("", span, &dotted(section, &file_key), what);
                    return None;
                }
                return self.read_secret_file(&path, span, section, &file_key);
            }
            (None, None) => {}
        }
        if t.get(&file_key).is_none() {
            return self.opt_str(t, section, key);
        }
        let (path, span) = self.opt_non_empty_str(t, section, &file_key, what)?;
        if t.get(key).is_some() {
            let message = format!(
                "{}: give {key} or {file_key}, not both",
                dotted(section, &file_key)
            );
            self.error(span, message);
            return None;
        }
        self.read_secret_file(&path, span, section, &file_key)
    }

    /// The content of the secret file at `path` (relative to the config's folder) without its
    /// trailing newline.
    fn read_secret_file(
        &mut self,
        path: &str,
        span: Span,
        section: &str,
        file_key: &str,
    ) -> Option<(String, Span)> {
        let base = self.file.parent().unwrap_or(Path::new("."));
        match std::fs::read_to_string(base.join(path)) {
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
                let message = format!("{}: cannot read {path}: {e}", dotted(section, file_key));
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
        if !self.present(t, section, key) && !self.present(t, section, &file_key) {
            let message = format!("{}: required (or {file_key})", dotted(section, key));
            self.error(table_span, message);
            return (String::new(), None);
        }
        match self.opt_secret(t, section, key) {
            Some((text, span)) if text.is_empty() => {
                let raw = self.file_text(t, key, &span);
                self.empty(&raw, span, &dotted(section, key), what);
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
        if !self.present(t, section, key) {
            self.error(table_span, format!("{}: required", dotted(section, key)));
            return (String::new(), None);
        }
        self.opt_non_empty_str(t, section, key, what)
            .unwrap_or_default()
    }

    pub fn bool(&mut self, t: &dyn TableLike, section: &str, key: &str, default: bool) -> bool {
        let v = match self.value(t, section, key) {
            None => return default,
            Some(Found::Env(text, span)) => {
                return match text.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        self.wrong_env(&text, span, section, key, "true or false");
                        default
                    }
                };
            }
            Some(Found::File(v)) => v,
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
        let (n, span) = match self.value(t, section, key) {
            None => return default,
            Some(Found::Env(text, span)) => match text.trim().parse::<i64>() {
                Ok(n) => (n, span),
                Err(_) => {
                    self.wrong_env(&text, span, section, key, "an integer");
                    return default;
                }
            },
            Some(Found::File(v)) => match v.as_integer() {
                Some(n) => (n, v.span()),
                None => {
                    self.wrong_type(v, section, key, "an integer");
                    return default;
                }
            },
        };
        match u64::try_from(n) {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.error(
                    span,
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
                let raw = self.file_text(t, key, &span);
                let what = format!(
                    "an address such as \"{default}\" (or leave the key out for that default)"
                );
                self.empty(&raw, span, &dotted(section, key), &what);
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
        let v = match self.value(t, section, key) {
            None => return Vec::new(),
            Some(Found::Env(_, span)) => {
                let msg = format!(
                    "{}: an array cannot be set from the environment; set it in the file",
                    dotted(section, key)
                );
                self.error(span, msg);
                return Vec::new();
            }
            Some(Found::File(v)) => v,
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
        if let Some((_, span)) = self.override_of(section, key) {
            let msg = format!(
                "{}: a table cannot be set from the environment; set it in the file",
                dotted(section, key)
            );
            self.error(span, msg);
            return None;
        }
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

/// The names the file uses in `${NAME}`: values for its substitutions, not overrides.
fn referenced_variables(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(pos) = rest.find("${") {
        let after = &rest[pos + 2..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if after[name.len()..].starts_with('}') {
            out.insert(name);
        }
        rest = after;
    }
    out
}

/// Whether `name` has the shape of a variable Kubernetes sets for a Service named like the
/// gateway (`GATEHOUSE_ADMIN_SERVICE_HOST`, `GATEHOUSE_STORE_PORT_5432_TCP_ADDR`, …).
fn is_kubernetes_service_variable(name: &str) -> bool {
    if name.ends_with("_SERVICE_HOST") || name.contains("_SERVICE_PORT") || name.ends_with("_PORT")
    {
        return true;
    }
    // …_PORT_<n>_<TCP|UDP|SCTP>, optionally followed by _PROTO, _PORT or _ADDR.
    let Some((_, tail)) = name.rsplit_once("_PORT_") else {
        return false;
    };
    let mut parts = tail.split('_');
    let number = parts
        .next()
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let protocol = parts
        .next()
        .is_some_and(|p| matches!(p, "TCP" | "UDP" | "SCTP"));
    let field = match parts.next() {
        None => true,
        Some(f) => matches!(f, "PROTO" | "PORT" | "ADDR") && parts.next().is_none(),
    };
    number && protocol && field
}
