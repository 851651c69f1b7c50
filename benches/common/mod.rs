//! Shared by the criterion benches: an in-process gateway on a SQLite file in a temp dir, with
//! user alice (max WRITE) and one confidential app, `bench`, registered in its store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gatehouse::App;
use gatehouse::config::Config;
use gatehouse::store::secret_hash;

/// The bench app's redirect URI.
pub const CALLBACK: &str = "https://bench.example/cb";

/// Starts the gateway in `dir` and registers the `bench` app (secret `bench-secret`).
pub async fn gateway_with_app(dir: &tempfile::TempDir) -> (App, gatehouse::store::App) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let key = gatehouse::auth::keys::generate_pem().unwrap();
    std::fs::write(dir.path().join("signing.pem"), key.expose()).unwrap();
    let toml = r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://localhost"
[server.tls]
cert = "cert.pem"
key = "key.pem"
[admin]
listen = "127.0.0.1:0"
[store]
url = "sqlite://bench.db"
[oauth]
signing_keys = ["signing.pem"]
[[users]]
name = "alice"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
max_scope = "WRITE"
"#;
    std::fs::write(dir.path().join("g.toml"), toml).unwrap();
    let app = App::build(Config::load(&dir.path().join("g.toml")).unwrap())
        .await
        .unwrap();
    let now = app.gateway().clock.now();
    let record = gatehouse::store::App {
        id: gatehouse::store::new_app_id(),
        client_id: "bench".into(),
        display_name: "Bench".into(),
        description: String::new(),
        logo_uri: String::new(),
        allowed_callback_urls: vec![CALLBACK.into()],
        allowed_logout_urls: vec![],
        allowed_web_origins: vec![],
        client_type: gatehouse::store::ClientType::Confidential,
        secret_hash: Some(secret_hash("bench-secret")),
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        scopes: vec!["READ".into(), "WRITE".into()],
        skip_consent: false,
        active: true,
        labels: Default::default(),
        created_by: "users/alice".into(),
        updated_by: "users/alice".into(),
        create_time: now,
        update_time: now,
        managed_by: gatehouse::store::ManagedBy::Api,
    };
    app.gateway().store.create_app(&record).await.unwrap();
    (app, record)
}
