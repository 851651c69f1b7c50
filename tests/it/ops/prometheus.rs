//! The shipped Prometheus files (`deploy/prometheus/`) against the real thing: `promtool`
//! checks the scrape config and the rules and runs the rules' unit tests, then a real
//! Prometheus, started with the shipped config pointed at a running gateway, scrapes it and
//! answers queries for `gatehouse_` series, the shipped recording rules and every query of the
//! shipped Grafana dashboard.
//! Without `prometheus`/`promtool` (Debian's `prometheus` package) the test is skipped, unless
//! `CI` or `GATEHOUSE_REQUIRE_PROMETHEUS=1` is set: then it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{TestGateway, open_route};

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn shipped_prometheus_config_scrapes_a_running_gateway() {
    let Some((prometheus, promtool)) = tools() else {
        return;
    };
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");

    // promtool on the shipped files as they are.
    run_promtool(
        &promtool,
        &shipped,
        &["check", "rules", "gatehouse-rules.yml"],
    );
    run_promtool(
        &promtool,
        &shipped,
        &["test", "rules", "gatehouse-rules.test.yml"],
    );

    // A gateway with one open route, and the shipped config aimed at its admin listener.
    let upstream = Upstream::start().await;
    let gw = TestGateway::start("", &open_route("/up", upstream.addr, "")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(shipped.join("prometheus.yml")).unwrap();
    let config = replace_once(&config, "localhost:9090", &gw.admin.to_string());
    let config = replace_once(&config, "scrape_interval: 15s", "scrape_interval: 1s");
    let config = replace_once(&config, "scrape_timeout: 10s", "scrape_timeout: 1s");
    let config = replace_once(
        &config,
        "evaluation_interval: 15s",
        "evaluation_interval: 1s",
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(
        shipped.join("gatehouse-rules.yml"),
        dir.path().join("gatehouse-rules.yml"),
    )
    .unwrap();
    run_promtool(
        &promtool,
        dir.path(),
        &["check", "config", "prometheus.yml"],
    );

    let mut server = PrometheusServer::start(&prometheus, dir.path());
    let api = ApiClient {
        base: format!("http://{}", server.addr),
        http: reqwest::Client::new(),
    };
    server
        .poll("Prometheus ready", || async {
            let ready = api.http.get(format!("{}/-/ready", api.base)).send().await;
            ready.is_ok_and(|r| r.status() == 200).then_some(())
        })
        .await;

    // Two batches of requests, each seen through Prometheus, so that the counter increases
    // between scrapes and the shipped recording rule has a rate to show.
    let client = gw.client(true);
    let mut sent = 0;
    for batch in [3, 4] {
        for _ in 0..batch {
            let response = client.get(gw.url("/up/thing")).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
        }
        sent += batch;
        let counted = server
            .poll("gatehouse_http_requests_total to reach the requests sent", || {
                let api = &api;
                async move {
                    let total = api
                        .sum(r#"gatehouse_http_requests_total{job="gatehouse", route="/up", method="GET", status="200"}"#)
                        .await?;
                    (total >= f64::from(sent)).then_some(total)
                }
            })
            .await;
        assert!(counted >= f64::from(sent));
    }

    let up = api.sum(r#"up{job="gatehouse"}"#).await;
    assert_eq!(up, Some(1.0), "up{{job=\"gatehouse\"}}");
    server
        .poll("job:gatehouse_http_requests:rate5m above 0", || async {
            let rate = api
                .sum(r#"job:gatehouse_http_requests:rate5m{job="gatehouse"}"#)
                .await?;
            (rate > 0.0).then_some(())
        })
        .await;

    // Every group of the shipped rules file is loaded.
    let groups = rule_group_names(&shipped.join("gatehouse-rules.yml"));
    assert!(groups.len() >= 4, "rule groups found: {groups:?}");
    let rules: Value = api.get("/api/v1/rules").await.unwrap();
    let loaded: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    for group in &groups {
        assert!(
            loaded.contains(&group.as_str()),
            "{group} not in {loaded:?}"
        );
    }

    // Every query of the shipped Grafana dashboard runs on this Prometheus.
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "dashboard queries: {queries:?}");
    let mut with_data = 0;
    for query in &queries {
        let query = query
            .replace("$__rate_interval", "1m")
            .replace("$job", "gatehouse")
            .replace("$instance", ".*");
        let body = api.query(&query).await.unwrap();
        assert_eq!(body["status"], "success", "{query}: {body}");
        with_data += usize::from(
            body["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
        );
    }
    assert!(with_data > 0, "no dashboard query returned data");
}

/// The shipped rules and dashboard name only metric families the gateway registers (a typo
/// there would make an alert or a panel silently empty).
#[test]
fn deploy_files_name_only_registered_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let registered =
        gatehouse_names(&std::fs::read_to_string(root.join("src/metrics.rs")).unwrap());
    assert!(registered.len() >= 12, "{registered:?}");
    for file in [
        "deploy/prometheus/gatehouse-rules.yml",
        "deploy/prometheus/gatehouse-rules.test.yml",
        "deploy/grafana/gatehouse-dashboard.json",
    ] {
        let used = gatehouse_names(&std::fs::read_to_string(root.join(file)).unwrap());
        assert!(!used.is_empty(), "{file} names no gatehouse_ metric");
        for name in used {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| registered.contains(*base))
                .unwrap_or(&name);
            assert!(
                registered.contains(family),
                "{file} uses {name}, which src/metrics.rs does not register"
            );
        }
    }
}

/// Every `gatehouse_…` metric name in `text`: whole identifiers, not parts of recording-rule
/// names such as `job:gatehouse_…:rate5m`.
fn gatehouse_names(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("gatehouse_") && !t.contains(':'))
        .map(str::to_string)
        .collect()
}

/// The `expr` of every panel target in the shipped Grafana dashboard.
fn dashboard_queries() -> Vec<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/gatehouse-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    let mut queries = Vec::new();
    while let Some(panel) = panels.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            panels.extend(nested);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.extend(target["expr"].as_str().map(str::to_string));
        }
    }
    queries
}

/// `prometheus` and `promtool`, or `None` (skip) when they are missing outside CI.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let found = (find_binary("prometheus"), find_binary("promtool"));
    if let (Some(prometheus), Some(promtool)) = found {
        return Some((prometheus, promtool));
    }
    let required = std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var("GATEHOUSE_REQUIRE_PROMETHEUS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "prometheus/promtool not found on PATH or in /usr/bin (CI or \
         GATEHOUSE_REQUIRE_PROMETHEUS=1 makes that a failure): apt-get install prometheus"
    );
    eprintln!("skipped: prometheus/promtool not installed (Debian: apt-get install prometheus)");
    None
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn run_promtool(promtool: &Path, dir: &Path, args: &[&str]) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `text` with its one occurrence of `from` replaced: the shipped file must keep that shape.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "deploy/prometheus/prometheus.yml should contain {from:?} exactly once"
    );
    text.replace(from, to)
}

/// The `- name:` entries of a rules file (the only list items with a name there are groups).
fn rule_group_names(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- name:"))
        .map(|n| n.trim().trim_matches('"').to_string())
        .collect()
}

/// A `prometheus` child process on a free loopback port, storing into `dir`; killed on drop.
struct PrometheusServer {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl PrometheusServer {
    fn start(binary: &Path, dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        Self { child, addr, log }
    }

    /// Polls `check` every 200 ms until it returns `Some`, failing after [`DEADLINE`] or as
    /// soon as Prometheus exits, with its log.
    async fn poll<T, F, Fut>(&mut self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "waited {DEADLINE:?} for {what}; prometheus log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus's HTTP API.
struct ApiClient {
    base: String,
    http: reqwest::Client,
}

impl ApiClient {
    async fn get(&self, path_and_query: &str) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        (body["status"] == "success").then_some(body)
    }

    /// The answer to an instant query, errors included (`status` says which).
    async fn query(&self, query: &str) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// The sum of an instant query's sample values, or `None` while it has no series.
    async fn sum(&self, query: &str) -> Option<f64> {
        let body = self.query(query).await?;
        let result = body["data"]["result"].as_array()?;
        if result.is_empty() {
            return None;
        }
        result
            .iter()
            .map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .sum()
    }
}
