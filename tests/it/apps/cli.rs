//! `gatehouse token create` (SPEC §1) as an operator runs it, and the real binary serving the
//! management API: client secrets and tokens never appear in GET or list responses, in the
//! log (at debug level), or in the database files — only their SHA-256 does.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use gatehouse::store::secret_hash;
use serde_json::{Value, json};

use crate::helpers::harness::process::{GatewayProcess, binary};
use crate::helpers::harness::{ConfigDir, USERS};

fn token_create(config: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(["token", "create", "--config"])
        .arg(config)
        .args(args)
        .env_remove("GATEHOUSE_CONFIG")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn token_create_prints_one_token_and_refuses_what_the_user_may_not_have() {
    let dir = ConfigDir::new();
    let path = dir.write("", USERS);
    let out = token_create(
        &path,
        &[
            "--user",
            "root",
            "--scope",
            "ADMIN",
            "--name",
            "bootstrap",
            "--ttl",
            "2h",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "the token alone on stdout: {stdout:?}"
    );
    let token = stdout.trim_end();
    assert!(
        token.starts_with("gh_pat_") && token.len() == 7 + 43,
        "{token}"
    );
    assert!(
        stderr(&out).contains("for root with scope ADMIN"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(token));

    for (args, code, want) in [
        (
            vec!["--user", "mallory", "--scope", "READ"],
            2,
            "--user: no user 'mallory'",
        ),
        (
            vec!["--user", "alice", "--scope", "ADMIN"],
            2,
            "--scope: ADMIN exceeds alice's max_scope (WRITE)",
        ),
        (
            vec!["--user", "alice", "--scope", "EVERYTHING"],
            2,
            "--scope: unknown scope",
        ),
        (
            vec!["--user", "alice", "--scope", "READ", "--ttl", "soon"],
            2,
            "--ttl: must be a duration",
        ),
        (
            vec!["--user", "alice", "--scope", "READ", "--name", ""],
            2,
            "--name: must not be empty",
        ),
        (vec!["--user", "alice"], 2, "--scope"),
    ] {
        let out = token_create(&path, &args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    let missing = dir.dir.path().join("missing.toml");
    let out = token_create(&missing, &["--user", "root", "--scope", "READ"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Every file of the SQLite store (main file, WAL, shared memory), concatenated.
fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("gatehouse.db") {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_responses_logs_or_the_database() {
    let dir = ConfigDir::new();
    let path = dir.write("", USERS);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("level = \"info\"", "level = \"debug\"");
    std::fs::write(&path, text).unwrap();
    let out = token_create(&path, &["--user", "root", "--scope", "SYSTEM_ADMIN"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pat = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();

    let mut process = GatewayProcess::start(&path);
    let client = dir.pki.client(process.public, false);
    let url = |p: &str| format!("https://localhost:{}{p}", process.public.port());
    let call = |method: reqwest::Method, p: String, body: Option<Value>| {
        let mut req = client.request(method, url(&p)).bearer_auth(&pat);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let body =
        json!({"displayName": "Secretive", "allowedCallbackUrls": ["https://c.example.com/cb"]});
    let (status, created) = call(reqwest::Method::POST, "/v1/oauthApps".into(), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let created: Value = serde_json::from_str(&created).unwrap();
    let id = created["name"]
        .as_str()
        .unwrap()
        .strip_prefix("oauthApps/")
        .unwrap()
        .to_owned();
    let mut secrets = vec![created["clientSecret"].as_str().unwrap().to_owned()];
    for grace in [Some(json!({"gracePeriod": "1h"})), None] {
        let (status, rotated) = call(
            reqwest::Method::POST,
            format!("/v1/oauthApps/{id}:rotateSecret"),
            grace,
        )
        .await;
        assert_eq!(status, 200, "{rotated}");
        let rotated: Value = serde_json::from_str(&rotated).unwrap();
        secrets.push(rotated["clientSecret"].as_str().unwrap().to_owned());
    }
    let (status, minted) = call(
        reqwest::Method::POST,
        "/v1/personalTokens".into(),
        Some(json!({"displayName": "ci", "scope": "READ"})),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let minted: Value = serde_json::from_str(&minted).unwrap();
    let new_pat = minted["token"].as_str().unwrap().to_owned();

    let mut readable = String::new();
    for p in [
        format!("/v1/oauthApps/{id}"),
        "/v1/oauthApps".to_owned(),
        "/v1/oauthApps?pageSize=1".to_owned(),
        "/v1/personalTokens".to_owned(),
    ] {
        let (status, text) = call(reqwest::Method::GET, p, None).await;
        assert_eq!(status, 200, "{text}");
        readable.push_str(&text);
    }
    assert!(readable.contains(&id), "the reads did return the app");

    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(20)), 0);
    let log = process.log_lines().join("\n");
    assert!(
        log.contains("oauth app client secret rotated"),
        "debug log captured: {log}"
    );
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "the log ran at debug level"
    );
    let db = database_bytes(dir.dir.path());
    assert!(!db.is_empty());
    let all_secrets = secrets.iter().chain([&pat, &new_pat]);
    for s in all_secrets {
        assert!(
            !readable.contains(s.as_str()),
            "a secret in a GET or list response"
        );
        assert!(!log.contains(s.as_str()), "a secret in the log");
        assert!(!contains(&db, s.as_bytes()), "a secret in the database");
    }
    // What the store keeps instead: the SHA-256 of the current secret and of the PATs.
    for s in [&secrets[2], &pat, &new_pat] {
        assert!(contains(&db, &secret_hash(s).0), "the hash is stored");
    }
}

fn declared_app(client_id: &str, name: &str, callback: &str) -> String {
    format!(
        "[[apps]]\nclient_id = \"{client_id}\"\nclient_secret = \"{client_id}-secret-0123456789\"\n\
         display_name = \"{name}\"\nallowed_callback_urls = [\"{callback}\"]\nscopes = [\"READ\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_syncs_config_apps_and_refuses_invalid_ones() {
    let dir = ConfigDir::new();
    let cb = "https://a.example.com/cb";
    let path = dir.write(
        "",
        &format!("{USERS}\n{}", declared_app("alpha", "Alpha", cb)),
    );
    let out = token_create(&path, &["--user", "root", "--scope", "ADMIN"]);
    let pat = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();
    let process = GatewayProcess::start(&path);
    let client = dir.pki.client(process.public, true);
    let list_url = format!("https://localhost:{}/v1/oauthApps", process.public.port());
    let names = || async {
        let v: Value = client
            .get(&list_url)
            .bearer_auth(&pat)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let apps = v["oauthApps"].as_array().unwrap().clone();
        apps.iter()
            .map(|a| {
                format!(
                    "{}={}",
                    a["clientId"].as_str().unwrap(),
                    a["displayName"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(names().await, ["alpha=Alpha"]);

    let both = format!(
        "{USERS}\n{}\n{}",
        declared_app("alpha", "Alpha 2", cb),
        declared_app("beta", "Beta", "https://b.example.com/cb")
    );
    dir.write("", &both);
    process.signal("HUP");
    crate::helpers::harness::poll_until(Duration::from_secs(10), || async {
        names().await == ["alpha=Alpha 2", "beta=Beta"]
    })
    .await;

    // An app the API would refuse makes the whole reload refused: nothing changes.
    let broken = format!(
        "{USERS}\n{}",
        declared_app("alpha", "Alpha 3", "http://a.example.com/cb")
    );
    dir.write("", &broken);
    process.signal("HUP");
    crate::helpers::harness::poll_until(Duration::from_secs(10), || async {
        process
            .log_lines()
            .iter()
            .any(|l| l.contains("config reload refused"))
    })
    .await;
    assert!(
        process
            .log_lines()
            .iter()
            .any(|l| l.contains("apps[0].allowed_callback_urls[0]: must use https")),
        "the reason is logged"
    );
    assert_eq!(names().await, ["alpha=Alpha 2", "beta=Beta"]);
}
