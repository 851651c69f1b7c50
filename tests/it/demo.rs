//! `gatehouse demo` as a newcomer runs it: the real binary on free ports, its printed shell
//! lines pasted into `sh` as they are, the sample backend seeing the identity headers, and
//! Ctrl-C stopping everything cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::process::binary;

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
        .any(|l: &String| l.contains("/rest/api/content\"") && l.contains("TOKEN"))
    {
        assert!(Instant::now() < deadline, "the demo printed {printed:#?}");
        printed.push(lines.next().unwrap().unwrap());
    }
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
    let read = printed
        .iter()
        .find(|l| l.starts_with("curl") && l.contains("$PAT") && l.ends_with("/rest/api/content\""))
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&paste(&exports, read)).unwrap();
    assert_eq!(answer["size"], 2, "{answer}");
    assert_eq!(answer["seenBy"]["user"], "admin", "{answer}");
    assert_eq!(answer["seenBy"]["scopes"], "READ WRITE ADMIN", "{answer}");
    assert!(
        printed.iter().any(|l| l.contains("/v1/oauthApps")),
        "the app registration step is printed"
    );
    assert!(
        printed.iter().any(|l| l.contains("/oauth2/token")),
        "the code exchange step is printed"
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
