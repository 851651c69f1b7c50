//! `gatehouse demo` as a newcomer runs it: the real binary on free ports, its printed shell
//! lines pasted into `sh` as they are, the sample backend seeing the identity headers, and
//! Ctrl-C stopping everything cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::harness::process::binary;

/// Runs the demo's printed lines `lines` (exports and one command) in `sh`, returning stdout.
fn paste(exports: &str, command: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{exports}\n{command}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_demo_prints_steps_that_work_and_stops_cleanly() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is needed to paste the demo's steps"
        );
        eprintln!("skipping: curl not installed");
        return;
    }
    let mut child = Command::new(binary())
        .args(["demo", "--port", "0", "--admin-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !printed
        .iter()
        .any(|l: &String| l.contains("/rest/api/content\"") && l.contains("$TOKEN\" -H"))
    {
        assert!(Instant::now() < deadline, "the demo printed {printed:#?}");
        printed.push(lines.next().unwrap().unwrap());
    }
    let said = |words: &str| printed.iter().any(|l| l.contains(words));
    assert!(said("a second shell"), "the steps say where to paste them");
    assert!(
        said("A code lives 60 s"),
        "the steps say how long a code lives"
    );
    let exports = printed
        .iter()
        .find(|l| l.starts_with("export GH="))
        .unwrap()
        .clone();
    let folder = exports
        .split_whitespace()
        .find_map(|w| w.strip_prefix("CACERT="))
        .map(|c| std::path::PathBuf::from(c).parent().unwrap().to_path_buf())
        .unwrap();
    assert!(folder.exists());
    let step = |prefix: &str, suffix: &str| -> String {
        printed
            .iter()
            .find(|l| l.starts_with(prefix) && l.ends_with(suffix))
            .unwrap_or_else(|| panic!("no printed line {prefix}…{suffix} in {printed:#?}"))
            .clone()
    };

    // 1. Read content with the admin's PAT.
    let read_with_pat = step(
        "curl -s --cacert \"$CACERT\" -H \"Authorization: Bearer $PAT\"",
        "/rest/api/content\"",
    );
    let answer: serde_json::Value = serde_json::from_str(&paste(&exports, &read_with_pat)).unwrap();
    assert_eq!(answer["size"], 2, "{answer}");
    assert_eq!(answer["seenBy"]["user"], "admin", "{answer}");
    assert_eq!(answer["seenBy"]["scopes"], "READ WRITE ADMIN", "{answer}");

    // 2. Register an app; the placeholders line is filled in as a newcomer would.
    let register = step("curl", "\"$GH/v1/oauthApps\"");
    let app: serde_json::Value = serde_json::from_str(&paste(&exports, &register)).unwrap();
    let (client_id, secret) = (
        app["clientId"].as_str().unwrap(),
        app["clientSecret"].as_str().unwrap(),
    );
    assert_eq!(
        step("export CLIENT_ID=", ""),
        "export CLIENT_ID=<clientId> CLIENT_SECRET=<clientSecret>"
    );
    let exports = format!("{exports}\nexport CLIENT_ID={client_id} CLIENT_SECRET={secret}");

    // 3. Authorize without a browser, as printed: the admin's PAT, the consent page, Approve.
    let authorize = [
        step("export AUTHZ=", "echo \"$AUTHZ\""),
        step("PAGE=$(curl", "\"$AUTHZ\")"),
        step("curl", "\"$GH/oauth2/authorize\""),
    ]
    .join("\n");
    let out = paste(&exports, &authorize);
    let redirect = out.lines().last().unwrap();
    assert!(
        redirect.starts_with("http://127.0.0.1:8976/callback?"),
        "{out}"
    );
    let query: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(redirect.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(query["state"], "xyz", "{redirect}");
    assert!(query.contains_key("iss"), "{redirect}");
    let exports = format!("{exports}\nexport CODE={}", query["code"]);

    // 4. Exchange the code.
    let exchange = step("curl", "\"$GH/oauth2/token\"");
    let tokens: serde_json::Value = serde_json::from_str(&paste(&exports, &exchange)).unwrap();
    assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
    assert_eq!(tokens["scope"], "WRITE", "{tokens}");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    let exports = format!(
        "{exports}\nexport TOKEN={}",
        tokens["access_token"].as_str().unwrap()
    );

    // 5. Read and write with the app's token: the backend is told the user, scopes and app.
    let read = step(
        "curl -s --cacert \"$CACERT\" -H \"Authorization: Bearer $TOKEN\" \"",
        "/rest/api/content\"",
    );
    let answer: serde_json::Value = serde_json::from_str(&paste(&exports, &read)).unwrap();
    assert_eq!(answer["seenBy"]["user"], "admin", "{answer}");
    assert_eq!(answer["seenBy"]["scopes"], "READ WRITE", "{answer}");
    assert_eq!(answer["seenBy"]["clientId"], client_id, "{answer}");
    let write = step(
        "curl -s --cacert \"$CACERT\" -H \"Authorization: Bearer $TOKEN\" -H",
        "/rest/api/content\"",
    );
    let created: serde_json::Value = serde_json::from_str(&paste(&exports, &write)).unwrap();
    assert_eq!(created["title"], "Hello", "{created}");
    assert_eq!(created["seenBy"]["clientId"], client_id, "{created}");
    let answer: serde_json::Value = serde_json::from_str(&paste(&exports, &read)).unwrap();
    assert_eq!(
        answer["size"], 3,
        "the write is seen by the next read: {answer}"
    );

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
    assert!(!folder.exists(), "the demo folder is deleted");
}
