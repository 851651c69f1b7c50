//! `GATEHOUSE_<SECTION>_<KEY>` overrides through the real binary (SPEC §7.5): `check-config`
//! names the variable and exits 2 on a bad value or a key that does not exist, the environment
//! wins over the file for `serve`, and variables that are not overrides change nothing.

use std::process::Command;

use crate::helpers::harness::ConfigDir;
use crate::helpers::harness::process::{GatewayProcess, binary};

fn check_config(path: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn check_config_names_the_variable_of_a_bad_value_and_exits_2() {
    let dir = ConfigDir::new();
    let path = dir.write("", "");
    let (code, text) = check_config(
        &path,
        &[
            ("GATEHOUSE_LOGIN_MAX_FAILURES", "many"),
            ("GATEHOUSE_STORE_ULR", "sqlite://x.db"),
        ],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.lines().any(|l| l
            == "GATEHOUSE_LOGIN_MAX_FAILURES: login.max_failures: expected an integer, found 'many'"),
        "{text}"
    );
    assert!(
        text.contains("GATEHOUSE_STORE_ULR: names no key that the environment can set (did you mean GATEHOUSE_STORE_URL?)"),
        "{text}"
    );
    assert!(text.contains("and the environment"), "{text}");

    // A problem found after decoding (a file that does not load) names the variable too.
    for command in ["check-config", "serve"] {
        let out = Command::new(binary())
            .args([command, "--config"])
            .arg(&path)
            .env("GATEHOUSE_SERVER_TLS_CERT", "missing.pem")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.lines().any(
                |l| l.starts_with("GATEHOUSE_SERVER_TLS_CERT: server.tls.cert: ")
                    && l.contains("missing.pem")
            ),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn the_environment_completes_and_wins_over_the_file() {
    let dir = ConfigDir::new();
    // The file alone is incomplete: no public_url.
    let path = dir.write("", "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("public_url = \"https://localhost\"\n", "");
    std::fs::write(&path, text).unwrap();
    let (code, out) = check_config(&path, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("server.public_url: required"), "{out}");
    let env = [
        ("GATEHOUSE_SERVER_PUBLIC_URL", "https://env.example.test"),
        // Not overrides: these must change nothing and break nothing.
        ("GATEHOUSE_REQUIRE_PG", "0"),
        ("GATEHOUSE_ADMIN_SERVICE_HOST", "10.0.0.7"),
        ("GATEHOUSE_ADMIN_PORT_9090_TCP", "tcp://10.0.0.7:9090"),
    ];
    let (code, out) = check_config(&path, &env);
    assert_eq!(code, Some(0), "{out}");
    // `token create` reads the config the same way.
    std::fs::write(
        &path,
        format!(
            "{}\n[[users]]\nname = \"alice\"\npassword_hash = \"{}\"\nmax_scope = \"READ\"\n",
            std::fs::read_to_string(&path).unwrap(),
            gatehouse::auth::password::hash_password("pw").unwrap()
        ),
    )
    .unwrap();
    let created = Command::new(binary())
        .args([
            "token", "create", "--user", "alice", "--scope", "READ", "--config",
        ])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let gw = GatewayProcess::start_with_env(&path, &env);
    let metadata: serde_json::Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            dir.pki
                .client(gw.public, true)
                .get(format!(
                    "https://localhost:{}/.well-known/oauth-authorization-server",
                    gw.public.port()
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
    assert_eq!(metadata["issuer"], "https://env.example.test");
}
