//! The load client of `benches/token_load.sh` (RFC 6749 §4.1.3 and §6 against a running
//! gateway, SPEC §3.1): not part of gatehouse.
//!
//! `token_load seed STORE_URL BASE_DIR CODES CODES_FILE` creates the confidential app `bench`
//! in the store (migrating it first) and writes CODES unredeemed, PKCE-bound authorization
//! codes for user `alice` straight into it in a few large transactions (what the authorize
//! step would have stored), one code per line of CODES_FILE.
//!
//! `token_load run URL CA_PEM CODES_FILE CLIENTS WARMUP_S DURATION_S [PID]` then runs two
//! phases with CLIENTS HTTPS/1.1 clients, one kept-alive connection each: code exchanges until
//! WARMUP_S + DURATION_S have passed (or the codes run out), then refreshes of the refresh
//! tokens those exchanges returned (each client rotating its own chains, so no two requests
//! ever present one token) for as long. Each phase prints one line:
//! `phase=exchange ok=N errors=N rate=R/s p50_ms=… p99_ms=… cpu_us=…` over the measured part
//! (requests that finished after the warm-up); `cpu_us` is the CPU time (user + system) of
//! process PID per grant. `TOKEN_LOAD_HOOK` (see [`hook`]) runs a command at the window's ends.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gatehouse::oauth::pkce::s256_challenge;
use gatehouse::store::{App, ClientType, ManagedBy, Store, new_app_id, secret_hash};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const CLIENT_ID: &str = "bench";
pub const CLIENT_SECRET: &str = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEF";
const CALLBACK: &str = "https://bench.example/cb";
const VERIFIER: &str = "bench-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
const USAGE: &str = "usage: token_load seed STORE_URL BASE_DIR CODES CODES_FILE\n       \
     token_load run URL CA_PEM CODES_FILE CLIENTS WARMUP_S DURATION_S [PID]";

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["seed", url, base, codes, file] => rt.block_on(seed(url, base, codes.parse()?, file)),
        ["run", url, ca, file, clients, warmup, duration, rest @ ..] => {
            let pid = rest.first().map(|p| p.parse()).transpose()?;
            let run = Run {
                url: format!("{url}/oauth2/token"),
                ca: std::fs::read(ca)?,
                clients: clients.parse()?,
                warmup: Duration::from_secs_f64(warmup.parse()?),
                duration: Duration::from_secs_f64(duration.parse()?),
                pid,
            };
            let codes = std::fs::read_to_string(file)?;
            rt.block_on(run.run(codes.lines().map(str::to_owned).collect()))
        }
        _ => Err(USAGE.into()),
    }
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

async fn seed(url: &str, base: &str, count: usize, file: &str) -> Result<(), BoxError> {
    let store = Store::open(url, Path::new(base), 4).await?;
    let now = SystemTime::now();
    let app = App {
        id: new_app_id(),
        client_id: CLIENT_ID.into(),
        display_name: "Token benchmark".into(),
        description: String::new(),
        logo_uri: String::new(),
        allowed_callback_urls: vec![CALLBACK.into()],
        allowed_logout_urls: vec![],
        allowed_web_origins: vec![],
        client_type: ClientType::Confidential,
        secret_hash: Some(secret_hash(CLIENT_SECRET)),
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        scopes: vec!["READ".into(), "WRITE".into()],
        skip_consent: true,
        active: true,
        labels: Default::default(),
        created_by: "users/bench".into(),
        updated_by: "users/bench".into(),
        create_time: now,
        update_time: now,
        managed_by: ManagedBy::Api,
    };
    store.create_app(&app).await?;
    store.close().await;
    let codes: Vec<String> = (0..count)
        .map(|_| gatehouse::auth::secret::new_authorization_code().map(|c| c.expose().to_owned()))
        .collect::<Result<_, _>>()
        .map_err(|_| "random source")?;
    let challenge = s256_challenge(VERIFIER);
    let (create, expire) = (micros(now), micros(now + Duration::from_secs(3600)));
    // Plain INSERTs in large transactions: the store's own create_code commits (and, with a
    // durable store, syncs) once per code, far too slow for 10^5 codes.
    const CHUNK: usize = 500;
    let columns = "INSERT INTO auth_codes (hash, client_id, user_name, redirect_uri, scope, \
         code_challenge, code_challenge_method, create_time, expire_time) VALUES ";
    macro_rules! insert_all {
        ($conn:expr, $n:literal) => {{
            use sqlx::Connection as _;
            let mut tx = $conn.begin().await?;
            for chunk in codes.chunks(CHUNK) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|i| {
                        let p = |k: usize| format!("${}", i * $n + k);
                        format!(
                            "({}, '{CLIENT_ID}', 'alice', '{CALLBACK}', 'WRITE', '{challenge}', \
                             'S256', {create}, {expire})",
                            p(1)
                        )
                    })
                    .collect();
                let sql = format!("{columns}{}", rows.join(", "));
                let mut q = sqlx::query(&sql);
                for code in chunk {
                    q = q.bind(secret_hash(code).0.to_vec());
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }};
    }
    if url.starts_with("sqlite://") {
        use sqlx::Connection as _;
        let path = match url.strip_prefix("sqlite://") {
            Some(p) if p.starts_with('/') => p.to_owned(),
            Some(p) => format!("{base}/{p}"),
            None => unreachable!(),
        };
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}")).await?;
        insert_all!(conn, 1);
        conn.close().await?;
    } else {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(url).await?;
        insert_all!(conn, 1);
        conn.close().await?;
    }
    std::fs::write(file, codes.join("\n") + "\n")?;
    eprintln!("seeded app {CLIENT_ID} and {count} codes");
    Ok(())
}

struct Run {
    url: String,
    ca: Vec<u8>,
    clients: usize,
    warmup: Duration,
    duration: Duration,
    pid: Option<u32>,
}

/// What one client saw in a phase: latencies (µs) of the requests that finished after the
/// warm-up, and the refresh tokens it holds at the end.
#[derive(Default)]
struct Tally {
    ok: usize,
    errors: usize,
    latencies_us: Vec<u32>,
    refresh_tokens: VecDeque<String>,
    first_error: Option<String>,
}

/// Runs `$TOKEN_LOAD_HOOK EVENT PHASE` (if set) when a phase's measured window opens
/// (`start`) and closes (`stop`): `benches/token_instructions.sh` switches callgrind's counting
/// with it.
fn hook(event: &str, phase: &str) {
    if let Ok(cmd) = std::env::var("TOKEN_LOAD_HOOK") {
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("{cmd} {event} {phase}")])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("hook {cmd} {event} {phase} failed");
        }
    }
}

/// User + system CPU time of a process, from /proc/PID/stat (clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

impl Run {
    fn client(&self) -> Result<reqwest::Client, BoxError> {
        Ok(reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca)?)
            .http1_only()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()?)
    }

    async fn run(self, codes: Vec<String>) -> Result<(), BoxError> {
        let this = Arc::new(self);
        let codes = Arc::new(codes);
        let next = Arc::new(AtomicUsize::new(0));
        let clients: Vec<reqwest::Client> = (0..this.clients)
            .map(|_| this.client())
            .collect::<Result<_, _>>()?;
        // Phase 1: code exchanges.
        let tallies = this
            .phase(
                "exchange",
                &clients,
                |_i, client, deadline, measure_from| {
                    let (this, codes, next) = (this.clone(), codes.clone(), next.clone());
                    async move {
                        let mut tally = Tally::default();
                        while Instant::now() < deadline {
                            let Some(code) = codes.get(next.fetch_add(1, Ordering::Relaxed)) else {
                                break;
                            };
                            let body = format!(
                                "grant_type=authorization_code&code={code}&redirect_uri=\
                             https%3A%2F%2Fbench.example%2Fcb&code_verifier={VERIFIER}"
                            );
                            this.post(&client, body, measure_from, &mut tally).await;
                        }
                        tally
                    }
                },
            )
            .await?;
        // Phase 2: refreshes of the chains each client got in phase 1.
        let tokens: Vec<VecDeque<String>> = tallies.into_iter().map(|t| t.refresh_tokens).collect();
        let tokens = Arc::new(std::sync::Mutex::new(tokens));
        this.phase("refresh", &clients, |i, client, deadline, measure_from| {
            let (this, tokens) = (this.clone(), tokens.clone());
            async move {
                let mut tally = Tally {
                    refresh_tokens: tokens
                        .lock()
                        .map(|mut t| std::mem::take(&mut t[i]))
                        .unwrap_or_default(),
                    ..Tally::default()
                };
                while Instant::now() < deadline {
                    let Some(token) = tally.refresh_tokens.pop_front() else {
                        break;
                    };
                    let body = format!("grant_type=refresh_token&refresh_token={token}");
                    this.post(&client, body, measure_from, &mut tally).await;
                }
                tally
            }
        })
        .await?;
        Ok(())
    }

    /// One phase: `work` on every client at once until the deadline; prints its line.
    async fn phase<F, Fut>(
        &self,
        name: &str,
        clients: &[reqwest::Client],
        work: F,
    ) -> Result<Vec<Tally>, BoxError>
    where
        F: Fn(usize, reqwest::Client, Instant, Instant) -> Fut,
        Fut: std::future::Future<Output = Tally> + Send + 'static,
    {
        let start = Instant::now();
        let measure_from = start + self.warmup;
        let deadline = measure_from + self.duration;
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| tokio::spawn(work(i, c.clone(), deadline, measure_from)))
            .collect();
        tokio::time::sleep_until(measure_from.into()).await;
        hook("start", name);
        let cpu_before = self.pid.and_then(cpu_time);
        let mut tallies = Vec::with_capacity(handles.len());
        for h in handles {
            tallies.push(h.await?);
        }
        let cpu_after = self.pid.and_then(cpu_time);
        let measured = Instant::now().saturating_duration_since(measure_from);
        hook("stop", name);
        let ok: usize = tallies.iter().map(|t| t.ok).sum();
        let errors: usize = tallies.iter().map(|t| t.errors).sum();
        let mut latencies: Vec<u32> = tallies
            .iter()
            .flat_map(|t| t.latencies_us.iter().copied())
            .collect();
        latencies.sort_unstable();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .map_or(0.0, |us| f64::from(*us) / 1000.0)
        };
        let cpu_us = match (cpu_before, cpu_after) {
            (Some(b), Some(a)) if ok > 0 => {
                format!("{:.0}", (a - b).as_micros() as f64 / ok as f64)
            }
            _ => "-".into(),
        };
        println!(
            "phase={name} ok={ok} errors={errors} rate={:.0} p50_ms={:.2} p99_ms={:.2} cpu_us={cpu_us} seconds={:.2}",
            ok as f64 / measured.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            measured.as_secs_f64()
        );
        if let Some(e) = tallies.iter().find_map(|t| t.first_error.clone()) {
            eprintln!("{name}: first error: {e}");
        }
        Ok(tallies)
    }

    /// Posts one token request; keeps the refresh token of a success.
    async fn post(
        &self,
        client: &reqwest::Client,
        body: String,
        measure_from: Instant,
        tally: &mut Tally,
    ) {
        let started = Instant::now();
        let answer = client
            .post(&self.url)
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        let result = match answer {
            Ok(r) if r.status() == 200 => r
                .json::<serde_json::Value>()
                .await
                .map_err(|e| e.to_string()),
            Ok(r) => {
                let status = r.status();
                Err(format!("{status}: {}", r.text().await.unwrap_or_default()))
            }
            Err(e) => Err(format!("{e:?}")),
        };
        // Counted when it finishes in the measured window (which ends when the last request
        // does): what the gateway did inside the window, give or take the requests it had
        // half done when the window opened.
        let measured = Instant::now() >= measure_from;
        match result.map(|v| v["refresh_token"].as_str().map(str::to_owned)) {
            Ok(Some(token)) => {
                tally.refresh_tokens.push_back(token);
                if measured {
                    tally.ok += 1;
                    let us = started.elapsed().as_micros();
                    tally
                        .latencies_us
                        .push(u32::try_from(us).unwrap_or(u32::MAX));
                }
            }
            Ok(None) | Err(_) if !measured => {}
            Ok(None) => tally.errors += 1,
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
            }
        }
    }
}
