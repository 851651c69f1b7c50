//! Config parsing and validation tests: defaults, every-problem-at-once reporting with
//! file:line:column, `${ENV}` substitution, and secrets that never print.

use super::*;
use std::path::Path;
use std::time::Duration;

const MINIMAL: &str = r#"
[server]
public_url = "https://gw.example.com"
[server.tls]
cert = "tls/cert.pem"
key = "tls/key.pem"
[oauth]
signing_keys = ["keys/k1.pem"]
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(src: &str) -> Result<Config, ConfigErrors> {
    Config::parse(src, Path::new("/etc/gatehouse/gatehouse.toml"), &no_env)
}

#[test]
fn minimal_config_gets_every_default() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.server.listen, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.server.max_connections, 10_000);
    assert_eq!(c.server.max_header_bytes, 16_384);
    assert!(c.server.http_redirect_listen.is_none());
    assert_eq!(c.server.tls.cert, Path::new("/etc/gatehouse/tls/cert.pem"));
    assert_eq!(c.admin.listen, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(
        c.log,
        LogConfig {
            format: LogFormat::Text,
            level: "info".into()
        }
    );
    assert_eq!(
        c.store.url.expose(),
        "sqlite:///var/lib/gatehouse/gatehouse.db"
    );
    assert_eq!(c.store.max_connections, 16);
    assert_eq!(
        c.oauth.signing_keys,
        vec![PathBuf::from("/etc/gatehouse/keys/k1.pem")]
    );
    assert_eq!(c.audience(), "https://gw.example.com");
    assert_eq!(c.oauth.access_token_ttl, Duration::from_secs(7200));
    assert_eq!(c.oauth.refresh_token_ttl, Duration::from_secs(30 * 86400));
    assert_eq!(c.oauth.refresh_grace, Duration::from_secs(10));
    assert_eq!(c.oauth.code_ttl, Duration::from_secs(60));
    assert_eq!(c.oauth.require_pkce, RequirePkce::Public);
    assert!(c.oauth.allow_plain_pkce && c.oauth.confluence_paths);
    assert!(!c.oauth.allow_insecure_redirect_uris && !c.oauth.allow_query_credentials);
    assert_eq!(c.auth.cache_ttl, Duration::from_secs(30));
    assert_eq!(c.auth.cache_max_entries, 100_000);
    assert_eq!(c.auth.negative_cache_ttl, Duration::from_secs(5));
    assert_eq!(c.auth.leeway, Duration::from_secs(5));
    assert_eq!(c.auth.revocation_propagation, Duration::from_secs(1));
    assert_eq!(c.auth.user_header, "x-auth-user");
    assert_eq!(c.auth.scopes_header, "x-auth-scopes");
    assert_eq!(c.auth.client_id_header, "x-auth-client-id");
    assert_eq!(c.login.max_failures, 5);
    assert_eq!(c.login.window, Duration::from_secs(300));
    assert_eq!(c.login.ban, Duration::from_secs(900));
    assert_eq!(c.login.session_ttl, Duration::from_secs(12 * 3600));
    assert!(c.scopes.is_empty() && c.users.is_empty() && c.apps.is_empty() && c.routes.is_empty());
}

#[test]
fn three_mistakes_are_reported_at_once_with_locations() {
    let src = format!(
        "{MINIMAL}\n[auth]\ncache_ttl = \"30 parsecs\"\ncahce_max_entries = 5\n\n[[routes]]\npath = \"/rest/api\"\nupstream = \"ftp://x\"\nscope = \"READ\"\n"
    );
    let errors = parse(&src).unwrap_err().0;
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 3, "{lines:#?}");
    assert_eq!((errors[0].line, errors[0].column), (11, 13), "{lines:#?}");
    assert!(errors[0].message.contains("auth.cache_ttl"), "{lines:#?}");
    assert_eq!((errors[1].line, errors[1].column), (12, 1));
    assert!(
        errors[1]
            .message
            .contains("unknown key 'auth.cahce_max_entries' (did you mean 'cache_max_entries'?)")
    );
    assert_eq!(errors[2].line, 16);
    assert!(errors[2].message.contains("routes[0].upstream"));
    assert!(lines[0].starts_with("/etc/gatehouse/gatehouse.toml:11:13: "));
}

#[test]
fn syntax_errors_carry_a_location() {
    let errors = parse("[server]\npublic_url = \n").unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 2);
    assert!(errors[0].message.starts_with("TOML syntax"));
}

#[test]
fn required_keys_are_reported() {
    let errors = parse("[server]\n").unwrap_err().0;
    let text: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
    for needle in [
        "server.public_url: required",
        "server.tls.cert: required",
        "server.tls.key: required",
        "oauth.signing_keys: required",
    ] {
        assert!(
            text.iter().any(|m| m.contains(needle)),
            "missing {needle}: {text:#?}"
        );
    }
}

#[test]
fn env_substitution_and_missing_variables() {
    let src = format!(
        "{MINIMAL}\n[[apps]]\nclient_id = \"rep\"\nclient_secret = \"${{REP_SECRET}}\"\ndisplay_name = \"R $${{literal}}\"\nallowed_callback_urls = [\"https://r.example.com/cb\"]\n"
    );
    let env = |name: &str| (name == "REP_SECRET").then(|| "s3cret-value-0123456789".to_string());
    let c = Config::parse(&src, Path::new("g.toml"), &env).unwrap();
    assert_eq!(
        c.apps[0].client_secret.as_ref().unwrap().expose(),
        "s3cret-value-0123456789"
    );
    assert_eq!(c.apps[0].display_name, "R ${literal}");
    let errors = parse(&src).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .message
            .contains("environment variable REP_SECRET is not set")
    );
}

#[test]
fn secrets_never_print() {
    let src = format!(
        "{MINIMAL}\n[store]\nurl = \"postgres://gh:hunter2pass@db/gh\"\n[[users]]\nname = \"alice\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"\nmax_scope = \"WRITE\"\n[[apps]]\nclient_id = \"rep\"\nclient_secret = \"topsecret-topsecret\"\ndisplay_name = \"R\"\nallowed_callback_urls = [\"https://r.example.com/cb\"]\n"
    );
    let c = parse(&src).unwrap();
    let printed = format!("{c:?}");
    for secret in [
        "hunter2pass",
        "topsecret-topsecret",
        "aGFzaGhhc2hoYXNoaGFzaA",
    ] {
        assert!(!printed.contains(secret), "{secret} leaked");
    }
    assert!(printed.contains("***"));
}

#[test]
fn routes_are_validated() {
    let src = format!(
        "{MINIMAL}\n[[routes]]\npath = \"/rest/../x\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"bearer\"\n[[routes]]\npath = \"/a/\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n[[routes]]\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"bearer\"\nscopes = {{ GET = \"READ\", get = \"NOPE\" }}\n"
    );
    let errors = parse(&src).unwrap_err().0;
    let text: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
    for needle in [
        "routes[0].path: '/rest/../x' must be a normalized",
        "routes[0]: a route with auth = \"bearer\" or \"session\" must name",
        "routes[2].path: another route already has path '/a'",
        "'get' is not an upper-case HTTP method",
        "routes[2].scopes.get: unknown scope 'NOPE'",
    ] {
        assert!(
            text.iter().any(|m| m.contains(needle)),
            "missing {needle}: {text:#?}"
        );
    }
}

#[test]
fn groups_and_allow_lists_are_validated() {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    let src = format!(
        "{MINIMAL}\n[auth]\nforward_groups = [\"a b\"]\n[[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nmax_scope = \"READ\"\ngroups = [\"staff\", \"staff\", \"\"]\n[[routes]]\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\nallow_users = [\"bob\"]\n[[routes]]\npath = \"/b\"\nupstream = \"http://127.0.0.1:1\"\nscope = \"READ\"\nallow_groups = [\"wiki editors\"]\n"
    );
    let errors = parse(&src).unwrap_err().0;
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for needle in [
        "auth.forward_groups[0]: 'a b' must be 1-256 visible ASCII characters",
        "users[0].groups[1]: 'staff' is listed twice",
        "users[0].groups[2]",
        "routes[0]: allow_groups and allow_users have no effect on a route with auth = \"none\"",
        "routes[1].allow_groups[0]: 'wiki editors' must be 1-256 visible ASCII",
    ] {
        assert!(
            text.iter().any(|m| m.contains(needle)),
            "missing {needle}: {text:#?}"
        );
    }
    assert!(
        text.iter().all(|m| m.contains("gatehouse.toml:")),
        "every message has its location: {text:#?}"
    );
    let ok = format!(
        "{MINIMAL}\n[[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nmax_scope = \"READ\"\ngroups = [\"staff\"]\n[[routes]]\npath = \"/b\"\nupstream = \"http://127.0.0.1:1\"\nscope = \"READ\"\nallow_groups = [\"staff\"]\nallow_users = [\"sso:bob@example.com\"]\n"
    );
    let c = parse(&ok).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.users[0].groups, ["staff"]);
    assert_eq!(c.routes[0].allow_groups, ["staff"]);
    assert_eq!(c.routes[0].allow_users, ["sso:bob@example.com"]);
    assert_eq!(c.auth.groups_header, "x-auth-groups");
    assert!(c.auth.forward_groups.is_empty());
}

#[test]
fn custom_scope_sets_replace_the_default() {
    let src = format!(
        "{MINIMAL}\n[[scopes]]\nname = \"view\"\n[[scopes]]\nname = \"edit\"\nimplies = [\"view\", \"ghost\"]\n[[users]]\nname = \"bob\"\npassword_hash = \"$argon2id$x\"\nmax_scope = \"WRITE\"\n"
    );
    let text: Vec<String> = parse(&src)
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.message.clone())
        .collect();
    assert!(
        text.iter()
            .any(|m| m.contains("scopes[1].implies: unknown scope 'ghost'")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|m| m.contains("users[0].max_scope: unknown scope 'WRITE'")),
        "{text:#?}"
    );
}

#[test]
fn the_shipped_example_config_is_valid_and_names_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gatehouse.toml");
    let src = std::fs::read_to_string(&path).unwrap();
    let env = |name: &str| {
        Some(if name.ends_with("_HASH") {
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_string()
        } else {
            "example-secret-value-0123456789".to_string()
        })
    };
    Config::parse(&src, &path, &env).unwrap_or_else(|e| panic!("{e}"));
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for (section, keys) in sections::KNOWN_KEYS {
        for key in *keys {
            if *key == "tls" {
                continue;
            }
            let needle = format!("{key} =");
            assert!(
                src.contains(&needle),
                "config/gatehouse.toml does not show {section}.{key}"
            );
            assert!(
                readme.contains(&format!("`{section}.{key}`")),
                "README's config reference lacks `{section}.{key}`"
            );
        }
    }
}

/// A config that sets, with a valid value, every key a case below breaks (line numbers matter).
const FULL: &str = r#"[server]
listen = "127.0.0.1:8443"
public_url = "https://gw.example.com"
http_redirect_listen = ""
plain_listen = ""
trusted_proxies = ["10.0.0.0/8"]
shutdown_grace = "30s"
[server.tls]
cert = "tls/cert.pem"
key = "tls/key.pem"
[admin]
listen = "127.0.0.1:9090"
[log]
level = "info"
[store]
url = "sqlite://data/gatehouse.db"
[oauth]
signing_keys = ["keys/k1.pem"]
audience = ""
[[scopes]]
name = "READ"
[[scopes]]
name = "WRITE"
implies = ["READ"]
[[users]]
name = "alice"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"
max_scope = "WRITE"
[[apps]]
client_id = "reporting"
client_secret = "0123456789abcdef"
display_name = "Reporting"
allowed_callback_urls = ["https://r.example.com/cb"]
allowed_logout_urls = []
allowed_web_origins = []
[[routes]]
path = "/api"
host = ""
upstream = "http://127.0.0.1:8090"
scope = "READ"
timeout = "30s"
upstream_ca = ""
[[scopes]]
name = "EXTRA"
"#;

/// `FULL` with line `line` (1-based) replaced; `${EMPTY}` expands to "".
fn parse_full_with(line: usize, replacement: &str) -> Result<Config, ConfigErrors> {
    let mut lines: Vec<&str> = FULL.lines().collect();
    lines[line - 1] = replacement;
    let src = lines.join("\n");
    let env = |name: &str| (name == "EMPTY").then(String::new);
    Config::parse(&src, Path::new("/etc/gatehouse/gatehouse.toml"), &env)
}

#[test]
fn empty_values_with_a_documented_meaning_are_accepted() {
    let c = parse_full_with(1, "[server]").unwrap_or_else(|e| panic!("{e}"));
    assert!(c.server.http_redirect_listen.is_none() && c.server.plain_listen.is_none());
    assert_eq!(c.audience(), "https://gw.example.com");
    assert_eq!(c.routes[0].host, "");
    assert!(c.routes[0].upstream_ca.is_none());
}

#[test]
fn empty_and_out_of_range_values_are_refused_at_their_location() {
    // (line, replacement, column of the value, key the message starts with)
    let cases: &[(usize, &str, usize, &str)] = &[
        (2, r#"listen = """#, 10, "server.listen"),
        (2, r#"listen = "127.0.0.1:70000""#, 10, "server.listen"),
        (3, r#"public_url = """#, 14, "server.public_url"),
        (3, r#"public_url = "${EMPTY}""#, 14, "server.public_url"),
        (
            3,
            r#"public_url = "https://gw.example.com:70000""#,
            14,
            "server.public_url",
        ),
        (
            3,
            r#"public_url = "https://gw.example.com:0""#,
            14,
            "server.public_url",
        ),
        (
            3,
            r#"public_url = "https://gw.example.com:""#,
            14,
            "server.public_url",
        ),
        (
            3,
            r#"public_url = "https://user:pw@gw.example.com""#,
            14,
            "server.public_url",
        ),
        (
            3,
            r#"public_url = "https://gw.example.com/#top""#,
            14,
            "server.public_url",
        ),
        (
            3,
            r#"public_url = "https://gw.example.com/?a=1""#,
            14,
            "server.public_url",
        ),
        (
            3,
            r#"public_url = "http://gw.example.com""#,
            14,
            "server.public_url",
        ),
        (
            3,
            r#"public_url = "gw.example.com""#,
            14,
            "server.public_url",
        ),
        (6, r#"trusted_proxies = [""]"#, 20, "server.trusted_proxies"),
        (
            7,
            r#"shutdown_grace = "36500d""#,
            18,
            "server.shutdown_grace",
        ),
        (9, r#"cert = """#, 8, "server.tls.cert"),
        (10, r#"key = """#, 7, "server.tls.key"),
        (12, r#"listen = """#, 10, "admin.listen"),
        (14, r#"level = """#, 9, "log.level"),
        (16, r#"url = "sqlite://""#, 7, "store.url"),
        (18, r#"signing_keys = [""]"#, 17, "oauth.signing_keys[0]"),
        (
            18,
            r#"signing_keys = ["keys/k1.pem", ""]"#,
            32,
            "oauth.signing_keys[1]",
        ),
        (26, r#"name = """#, 8, "users[0].name"),
        (27, r#"password_hash = """#, 17, "users[0].password_hash"),
        (28, r#"max_scope = """#, 13, "users[0].max_scope"),
        (30, r#"client_id = """#, 13, "apps[0].client_id"),
        (32, r#"display_name = """#, 16, "apps[0].display_name"),
        (
            33,
            r#"allowed_callback_urls = [""]"#,
            26,
            "apps[0].allowed_callback_urls[0]",
        ),
        (
            34,
            r#"allowed_logout_urls = [""]"#,
            24,
            "apps[0].allowed_logout_urls[0]",
        ),
        (
            35,
            r#"allowed_web_origins = [""]"#,
            24,
            "apps[0].allowed_web_origins[0]",
        ),
        (37, r#"path = """#, 8, "routes[0].path"),
        (39, r#"upstream = "${EMPTY}""#, 12, "routes[0].upstream"),
        (
            39,
            r#"upstream = "http://127.0.0.1:70000""#,
            12,
            "routes[0].upstream",
        ),
        (
            39,
            r#"upstream = "http://127.0.0.1:0""#,
            12,
            "routes[0].upstream",
        ),
        (
            39,
            r#"upstream = "127.0.0.1:8090""#,
            12,
            "routes[0].upstream",
        ),
        (
            39,
            r#"upstream = "http://user:pw@127.0.0.1:8090""#,
            12,
            "routes[0].upstream",
        ),
        (
            39,
            r#"upstream = "http://127.0.0.1:8090/#x""#,
            12,
            "routes[0].upstream",
        ),
        (41, r#"timeout = "4000d""#, 11, "routes[0].timeout"),
        (44, r#"name = """#, 8, "scopes[2].name"),
    ];
    let mut failures = Vec::new();
    for (line, replacement, column, key) in cases {
        let outcome = match parse_full_with(*line, replacement) {
            Ok(_) => "accepted".to_string(),
            Err(errors) => {
                let e = &errors.0[0];
                let located = (e.line, e.column) == (*line, *column);
                if errors.0.len() == 1 && located && e.message.starts_with(&format!("{key}: ")) {
                    continue;
                }
                errors.to_string()
            }
        };
        failures.push(format!(
            "{replacement}\n  want {line}:{column}: {key}: …\n  got  {outcome}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The decoder never panics, whatever the file holds, and every problem it reports is located
/// inside the file.
mod never_panics {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const ARRAYS: &[&str] = &[
        "scopes",
        "users",
        "apps",
        "routes",
        "issuers",
        "identity_providers",
    ];

    fn env(name: &str) -> Option<String> {
        match name.len() % 3 {
            0 => None,
            1 => Some(String::new()),
            _ => Some(name.to_string()),
        }
    }

    fn check(src: &str) -> Result<(), TestCaseError> {
        if let Err(errors) = Config::parse(src, Path::new("g.toml"), &env) {
            let lines = src.split('\n').count();
            for e in &errors.0 {
                prop_assert!((1..=lines).contains(&e.line) && e.column >= 1, "{e}");
            }
        }
        Ok(())
    }

    /// A TOML basic string holding `s`.
    fn toml_string(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// Values of every kind a key may be given, biased towards the shapes the keys expect.
    fn value() -> impl Strategy<Value = String> {
        let text = prop_oneof![
            Just(String::new()),
            "\\PC{0,12}",
            "(https?://)?[a-zA-Z0-9.:@\\[\\]_-]{0,20}(/[a-z#?%.]{0,6})?",
            "[0-9]{1,21}(ms|s|m|h|d)?",
            "[0-9a-f:.\\[\\]/]{0,20}",
            "[$]{0,2}[{][A-Z_]{0,6}[}]?",
            "(READ|WRITE|ADMIN|SYSTEM_ADMIN|bearer|none|session|public|all|json|text|sqlite://x|/a/b)",
        ];
        let string = text.prop_map(|s| toml_string(&s));
        prop_oneof![
            6 => string.clone(),
            1 => any::<i64>().prop_map(|n| n.to_string()),
            1 => any::<bool>().prop_map(|b| b.to_string()),
            2 => prop::collection::vec(string.clone(), 0..3)
                .prop_map(|v| format!("[{}]", v.join(", "))),
            1 => prop::collection::vec(("[A-Z*]{0,6}", string), 0..3).prop_map(|v| {
                let pairs: Vec<String> =
                    v.iter().map(|(k, s)| format!("{} = {s}", toml_string(k))).collect();
                format!("{{ {} }}", pairs.join(", "))
            }),
        ]
    }

    /// Documents made of the known sections and keys, each with an arbitrary value.
    fn document() -> impl Strategy<Value = String> {
        let entries = prop::collection::vec((any::<prop::sample::Index>(), value()), 0..10);
        let table = (0..KNOWN_KEYS.len(), entries);
        prop::collection::vec(table, 0..10).prop_map(|tables| {
            let mut doc = String::new();
            let mut sections = HashSet::new();
            for (s, entries) in tables {
                let (section, keys) = KNOWN_KEYS[s];
                if ARRAYS.contains(&section) {
                    doc.push_str(&format!("[[{section}]]\n"));
                } else if sections.insert(section) {
                    doc.push_str(&format!("[{section}]\n"));
                } else {
                    continue;
                }
                let mut seen = HashSet::new();
                for (key, value) in entries {
                    let key = key.get(keys);
                    if *key != "tls" && seen.insert(*key) {
                        doc.push_str(&format!("{key} = {value}\n"));
                    }
                }
            }
            doc
        })
    }

    proptest! {
        #[test]
        fn on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            check(&String::from_utf8_lossy(&bytes))?;
        }

        #[test]
        fn on_arbitrary_strings(s in any::<String>()) {
            check(&s)?;
        }

        #[test]
        fn on_toml_shaped_text(s in "[\\[\\]a-z_.=\"'{},\n #$0-9:/\\\\]{0,200}") {
            check(&s)?;
        }

        #[test]
        fn on_known_keys_with_arbitrary_values(doc in document()) {
            check(&doc)?;
        }
    }
}

#[test]
fn secrets_may_come_from_files_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    std::fs::write(
        dir.path().join("alice.hash"),
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("store-url"), "sqlite://from-a-file.db\r\n").unwrap();
    std::fs::write(
        dir.path().join("app-secret"),
        "a-secret-from-a-file-0123456789",
    )
    .unwrap();
    let good = format!(
        "{MINIMAL}[store]\nurl_file = \"store-url\"\n\n[[users]]\nname = \"alice\"\npassword_hash_file = \"alice.hash\"\nmax_scope = \"READ\"\n\n[[apps]]\nclient_id = \"reporting\"\nclient_secret_file = \"{}\"\ndisplay_name = \"Reporting\"\nallowed_callback_urls = [\"https://r.example.com/cb\"]\n",
        dir.path().join("app-secret").display()
    );
    let c = Config::parse(&good, &path, &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.store.url.expose(),
        "sqlite://from-a-file.db",
        "CR LF trimmed"
    );
    assert_eq!(
        c.users[0].password_hash.expose(),
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        "the trailing newline is not part of the value"
    );
    assert_eq!(
        c.apps[0].client_secret.as_ref().unwrap().expose(),
        "a-secret-from-a-file-0123456789",
        "an absolute path"
    );

    let both = format!("{MINIMAL}[store]\nurl = \"sqlite://x.db\"\nurl_file = \"store-url\"\n");
    let e = Config::parse(&both, &path, &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gatehouse.toml:11:12: store.url_file: give url or url_file, not both"),
        "{e}"
    );
    let missing = format!(
        "{MINIMAL}[[users]]\nname = \"bob\"\npassword_hash_file = \"nowhere.hash\"\nmax_scope = \"READ\"\n"
    );
    let e = Config::parse(&missing, &path, &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gatehouse.toml:11:22: users[0].password_hash_file: cannot read nowhere.hash:"),
        "{e}"
    );
    std::fs::write(dir.path().join("empty.hash"), "\n").unwrap();
    let empty = format!(
        "{MINIMAL}[[users]]\nname = \"bob\"\npassword_hash_file = \"empty.hash\"\nmax_scope = \"READ\"\n"
    );
    let e = Config::parse(&empty, &path, &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("users[0].password_hash: must not be empty"),
        "{e}"
    );
    let neither = format!("{MINIMAL}[[users]]\nname = \"bob\"\nmax_scope = \"READ\"\n");
    let e = Config::parse(&neither, &path, &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("users[0].password_hash: required (or password_hash_file)"),
        "{e}"
    );
}

#[test]
fn issuers_get_their_defaults_and_routes_name_them() {
    let src = format!(
        "{MINIMAL}[[issuers]]\nname = \"corp\"\nissuer = \"https://sso.example.com/realms/corp\"\naudiences = [\"gatehouse\"]\n\n[[routes]]\npath = \"/api\"\nupstream = \"http://127.0.0.1:8090\"\nscope = \"READ\"\nissuers = [\"self\", \"corp\"]\n\n[[routes]]\npath = \"/own\"\nupstream = \"http://127.0.0.1:8090\"\nscope = \"READ\"\n"
    );
    let c = parse(&src).unwrap_or_else(|e| panic!("{e}"));
    let i = &c.issuers[0];
    assert_eq!(i.jwks_uri, "");
    assert_eq!(
        i.algorithms,
        [
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::Algorithm::EdDSA
        ]
    );
    assert_eq!(i.jwks_refresh, Duration::from_secs(900));
    assert_eq!(
        (
            i.username_claim.as_str(),
            i.scope_claim.as_str(),
            i.groups_claim.as_str()
        ),
        ("sub", "scope", "groups")
    );
    assert_eq!(i.max_scope, "READ");
    assert!(!i.allow_management && i.ca.is_none() && i.scope_map.is_empty());
    assert_eq!(c.routes[0].issuers, ["self", "corp"]);
    assert_eq!(c.routes[1].issuers, ["self"], "the default");
}

#[test]
fn issuer_problems_are_reported_where_they_are() {
    let src = format!(
        "{MINIMAL}[[issuers]]\nname = \"self\"\nissuer = \"https://a.example.com\"\naudiences = [\"g\"]\n\n[[issuers]]\nname = \"corp\"\nissuer = \"http://b.example.com\"\nalgorithms = [\"none\", \"HS256\", \"RS256\"]\n\n[[issuers]]\nname = \"Bad_Name\"\nissuer = \"https://c.example.com\"\naudiences = []\nintrospection_endpoint = \"https://c.example.com/introspect\"\nscope_map = {{ \"x\" = \"NOPE\" }}\n\n[[routes]]\npath = \"/api\"\nupstream = \"http://127.0.0.1:8090\"\nscope = \"READ\"\nissuers = [\"corp\", \"partner\"]\n"
    );
    let e = parse(&src).unwrap_err().to_string();
    for expected in [
        "gatehouse.toml:10:8: issuers[0].name: \"self\" is reserved",
        "gatehouse.toml:14:1: issuers[1].audiences: required, at least one",
        "gatehouse.toml:16:10: issuers[1].issuer: 'http://b.example.com' must be an https:// URL",
        "gatehouse.toml:17:15: issuers[1].algorithms[0]: 'none' is not accepted (an unsigned token is never accepted)",
        "gatehouse.toml:17:23: issuers[1].algorithms[1]: 'HS256' is not accepted (an HMAC",
        "gatehouse.toml:20:8: issuers[2].name: 'Bad_Name' must be 1-32 characters of a-z 0-9 -",
        "gatehouse.toml:22:13: issuers[2].audiences: at least one is required",
        "issuers[2].introspection_endpoint: needs introspection_client_id and introspection_client_secret",
        "issuers[2].scope_map.x: ",
        "gatehouse.toml:30:20: routes[0].issuers[1]: 'partner' is neither \"self\" nor the name of an [[issuers]] entry",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
}

#[test]
fn log_level_takes_a_level_or_target_level_list_and_refuses_the_rest() {
    for good in [
        "debug",
        "info,gatehouse::proxy=debug",
        "warn,rustls=off,gatehouse=trace",
    ] {
        let c = parse_full_with(14, &format!("level = \"{good}\""))
            .unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!(c.log.level, good);
    }
    for bad in ["loud", "gatehouse=loud", "info,=debug=x"] {
        let e = parse_full_with(14, &format!("level = \"{bad}\""))
            .expect_err(bad)
            .to_string();
        assert!(e.contains("log.level") && e.contains(":14:"), "{bad}: {e}");
    }
}
