//! `check-config` on `[[issuers]]` and `routes.issuers` through the real binary: every problem
//! at file:line:column, exit 2; a good file passes.

use std::process::Command;

use crate::helpers::harness::ConfigDir;
use crate::helpers::harness::process::binary;

fn check(dir: &ConfigDir, extra: &str) -> (Option<i32>, String) {
    let path = dir.write("", extra);
    let out = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_reports_issuer_mistakes_where_they_are() {
    let dir = ConfigDir::new();
    let (code, stderr) = check(
        &dir,
        "[[issuers]]\nname = \"self\"\nissuer = \"https://sso.example.com\"\naudiences = [\"gatehouse\"]\n\n[[issuers]]\nname = \"corp\"\nissuer = \"https://corp.example.com\"\nalgorithms = [\"HS256\"]\nca = \"no-such-ca.pem\"\n\n[[routes]]\npath = \"/api\"\nupstream = \"http://127.0.0.1:1\"\nscope = \"READ\"\nissuers = [\"self\", \"partner\"]\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
    for expected in [
        ":24:8: issuers[0].name: \"self\" is reserved",
        ":28:1: issuers[1].audiences: required",
        ":31:15: issuers[1].algorithms[0]: 'HS256' is not accepted",
        ":38:20: routes[0].issuers[1]: 'partner' is neither \"self\" nor the name of an [[issuers]] entry",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    // The ca file is read by check-config as serve would read it.
    let (code, stderr) = check(
        &dir,
        "[[issuers]]\nname = \"corp\"\nissuer = \"https://corp.example.com\"\naudiences = [\"gatehouse\"]\nca = \"no-such-ca.pem\"\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(":27:6: issuers[0].ca: ") && stderr.contains("no-such-ca.pem"),
        "{stderr}"
    );
    let (code, stderr) = check(
        &dir,
        "[[issuers]]\nname = \"corp\"\nissuer = \"https://corp.example.com\"\naudiences = [\"gatehouse\"]\nca = \"ca.pem\"\n\n[[routes]]\npath = \"/api\"\nupstream = \"http://127.0.0.1:1\"\nscope = \"READ\"\nissuers = [\"corp\"]\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
}
