//! Crash safety of the token endpoint (SPEC §3.1, §6): the real binary is killed with SIGKILL
//! in the middle of a load of code exchanges and refreshes, restarted on the same store, and
//! then no code is redeemable twice, no grant has two live refresh tokens, and every token a
//! client received before the kill still works (the latest access token of each grant is
//! active at introspection, the latest refresh token refreshes). On SQLite and PostgreSQL.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gatehouse::store::{Store, secret_hash};
use serde_json::Value;
use sqlx::Connection as _;

use crate::helpers::harness::process::GatewayProcess;
use crate::helpers::harness::{ConfigDir, USERS};
use crate::helpers::oauth_fixture::{CALLBACK, CONF, CONF_SECRET, VERIFIER, app, form_body};
use crate::helpers::support::TestDb;

/// Codes seeded (more than the clients get through before the kill).
const CODES: usize = 3_000;
/// Concurrent clients, each redeeming a code and then refreshing its grant a few times.
const CLIENTS: usize = 24;
const REFRESHES_PER_GRANT: usize = 3;
/// The kill comes once the clients have received this many grants and refreshes (whatever
/// the speed of the build and the machine), with requests still on the wire.
const GRANTS_BEFORE_KILL: usize = 40;
const REFRESHES_BEFORE_KILL: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_survives_a_kill_mid_load() {
    killed_mid_load(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_survives_a_kill_mid_load() {
    if let Some(db) = TestDb::postgres("postgres_survives_a_kill_mid_load").await {
        killed_mid_load(Some(db)).await;
    }
}

/// What a client holds for one grant: its latest pair, and whether a refresh of it was on
/// the wire when the gateway died (then the store may or may not have rotated it).
#[derive(Clone, Debug)]
struct Held {
    access: String,
    refresh: String,
    refresh_in_flight: bool,
}

#[derive(Default)]
struct Seen {
    grants: Vec<Held>,
    /// Codes answered with tokens.
    redeemed: Vec<String>,
    /// Codes whose exchange got no answer (sent as the gateway died).
    unanswered: Vec<String>,
    refreshes: usize,
}

async fn killed_mid_load(pg: Option<TestDb>) {
    let dir = ConfigDir::new();
    let store_section = match &pg {
        Some(db) => format!("[store]\nurl = \"{}\"\n", db.url),
        None => String::new(),
    };
    let config = dir.write("", &format!("{store_section}\n{USERS}"));
    let url = pg
        .as_ref()
        .map_or("sqlite://gatehouse.db".to_owned(), |db| db.url.clone());
    let codes = seed(&url, dir.dir.path()).await;

    let mut gateway = GatewayProcess::start(&config);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let dead = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let codes = Arc::new(codes);
    let client = dir.pki.client(gateway.public, true);
    let token_url = format!("https://localhost:{}/oauth2/token", gateway.public.port());
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (seen, dead, next, codes) =
                (seen.clone(), dead.clone(), next.clone(), codes.clone());
            let (client, token_url) = (client.clone(), token_url.clone());
            tokio::spawn(async move {
                while !dead.load(Ordering::Relaxed) {
                    let Some(code) = codes.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    let Some(pair) = exchange(&client, &token_url, code).await else {
                        seen.lock().unwrap().unanswered.push(code.clone());
                        return;
                    };
                    let index = {
                        let mut s = seen.lock().unwrap();
                        s.redeemed.push(code.clone());
                        s.grants.push(Held {
                            access: pair.0,
                            refresh: pair.1,
                            refresh_in_flight: false,
                        });
                        s.grants.len() - 1
                    };
                    for _ in 0..REFRESHES_PER_GRANT {
                        let current = {
                            let mut s = seen.lock().unwrap();
                            s.grants[index].refresh_in_flight = true;
                            s.grants[index].refresh.clone()
                        };
                        let Some((access, refresh)) = refresh(&client, &token_url, &current).await
                        else {
                            return;
                        };
                        let mut s = seen.lock().unwrap();
                        s.grants[index] = Held {
                            access,
                            refresh,
                            refresh_in_flight: false,
                        };
                        s.refreshes += 1;
                    }
                }
            })
        })
        .collect();
    crate::helpers::harness::poll_until(Duration::from_secs(60), || {
        let s = seen.lock().unwrap();
        let enough = s.grants.len() >= GRANTS_BEFORE_KILL && s.refreshes >= REFRESHES_BEFORE_KILL;
        std::future::ready(enough)
    })
    .await;
    dead.store(true, Ordering::Relaxed);
    gateway.child.kill().unwrap(); // SIGKILL
    gateway.child.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(seen.grants.len() >= GRANTS_BEFORE_KILL && seen.refreshes >= REFRESHES_BEFORE_KILL);

    let gateway = GatewayProcess::start(&config);
    let client = dir.pki.client(gateway.public, true);
    let base = format!("https://localhost:{}", gateway.public.port());
    let token_url = format!("{base}/oauth2/token");
    // Every token received before the kill still works.
    let mut in_flight = 0;
    for (i, held) in seen.grants.iter().enumerate() {
        if held.refresh_in_flight {
            // Its rotation may have committed unanswered: then the token is the immediate
            // predecessor of a live one, within the grace (invalid_grant, never a revocation).
            in_flight += 1;
            let (status, body) = post(&client, &token_url, &refresh_form(&held.refresh)).await;
            assert!(
                status == 200 || body["error"] == "invalid_grant",
                "grant {i}: {status} {body}"
            );
            continue;
        }
        let (status, body) = post(
            &client,
            &format!("{base}/oauth2/introspect"),
            &form_body(&[("token", &held.access)]),
        )
        .await;
        assert_eq!(status, 200, "introspection of grant {i}: {body}");
        assert_eq!(
            body["active"], true,
            "grant {i}'s latest access token: {body}"
        );
        let (status, body) = post(&client, &token_url, &refresh_form(&held.refresh)).await;
        assert_eq!(
            status, 200,
            "grant {i}'s latest refresh token refreshes: {body}"
        );
    }
    // No grant has two live refresh tokens, and each grant comes from one used code.
    let (double_live, grants, used_codes) = count_rows(&url, dir.dir.path()).await;
    assert_eq!(double_live, 0, "grants with two live refresh tokens");
    assert_eq!(grants, used_codes, "one grant per used code");
    // No code is redeemable twice: not the answered ones, and an unanswered one at most once.
    for code in &seen.redeemed {
        let (status, body) = post(&client, &token_url, &exchange_form(code)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
    for code in &seen.unanswered {
        let (first, _) = post(&client, &token_url, &exchange_form(code)).await;
        assert!(first == 200 || first == 400, "{first}");
        let (again, body) = post(&client, &token_url, &exchange_form(code)).await;
        assert_eq!(
            (again, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
    eprintln!(
        "{}: killed after {} grants, {} refreshes ({} refreshes and {} exchanges unanswered); all checks passed",
        if pg.is_some() { "postgres" } else { "sqlite" },
        seen.grants.len(),
        seen.refreshes,
        in_flight,
        seen.unanswered.len()
    );
}

/// The fixture's confidential app and `CODES` PKCE-bound codes for alice, straight into the
/// database in one transaction (what the authorize step would have stored, one durable commit
/// at a time).
async fn seed(url: &str, base: &std::path::Path) -> Vec<String> {
    let store = Store::open(url, base, 4).await.unwrap();
    store
        .create_app(&app(CONF, Some(CONF_SECRET)))
        .await
        .unwrap();
    store.close().await;
    let now = micros(SystemTime::now());
    let expire = now + 600_000_000;
    let challenge = gatehouse::oauth::pkce::s256_challenge(VERIFIER);
    let codes: Vec<String> = (0..CODES)
        .map(|_| {
            gatehouse::auth::secret::new_authorization_code()
                .unwrap()
                .expose()
                .to_owned()
        })
        .collect();
    let sql = format!(
        "INSERT INTO auth_codes (hash, client_id, user_name, redirect_uri, scope, \
         code_challenge, code_challenge_method, create_time, expire_time) \
         VALUES ($1, '{CONF}', 'alice', '{CALLBACK}', 'WRITE', '{challenge}', 'S256', {now}, {expire})"
    );
    macro_rules! insert {
        ($c:expr) => {{
            let mut c = $c;
            let mut tx = c.begin().await.unwrap();
            for code in &codes {
                sqlx::query(&sql)
                    .bind(secret_hash(code).0.to_vec())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            c.close().await.unwrap();
        }};
    }
    match url.strip_prefix("sqlite://") {
        Some(rel) => insert!(sqlite(&base.join(rel)).await),
        None => insert!(sqlx::PgConnection::connect(url).await.unwrap()),
    }
    codes
}

fn micros(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros()).unwrap()
}

async fn sqlite(path: &std::path::Path) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

/// (grants with more than one live refresh token, grants, used codes), read straight from
/// the database.
async fn count_rows(url: &str, base: &std::path::Path) -> (i64, i64, i64) {
    const DOUBLE_LIVE: &str = "SELECT COUNT(*) FROM (SELECT grant_id FROM refresh_tokens \
        WHERE rotated_at IS NULL AND revoked_at IS NULL GROUP BY grant_id HAVING COUNT(*) > 1) d";
    const GRANTS: &str = "SELECT COUNT(*) FROM grants";
    const USED: &str = "SELECT COUNT(*) FROM auth_codes WHERE used_at IS NOT NULL";
    macro_rules! counts {
        ($c:expr) => {{
            let mut c = $c;
            let mut out = [0i64; 3];
            for (slot, sql) in out.iter_mut().zip([DOUBLE_LIVE, GRANTS, USED]) {
                *slot = sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap();
            }
            c.close().await.unwrap();
            (out[0], out[1], out[2])
        }};
    }
    match url.strip_prefix("sqlite://") {
        Some(rel) => counts!(sqlite(&base.join(rel)).await),
        None => counts!(sqlx::PgConnection::connect(url).await.unwrap()),
    }
}

fn exchange_form(code: &str) -> String {
    form_body(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ])
}

fn refresh_form(token: &str) -> String {
    form_body(&[("grant_type", "refresh_token"), ("refresh_token", token)])
}

/// POSTs `form` as the confidential client; (status, JSON body). Panics if the gateway does
/// not answer.
async fn post(client: &reqwest::Client, url: &str, form: &str) -> (u16, Value) {
    try_post(client, url, form)
        .await
        .unwrap_or_else(|e| panic!("no answer from the restarted gateway: {e}"))
}

async fn try_post(
    client: &reqwest::Client,
    url: &str,
    form: &str,
) -> Result<(u16, Value), reqwest::Error> {
    let r = client
        .post(url)
        .basic_auth(CONF, Some(CONF_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await?;
    let status = r.status().as_u16();
    let body = r.json::<Value>().await?;
    Ok((status, body))
}

/// (access token, refresh token) of a successful exchange; `None` when the gateway did not
/// answer (it was killed). Any other answer fails the test.
async fn exchange(client: &reqwest::Client, url: &str, code: &str) -> Option<(String, String)> {
    pair(try_post(client, url, &exchange_form(code)).await)
}

async fn refresh(client: &reqwest::Client, url: &str, token: &str) -> Option<(String, String)> {
    pair(try_post(client, url, &refresh_form(token)).await)
}

fn pair(answer: Result<(u16, Value), reqwest::Error>) -> Option<(String, String)> {
    let (status, body) = answer.ok()?;
    assert_eq!(status, 200, "a grant before the kill failed: {body}");
    let field = |n: &str| body[n].as_str().map(str::to_owned);
    Some((field("access_token")?, field("refresh_token")?))
}
