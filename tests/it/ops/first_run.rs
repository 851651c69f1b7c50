//! A first run as a newcomer makes it, with the real binary in a fresh folder: the README's
//! "First run" shell blocks as they are written, and the steps `gatehouse init` prints. The
//! first shell (init, a user, check-config, the sample backend, serve) runs in its own process
//! group; the second (a PAT and a curl through the gateway) once the gateway listens.
//!
//! Two changes are made to what is written, and only these: lines starting with `cargo` are
//! not run (the test runs the binary it built, first on `PATH`), and the fixed ports 8443,
//! 9090 and 8090 become free ones (tests run in parallel), in the lines and, right after
//! `gatehouse init`, in the config it wrote.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::harness::process::binary;

/// The ports the documentation uses and the free ones the test uses instead.
struct Ports([(&'static str, u16); 3]);

impl Ports {
    fn free() -> Self {
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        Self([("8443", port()), ("9090", port()), ("8090", port())])
    }

    fn apply(&self, line: &str) -> String {
        self.0.iter().fold(line.to_string(), |l, (from, to)| {
            l.replace(from, &to.to_string())
        })
    }

    /// A `sed` line rewriting the ports in the config `path` (relative to the shell's folder).
    fn rewrite_config(&self, path: &str) -> String {
        let edits: Vec<String> = self
            .0
            .iter()
            .map(|(from, to)| format!("-e 's/:{from}/:{to}/g'"))
            .collect();
        format!("sed -i {} {path}", edits.join(" "))
    }

    fn public(&self) -> u16 {
        self.0[0].1
    }
}

/// `PATH` with the folder of the binary under test first.
fn path_with_binary() -> std::ffi::OsString {
    let dir = Path::new(binary()).parent().unwrap().to_path_buf();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(&rest))).unwrap()
}

fn curl_missing() -> bool {
    if Command::new("curl").arg("--version").output().is_ok() {
        return false;
    }
    // A run that requires the real parts (CI sets GATEHOUSE_REQUIRE_*) requires curl too.
    let required = std::env::var_os("CI").is_some()
        || ["PG", "BROWSER", "IDP", "INGRESS"]
            .iter()
            .any(|part| std::env::var(format!("GATEHOUSE_REQUIRE_{part}")).as_deref() == Ok("1"));
    assert!(!required, "curl is needed to follow the first run");
    eprintln!("skipping: curl not installed");
    true
}

/// The first shell: `sh -c script` in its own process group, with what it prints collected.
/// Dropping it stops the whole group (the shell, the backend it started with `&`, the
/// gateway), as Ctrl-C would.
struct FirstShell {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl FirstShell {
    fn start(folder: &Path, script: &str, stdin: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(folder)
            .env("PATH", path_with_binary())
            .env_remove("RUST_LOG")
            .env_remove("GATEHOUSE_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut out = sink.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        Self { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the gateway accepts connections on `port`.
    fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the first shell ended ({status}) before the gateway listened:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not listen on {port}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the group with SIGTERM and waits; returns the shell's output.
    fn stop(mut self) -> String {
        self.signal_group("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the first shell did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.output()
    }

    fn signal_group(&self, name: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{name}"), "--", &format!("-{}", self.child.id())])
            .status();
    }
}

impl Drop for FirstShell {
    fn drop(&mut self) {
        self.signal_group("KILL");
        let _ = self.child.wait();
    }
}

/// Runs the second shell's `script` in `folder`, returning stdout (and failing on an error).
fn second_shell(folder: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("set -e\n{script}"))
        .current_dir(folder)
        .env("PATH", path_with_binary())
        .env_remove("GATEHOUSE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the second shell failed:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The first shell's script from its written lines: `cargo` lines left out, the ports
/// replaced, and the config `init` writes rewritten to the free ports right after it.
fn first_script(lines: &[String], ports: &Ports, config_after_init: Option<&str>) -> String {
    let mut script = Vec::new();
    for line in lines {
        if line.trim_start().starts_with("cargo ") {
            continue;
        }
        script.push(ports.apply(line));
        if let Some(config) = config_after_init
            && line.contains(" init ")
        {
            script.push(ports.rewrite_config(config));
        }
    }
    script.join("\n")
}

/// What the curl through the gateway answered: the sample backend's pages, and whom the
/// gateway told it about.
fn assert_answered_through_the_gateway(answer: &str) {
    let json: serde_json::Value = serde_json::from_str(answer.trim())
        .unwrap_or_else(|e| panic!("not the backend's JSON ({e}): {answer}"));
    assert_eq!(json["size"], 2, "{json}");
    assert_eq!(json["seenBy"]["user"], "admin", "{json}");
    assert_eq!(json["seenBy"]["scopes"], "READ WRITE ADMIN", "{json}");
}

/// The shell blocks (```sh) of the README section titled `title`, each as its lines.
fn readme_blocks(title: &str) -> Vec<Vec<String>> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README.md has no section {title}"));
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), line) => block.push(line.to_string()),
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn the_readme_first_run_works_as_written() {
    if curl_missing() {
        return;
    }
    let blocks = readme_blocks("First run");
    let [first, second] = &blocks[..] else {
        panic!("README's First run should have two shell blocks: {blocks:#?}")
    };
    // The folder `gatehouse init` is given, from the line that runs it.
    let init = first
        .iter()
        .find(|l| l.starts_with("gatehouse init "))
        .expect("the first block runs gatehouse init");
    let dir = init.split_whitespace().nth(2).unwrap().to_string();
    let repository = tempfile::tempdir().unwrap();
    let ports = Ports::free();

    let config = format!("{dir}/gatehouse.toml");
    let script = first_script(first, &ports, Some(&config));
    let mut shell = FirstShell::start(repository.path(), &script, "choose a password\n");
    shell.wait_listening(ports.public());
    let second = second.iter().map(|l| ports.apply(l)).collect::<Vec<_>>();
    let answer = second_shell(repository.path(), &second.join("\n"));
    assert_answered_through_the_gateway(&answer);

    let output = shell.stop();
    assert!(
        output.contains("gatehouse.toml: ok (2 route(s), 1 user(s), 0 app(s))"),
        "check-config passed: {output}"
    );
    assert!(
        repository
            .path()
            .join(&dir)
            .join("data/gatehouse.db")
            .exists(),
        "the store is in the data folder"
    );
}

#[test]
fn init_writes_a_folder_that_serves_by_the_steps_it_prints_and_never_overwrites() {
    if curl_missing() {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    let folder = parent.path().join("fresh");
    let out = Command::new(binary())
        .arg("init")
        .arg(&folder)
        .env("PATH", path_with_binary())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    for file in [
        "gatehouse.toml",
        "keys/signing.pem",
        "tls/cert.pem",
        "tls/key.pem",
    ] {
        assert!(folder.join(file).is_file(), "{file} missing: {printed}");
    }
    assert!(folder.join("data").is_dir());

    // check-config passes on the fresh folder as it is.
    let check = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(folder.join("gatehouse.toml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    // A second init into the same folder refuses with one line and changes nothing.
    let config_before = std::fs::read(folder.join("gatehouse.toml")).unwrap();
    let key_before = std::fs::read(folder.join("keys/signing.pem")).unwrap();
    let again = Command::new(binary())
        .arg("init")
        .arg(&folder)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    let stderr = String::from_utf8(again.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(again.stdout.is_empty());
    assert_eq!(
        std::fs::read(folder.join("gatehouse.toml")).unwrap(),
        config_before
    );
    assert_eq!(
        std::fs::read(folder.join("keys/signing.pem")).unwrap(),
        key_before
    );

    // The printed steps: the first shell from `cd` to `serve`, the second after "# 3.".
    let lines: Vec<String> = printed.lines().map(str::to_string).collect();
    let cd = lines.iter().position(|l| l.starts_with("cd ")).unwrap();
    let serve = lines
        .iter()
        .position(|l| l.starts_with("gatehouse serve "))
        .unwrap_or_else(|| panic!("no serve line (is gatehouse on PATH?): {printed}"));
    let second_at = lines.iter().position(|l| l.starts_with("# 3.")).unwrap();
    let ports = Ports::free();
    let mut first = vec![lines[cd].clone(), ports.rewrite_config("gatehouse.toml")];
    first.extend(lines[cd + 1..=serve].iter().map(|l| ports.apply(l)));
    let mut shell = FirstShell::start(parent.path(), &first.join("\n"), "choose a password\n");
    shell.wait_listening(ports.public());
    let second: Vec<String> = std::iter::once(lines[cd].clone())
        .chain(lines[second_at + 1..].iter().map(|l| ports.apply(l)))
        .collect();
    let answer = second_shell(parent.path(), &second.join("\n"));
    assert_answered_through_the_gateway(&answer);
    shell.stop();
}
