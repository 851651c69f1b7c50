//! The real `gatehouse` binary as a child process: for signals, exit codes, logs on stderr and
//! the process's own memory use.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

/// A running `gatehouse serve`, with its stderr lines collected.
pub struct GatewayProcess {
    pub child: Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl GatewayProcess {
    /// Starts `gatehouse serve --config PATH` (JSON logs) and waits for its `listening` line.
    pub fn start(config: &Path) -> Self {
        Self::start_with_env(config, &[])
    }

    /// [`GatewayProcess::start`] with `env` added to the child's environment.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains("\"listening\""))
                .cloned();
            if let Some(line) = found {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let public = v["public"].as_str().unwrap().parse().unwrap();
                let admin = v["admin"].as_str().unwrap().parse().unwrap();
                return Self {
                    child,
                    public,
                    admin,
                    lines,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "gatehouse exited with {status}: {:?}",
                    lines.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "gatehouse did not start: {:?}",
                lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "gatehouse did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A field of /proc/PID/status in KiB, such as `VmHWM` (peak resident memory).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
