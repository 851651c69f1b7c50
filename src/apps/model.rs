//! The management API's JSON (SPEC §3.3): request bodies read field by field, so each type
//! error and each unknown field is reported by name, and the `oauthApps` / `personalTokens`
//! resources as they are written, with RFC 3339 UTC times to the microsecond.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use super::validate::{self, Rules, Violations};
use crate::store::{App, ClientType, PersonalToken};

/// The fields of a JSON object body, taken one at a time; what is left at the end is unknown.
pub struct Fields {
    map: Map<String, Value>,
    pub violations: Violations,
}

impl Fields {
    /// Parses `bytes` as one JSON object (an empty body is an empty object).
    pub fn parse(bytes: &[u8]) -> Result<Self, Violations> {
        let mut v = Violations::default();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::new(Map::new()));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Self::new(map)),
            Ok(_) => {
                v.add("body", "must be a JSON object");
                Err(v)
            }
            Err(e) => {
                v.add(
                    "body",
                    format!(
                        "is not valid JSON (line {}, column {})",
                        e.line(),
                        e.column()
                    ),
                );
                Err(v)
            }
        }
    }

    fn new(map: Map<String, Value>) -> Self {
        Self {
            map,
            violations: Violations::default(),
        }
    }

    /// Removes `name`; JSON `null` counts as absent.
    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    pub fn string(&mut self, name: &str) -> Option<String> {
        match self.take(name)? {
            Value::String(s) => Some(s),
            _ => {
                self.violations.add(name, "must be a string");
                None
            }
        }
    }

    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        match self.take(name)? {
            Value::Bool(b) => Some(b),
            _ => {
                self.violations.add(name, "must be true or false");
                None
            }
        }
    }

    pub fn strings(&mut self, name: &str) -> Option<Vec<String>> {
        let Value::Array(items) = self.take(name)? else {
            self.violations.add(name, "must be an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Value::String(s) => out.push(s),
                _ => self
                    .violations
                    .add(format!("{name}[{i}]"), "must be a string"),
            }
        }
        Some(out)
    }

    pub fn string_map(&mut self, name: &str) -> Option<BTreeMap<String, String>> {
        let Value::Object(items) = self.take(name)? else {
            self.violations
                .add(name, "must be an object of string values");
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, item) in items {
            match item {
                Value::String(s) => {
                    out.insert(k, s);
                }
                _ => self
                    .violations
                    .add(format!("{name}.{k}"), "must be a string"),
            }
        }
        Some(out)
    }

    /// Reports every field not taken: `output_only` ones as such, the rest as unknown.
    pub fn finish(mut self, output_only: &[&str]) -> Violations {
        for key in self.map.keys() {
            let name: String = key.chars().take(64).collect();
            if output_only.contains(&key.as_str()) {
                self.violations.add(name, "output only: cannot be set");
            } else {
                self.violations.add(name, "unknown field");
            }
        }
        self.violations
    }
}

/// Resource fields a client reads but never writes.
pub const APP_OUTPUT_ONLY: &[&str] = &[
    "name",
    "clientId",
    "clientSecret",
    "createdBy",
    "updatedBy",
    "createTime",
    "updateTime",
    "managedBy",
];

/// The writable fields of an app, as sent in a create or PATCH body (absent = unchanged).
#[derive(Clone, Debug, Default)]
pub struct AppInput {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub logo_uri: Option<String>,
    pub allowed_callback_urls: Option<Vec<String>>,
    pub allowed_logout_urls: Option<Vec<String>>,
    pub allowed_web_origins: Option<Vec<String>>,
    pub client_type: Option<ClientType>,
    pub scopes: Option<Vec<String>>,
    pub skip_consent: Option<bool>,
    pub active: Option<bool>,
    pub labels: Option<BTreeMap<String, String>>,
}

impl AppInput {
    /// Reads and validates a body; `create` also asks for the required fields.
    pub fn from_json(bytes: &[u8], create: bool, rules: Rules<'_>) -> Result<Self, Violations> {
        let mut f = Fields::parse(bytes)?;
        let client_type = f.string("clientType").and_then(|s| {
            let parsed = ClientType::parse(&s);
            if parsed.is_none() {
                f.violations
                    .add("clientType", "must be \"confidential\" or \"public\"");
            }
            parsed
        });
        let input = Self {
            display_name: f.string("displayName"),
            description: f.string("description"),
            logo_uri: f.string("logoUri"),
            allowed_callback_urls: f.strings("allowedCallbackUrls"),
            allowed_logout_urls: f.strings("allowedLogoutUrls"),
            allowed_web_origins: f.strings("allowedWebOrigins"),
            client_type,
            scopes: f.strings("scopes"),
            skip_consent: f.boolean("skipConsent"),
            active: f.boolean("active"),
            labels: f.string_map("labels"),
        };
        let mut v = f.finish(APP_OUTPUT_ONLY);
        input.validate(&mut v, create, rules);
        if v.is_empty() { Ok(input) } else { Err(v) }
    }

    fn validate(&self, v: &mut Violations, create: bool, rules: Rules<'_>) {
        match &self.display_name {
            Some(s) => validate::display_name(v, "displayName", s),
            None if create && !v.0.iter().any(|x| x.field == "displayName") => {
                v.add("displayName", "is required");
            }
            None => {}
        }
        if let Some(s) = &self.description {
            validate::description(v, "description", s);
        }
        if let Some(s) = &self.logo_uri {
            validate::logo_uri(v, "logoUri", s, rules);
        }
        match &self.allowed_callback_urls {
            Some(list) => validate::url_list(v, "allowedCallbackUrls", list, true, rules),
            None if create
                && !v
                    .0
                    .iter()
                    .any(|x| x.field.starts_with("allowedCallbackUrls")) =>
            {
                v.add("allowedCallbackUrls", "at least one URL is required");
            }
            None => {}
        }
        if let Some(list) = &self.allowed_logout_urls {
            validate::url_list(v, "allowedLogoutUrls", list, false, rules);
        }
        if let Some(list) = &self.allowed_web_origins {
            validate::origin_list(v, "allowedWebOrigins", list, rules);
        }
        if let Some(list) = &self.scopes {
            validate::scope_list(v, "scopes", list, rules);
        }
        if let Some(map) = &self.labels {
            validate::labels(v, "labels", map);
        }
    }

    /// Whether the body does nothing but turn the app off (`{"active": false}`), which grants
    /// nothing and so needs no more privilege than the app's.
    pub fn only_deactivates(&self) -> bool {
        let Self {
            display_name,
            description,
            logo_uri,
            allowed_callback_urls,
            allowed_logout_urls,
            allowed_web_origins,
            client_type,
            scopes,
            skip_consent,
            active,
            labels,
        } = self;
        *active == Some(false)
            && display_name.is_none()
            && description.is_none()
            && logo_uri.is_none()
            && allowed_callback_urls.is_none()
            && allowed_logout_urls.is_none()
            && allowed_web_origins.is_none()
            && client_type.is_none()
            && scopes.is_none()
            && skip_consent.is_none()
            && labels.is_none()
    }

    /// Writes the fields present onto `app`.
    pub fn apply(self, app: &mut App) {
        let Self {
            display_name,
            description,
            logo_uri,
            allowed_callback_urls,
            allowed_logout_urls,
            allowed_web_origins,
            client_type,
            scopes,
            skip_consent,
            active,
            labels,
        } = self;
        set(&mut app.display_name, display_name);
        set(&mut app.description, description);
        set(&mut app.logo_uri, logo_uri);
        set(&mut app.allowed_callback_urls, allowed_callback_urls);
        set(&mut app.allowed_logout_urls, allowed_logout_urls);
        set(&mut app.allowed_web_origins, allowed_web_origins);
        set(&mut app.client_type, client_type);
        set(&mut app.scopes, scopes);
        set(&mut app.skip_consent, skip_consent);
        set(&mut app.active, active);
        set(&mut app.labels, labels);
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// An `oauthApps/{id}` resource as the API writes it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppResource<'a> {
    name: String,
    display_name: &'a str,
    description: &'a str,
    logo_uri: &'a str,
    allowed_callback_urls: &'a [String],
    allowed_logout_urls: &'a [String],
    allowed_web_origins: &'a [String],
    client_type: &'static str,
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<&'a str>,
    scopes: &'a [String],
    skip_consent: bool,
    active: bool,
    labels: &'a BTreeMap<String, String>,
    created_by: &'a str,
    updated_by: &'a str,
    create_time: String,
    update_time: String,
    managed_by: &'static str,
}

impl<'a> AppResource<'a> {
    /// `secret` only in the create and rotateSecret responses.
    pub fn new(app: &'a App, secret: Option<&'a str>) -> Self {
        Self {
            name: format!("oauthApps/{}", app.id),
            display_name: &app.display_name,
            description: &app.description,
            logo_uri: &app.logo_uri,
            allowed_callback_urls: &app.allowed_callback_urls,
            allowed_logout_urls: &app.allowed_logout_urls,
            allowed_web_origins: &app.allowed_web_origins,
            client_type: app.client_type.as_str(),
            client_id: &app.client_id,
            client_secret: secret,
            scopes: &app.scopes,
            skip_consent: app.skip_consent,
            active: app.active,
            labels: &app.labels,
            created_by: &app.created_by,
            updated_by: &app.updated_by,
            create_time: rfc3339(app.create_time),
            update_time: rfc3339(app.update_time),
            managed_by: app.managed_by.as_str(),
        }
    }
}

/// A `personalTokens/{id}` resource; `token` only in the create response.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatResource<'a> {
    name: String,
    display_name: &'a str,
    scope: &'a str,
    create_time: String,
    expire_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

impl<'a> PatResource<'a> {
    pub fn new(pat: &'a PersonalToken, token: Option<&'a str>) -> Self {
        Self {
            name: format!("personalTokens/{}", pat.id),
            display_name: &pat.display_name,
            scope: &pat.scope,
            create_time: rfc3339(pat.create_time),
            expire_time: rfc3339(pat.expire_time),
            token,
        }
    }
}

/// RFC 3339 in UTC with microseconds: `2026-11-23T10:00:00.000000Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let (secs, micros) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_micros(),
        ),
        // Before 1970 never happens for stored times; print the epoch rather than panic.
        Err(_) => (0, 0),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        #[test]
        fn bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let rules = Rules {
                scopes: &crate::auth::scope::ScopeSet::default_confluence(),
                allow_insecure: false,
            };
            let _ = AppInput::from_json(&bytes, true, rules);
        }

        #[test]
        fn times_always_have_the_same_shape(us in 0u64..253_402_300_799_000_000) {
            let s = rfc3339(UNIX_EPOCH + Duration::from_micros(us));
            prop_assert_eq!(s.len(), 27);
            prop_assert!(s.ends_with('Z'));
        }
    }

    #[test]
    fn times_are_rfc3339_utc_micros() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_795_431_600_123_456);
        assert_eq!(rfc3339(t), "2026-11-23T11:00:00.123456Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn fields_report_types_and_unknown_names() {
        let mut f = Fields::parse(br#"{"a": 1, "b": ["x", 2], "name": "n", "zzz": true}"#).unwrap();
        assert_eq!(f.string("a"), None);
        assert_eq!(f.strings("b"), Some(vec!["x".to_owned()]));
        let v = f.finish(&["name"]);
        assert_eq!(
            v.message(),
            "a: must be a string; b[1]: must be a string; name: output only: cannot be set; zzz: unknown field"
        );
        assert!(Fields::parse(b"[1]").is_err());
        assert!(Fields::parse(b"{").is_err());
        assert!(Fields::parse(b"").is_ok());
    }
}
