//! `GATEHOUSE_<SECTION>_<KEY>` overrides (SPEC §7.5): typed, winning over the file, named in
//! every problem, an unknown key refused, and the variables that are not overrides left alone.

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

fn parse_with(src: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    Config::parse_with_overrides(src, Path::new("/etc/gatehouse/gatehouse.toml"), &env, &vars)
}

#[test]
fn overrides_win_over_the_file_and_are_parsed_as_the_keys_type() {
    let src = format!("{MINIMAL}[login]\nmax_failures = 3\n[log]\nlevel = \"warn\"\n");
    let c = parse_with(
        &src,
        &[
            ("GATEHOUSE_SERVER_PUBLIC_URL", "https://env.example.com/"),
            ("GATEHOUSE_SERVER_TLS_CERT", "/run/tls/tls.crt"),
            ("GATEHOUSE_STORE_URL", "postgres://gh:${not-expanded}@db/gh"),
            ("GATEHOUSE_LOG_LEVEL", "debug"),
            ("GATEHOUSE_LOGIN_MAX_FAILURES", "9"),
            ("GATEHOUSE_LOGIN_BAN", "2h"),
            ("GATEHOUSE_OAUTH_ALLOW_PLAIN_PKCE", "false"),
            ("GATEHOUSE_ADMIN_LISTEN", "0.0.0.0:9999"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.server.public_url, "https://env.example.com");
    assert_eq!(c.server.tls.cert, Path::new("/run/tls/tls.crt"));
    assert_eq!(
        c.store.url.expose(),
        "postgres://gh:${not-expanded}@db/gh",
        "taken as it is"
    );
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.login.max_failures, 9);
    assert_eq!(c.login.ban, Duration::from_secs(7200));
    assert!(!c.oauth.allow_plain_pkce);
    assert_eq!(c.admin.listen, "0.0.0.0:9999".parse().unwrap());
    // A required key may come from the environment alone.
    let without_url = MINIMAL.replace("public_url = \"https://gw.example.com\"\n", "");
    let c = parse_with(
        &without_url,
        &[("GATEHOUSE_SERVER_PUBLIC_URL", "https://env.example.com")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.server.public_url, "https://env.example.com");
}

#[test]
fn a_bad_value_names_the_variable_instead_of_a_line() {
    let e = parse_with(
        MINIMAL,
        &[
            ("GATEHOUSE_LOGIN_MAX_FAILURES", "many"),
            ("GATEHOUSE_OAUTH_ALLOW_PLAIN_PKCE", "yes"),
            ("GATEHOUSE_LOGIN_BAN", "forever"),
            ("GATEHOUSE_STORE_URL", "mysql://db"),
            ("GATEHOUSE_SERVER_TRUSTED_PROXIES", "10.0.0.0/8"),
            ("GATEHOUSE_SERVER_MAX_CONNECTIONS", "0"),
        ],
    )
    .unwrap_err();
    let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
    let expect = [
        "GATEHOUSE_LOGIN_MAX_FAILURES: login.max_failures: expected an integer, found 'many'",
        "GATEHOUSE_OAUTH_ALLOW_PLAIN_PKCE: oauth.allow_plain_pkce: expected true or false, found 'yes'",
        "GATEHOUSE_LOGIN_BAN: login.ban:",
        "GATEHOUSE_STORE_URL: store.url: must start with sqlite:// or postgres://",
        "GATEHOUSE_SERVER_TRUSTED_PROXIES: server.trusted_proxies: an array cannot be set from the environment",
        "GATEHOUSE_SERVER_MAX_CONNECTIONS: server.max_connections: must be between 1 and",
    ];
    for want in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "{want}\nnot in:\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(lines.len(), expect.len(), "{lines:#?}");
    assert!(e.0.iter().all(|e| e.variable.is_some()));
}

#[test]
fn a_variable_that_names_no_key_is_refused_and_others_are_not_overrides() {
    let e = parse_with(
        MINIMAL,
        &[
            ("GATEHOUSE_STORE_ULR", "sqlite://x.db"),
            ("GATEHOUSE_SERVER_TLS", "x"),
            ("GATEHOUSE_ROUTES_PATH", "/x"),
            ("GATEHOUSE_LOGIN_BAN_TIME", "1h"),
        ],
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("GATEHOUSE_STORE_ULR: names no key that the environment can set (did you mean GATEHOUSE_STORE_URL?)"),
        "{text}"
    );
    for var in [
        "GATEHOUSE_SERVER_TLS:",
        "GATEHOUSE_ROUTES_PATH:",
        "GATEHOUSE_LOGIN_BAN_TIME:",
    ] {
        assert!(text.contains(var), "{var} in {text}");
    }
    assert_eq!(e.0.len(), 4, "{text}");

    // Not overrides: no section of the file starts them, the file substitutes them, or
    // Kubernetes sets them for a Service.
    let src = format!(
        "{MINIMAL}[[users]]\nname = \"admin\"\npassword_hash = \"${{GATEHOUSE_ADMIN_PASSWORD_HASH}}\"\nmax_scope = \"READ\"\n"
    );
    let c = parse_with(
        &src,
        &[
            ("GATEHOUSE_CONFIG", "/etc/gatehouse/gatehouse.toml"),
            ("GATEHOUSE_REQUIRE_PG", "1"),
            ("GATEHOUSE_PG_BIN", "/usr/lib/postgresql/16/bin"),
            (
                "GATEHOUSE_ADMIN_PASSWORD_HASH",
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            ),
            ("GATEHOUSE_ADMIN_SERVICE_HOST", "10.0.0.7"),
            ("GATEHOUSE_ADMIN_SERVICE_PORT", "9090"),
            ("GATEHOUSE_ADMIN_SERVICE_PORT_METRICS", "9090"),
            ("GATEHOUSE_ADMIN_PORT", "tcp://10.0.0.7:9090"),
            ("GATEHOUSE_ADMIN_PORT_9090_TCP", "tcp://10.0.0.7:9090"),
            ("GATEHOUSE_ADMIN_PORT_9090_TCP_ADDR", "10.0.0.7"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.admin.listen, "127.0.0.1:9090".parse().unwrap());
}

#[test]
fn key_and_key_file_from_the_environment_replace_the_files_and_not_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    std::fs::write(dir.path().join("url"), "sqlite://from-a-file.db\n").unwrap();
    let src = format!("{MINIMAL}[store]\nurl = \"sqlite://in-the-file.db\"\n");
    let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let no_env = |_: &str| None;
    let c = Config::parse_with_overrides(
        &src,
        &path,
        &no_env,
        &vars(&[("GATEHOUSE_STORE_URL_FILE", "url")]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.store.url.expose(), "sqlite://from-a-file.db");
    let e = Config::parse_with_overrides(
        &src,
        &path,
        &no_env,
        &vars(&[
            ("GATEHOUSE_STORE_URL_FILE", "url"),
            ("GATEHOUSE_STORE_URL", "sqlite://x.db"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("GATEHOUSE_STORE_URL_FILE: store.url_file: give url or url_file, not both"),
        "{e}"
    );
}

/// Every key of every table section can be set from the environment, each by a name of its
/// own: a key added to a section's decoder gets its variable without more code.
#[test]
fn every_key_of_a_table_section_has_a_variable_of_its_own() {
    let arrays = ["scopes", "users", "apps", "routes"];
    let mut seen = std::collections::BTreeMap::new();
    for (section, keys) in KNOWN_KEYS {
        if arrays.contains(section) {
            continue;
        }
        for key in *keys {
            // A sub-table is a section of its own.
            if KNOWN_KEYS
                .iter()
                .any(|(s, _)| *s == format!("{section}.{key}"))
            {
                continue;
            }
            let name = env_name(section, key).unwrap();
            if let Some(other) = seen.insert(name.clone(), format!("{section}.{key}")) {
                panic!("{name} names both {other} and {section}.{key}");
            }
            let problems = match parse_with(MINIMAL, &[(&name, "x")]) {
                Ok(_) => String::new(),
                Err(e) => e.to_string(),
            };
            assert!(
                !problems.contains("names no key"),
                "{name} is not read: {problems}"
            );
        }
    }
    assert!(seen.contains_key("GATEHOUSE_SERVER_TLS_CERT"));
}

#[test]
fn a_secret_from_the_environment_is_never_echoed() {
    for url in [
        "mysql://gh:very-secret-password@db/gh",
        "postgres://gh:very-secret-password@db/gh?sslmode=sometimes",
    ] {
        let e = parse_with(MINIMAL, &[("GATEHOUSE_STORE_URL", url)])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("GATEHOUSE_STORE_URL: store.url: "), "{e}");
        assert!(!e.contains("very-secret-password"), "{e}");
    }
}
