//! The command line as a user meets it: exit codes, every config problem at once with
//! file:line:column, and secrets that never print.

use std::process::Command;

use crate::helpers::harness::ConfigDir;
use crate::helpers::harness::process::binary;

#[test]
fn check_config_accepts_a_good_file() {
    let dir = ConfigDir::new();
    let path = dir.write("", "");
    let out = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_config_reports_three_mistakes_at_once_and_exits_2() {
    let dir = ConfigDir::new();
    let path = dir.write(
        "idle_timeout = \"forever\"",
        "[auth]\nlewway = \"5s\"\n\n[[routes]]\npath = \"/rest/api\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"bearer\"\nscope = \"READ_ALL\"\n",
    );
    let out = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("gatehouse.toml:"))
        .collect();
    assert_eq!(problems.len(), 3, "{stderr}");
    let file = path.display().to_string();
    assert!(
        problems[0].starts_with(&format!("{file}:5:16: server.idle_timeout")),
        "{stderr}"
    );
    assert!(
        problems[1].starts_with(&format!(
            "{file}:24:1: unknown key 'auth.lewway' (did you mean 'leeway'?)"
        )),
        "{stderr}"
    );
    assert!(
        problems[2].starts_with(&format!(
            "{file}:30:9: routes[0].scope: unknown scope 'READ_ALL'"
        )),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_a_bad_config_with_the_same_messages() {
    let dir = ConfigDir::new();
    let path = dir.write("max_connections = 0", "");
    let out = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("server.max_connections: must be between 1 and")
    );
}

/// A route whose `upstream_ca` (line 27, column 15 of `ConfigDir::write`) is `nope.pem`.
const ROUTE_WITH_CA: &str = "[[routes]]\npath = \"/x\"\nupstream = \"https://localhost:1\"\nauth = \"none\"\nupstream_ca = \"nope.pem\"\n";

#[test]
fn files_the_config_names_are_loaded_by_check_config_and_serve() {
    // (what is wrong, the change to a fresh ConfigDir, extra config, line:column, key, needle)
    type Breaks = fn(&ConfigDir);
    let cases: &[(&str, Breaks, &str, &str, &str, &str)] = &[
        (
            "missing certificate",
            |d| std::fs::remove_file(d.dir.path().join("cert.pem")).unwrap(),
            "",
            "7:8",
            "server.tls.cert",
            "cert.pem: No such file or directory",
        ),
        (
            "certificate that is not PEM",
            |d| std::fs::write(d.dir.path().join("cert.pem"), "not a certificate").unwrap(),
            "",
            "7:8",
            "server.tls.cert",
            "cert.pem",
        ),
        (
            "garbage private key",
            |d| std::fs::write(d.dir.path().join("key.pem"), "garbage").unwrap(),
            "",
            "8:7",
            "server.tls.key",
            "key.pem",
        ),
        (
            "a key that does not match the certificate",
            |d| {
                let other = crate::helpers::harness::TestPki::new();
                std::fs::write(d.dir.path().join("key.pem"), &other.server_key_pem).unwrap()
            },
            "",
            "8:7",
            "server.tls.key",
            "does not match the certificate",
        ),
        (
            "missing signing key",
            |d| std::fs::remove_file(d.dir.path().join("signing.pem")).unwrap(),
            "",
            "21:17",
            "oauth.signing_keys[0]",
            "signing.pem",
        ),
        (
            "garbage signing key",
            |d| std::fs::write(d.dir.path().join("signing.pem"), "garbage").unwrap(),
            "",
            "21:17",
            "oauth.signing_keys[0]",
            "signing.pem",
        ),
        (
            "missing upstream CA",
            |_| {},
            ROUTE_WITH_CA,
            "27:15",
            "routes[0].upstream_ca",
            "nope.pem: No such file or directory",
        ),
    ];
    let mut failures = Vec::new();
    for (what, breaks, extra, at, key, needle) in cases {
        let dir = ConfigDir::new();
        let path = dir.write("", extra);
        breaks(&dir);
        let want = format!("{}:{at}: {key}: ", path.display());
        for command in ["check-config", "serve"] {
            let out = Command::new(binary())
                .args([command, "--config"])
                .arg(&path)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let located = stderr
                .lines()
                .any(|l| l.starts_with(&want) && l.contains(needle));
            if out.status.code() != Some(2) || !located {
                failures.push(format!(
                    "{what}: `{command}` exited {:?}; want exit 2 and a line starting {want:?} containing {needle:?}; stderr:\n{stderr}",
                    out.status.code()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn secrets_from_the_environment_never_print() {
    let dir = ConfigDir::new();
    let path = dir.write(
        "",
        "[[apps]]\nclient_id = \"rep\"\nclient_secret = \"${APP_SECRET}\"\ndisplay_name = \"R\"\nallowed_callback_urls = [\"https://r.example.com/cb\"]\nscopes = [\"NOPE\"]\n",
    );
    let out = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .env("APP_SECRET", "very-secret-value-123456")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("unknown scope 'NOPE'"), "{all}");
    assert!(!all.contains("very-secret-value"), "{all}");
}

#[test]
fn bad_usage_exits_2() {
    let out = Command::new(binary()).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
