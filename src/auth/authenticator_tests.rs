//! The token cache with a real SQLite store: cached principals share their user, each entry
//! ends at its own time, and a deleted PAT leaves the cache at once.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::auth::foreign::Accept;
use crate::auth::principal::Id;
use crate::config::Config;
use crate::store::PersonalToken;

const CONFIG: &str = r#"
[server]
public_url = "https://gw.example.com"
[server.tls]
cert = "tls/cert.pem"
key = "tls/key.pem"
[oauth]
signing_keys = ["keys/k1.pem"]
[auth]
cache_ttl = "30m"
negative_cache_ttl = "5s"
leeway = "0s"
[[users]]
name = "alice"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$sEw2UuLoCLVi/Zf09uDRZw$ckYkfW0YdOdc6j/IXdHqtsLloLeZ6lrbi3WRdhR8++A"
max_scope = "WRITE"
groups = ["staff"]
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    directory: Directory,
    keys: SigningKeys,
    auth: Arc<Authenticator>,
    metrics: Metrics,
    now: SystemTime,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open("sqlite://gatehouse.db", dir.path(), 2)
            .await
            .unwrap();
        let config = Config::parse(CONFIG, Path::new("/etc/gatehouse/gatehouse.toml"), &|_| {
            None
        })
        .unwrap();
        let metrics = Metrics::new().unwrap();
        let auth = Arc::new(Authenticator::new(&config.auth, &metrics));
        auth.follow(&store, crate::clock::Clock::system());
        Self {
            _dir: dir,
            store,
            directory: Directory::from_config(&config).unwrap(),
            keys: SigningKeys::generate().unwrap(),
            auth,
            metrics,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    /// A PAT of alice's (READ), valid for `ttl` from the fixture's time: (token, id).
    async fn pat(&self, n: u32, ttl: Duration) -> (String, String) {
        let token = format!("{}fixture-token-{n}", crate::auth::secret::PAT_PREFIX);
        let id = format!("{n:032x}");
        let pat = PersonalToken {
            id: id.clone(),
            user: "alice".into(),
            display_name: format!("pat {n}"),
            scope: "READ".into(),
            token_hash: secret_hash(&token),
            create_time: self.now,
            expire_time: self.now + ttl,
            last_used_time: Some(self.now),
        };
        self.store.create_pat(&pat).await.unwrap();
        (token, id)
    }

    async fn check(&self, token: &str, at: SystemTime) -> Result<Arc<Principal>, AuthFailure> {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        self.auth
            .bearer(
                Some(&value),
                &self.directory,
                &self.keys,
                &self.store,
                at,
                Accept::Management,
            )
            .await
    }

    fn count(&self, result: &str) -> u64 {
        self.metrics
            .token_cache_requests
            .with_label_values(&[result])
            .get()
    }
}

#[tokio::test]
async fn the_tokens_of_one_user_share_one_identity_and_one_scope_value() {
    let f = Fixture::new().await;
    let (t1, id1) = f.pat(1, Duration::from_secs(3600)).await;
    let (t2, _) = f.pat(2, Duration::from_secs(3600)).await;
    let p1 = f.check(&t1, f.now).await.unwrap();
    let p2 = f.check(&t2, f.now).await.unwrap();
    assert!(!Arc::ptr_eq(&p1, &p2), "two tokens, two principals");
    assert!(
        Arc::ptr_eq(&p1.identity, &p2.identity),
        "one allocation for alice's name, header value and groups"
    );
    assert!(Arc::ptr_eq(&p1.scopes_value, &p2.scopes_value));
    assert_eq!(p1.user(), "alice");
    assert_eq!(p1.user_value(), "alice");
    assert_eq!(p1.groups().len(), 1);
    assert_eq!(&*p1.groups()[0], "staff");
    assert_eq!(*p1.scopes_value, "READ");
    assert_eq!(
        p1.credential,
        Credential::PersonalToken { id: Id::new(&id1) }
    );
    assert!(matches!(
        p1.credential,
        Credential::PersonalToken { id: Id::Hex(_) }
    ));
    let again = f.check(&t1, f.now).await.unwrap();
    assert!(
        Arc::ptr_eq(&p1, &again),
        "a hit answers the cached principal"
    );
    assert_eq!((f.count("miss"), f.count("hit")), (2, 1));
}

#[tokio::test]
async fn each_entry_ends_at_its_own_time() {
    let f = Fixture::new().await;
    let (short, _) = f.pat(1, Duration::from_secs(10)).await;
    let (long, _) = f.pat(2, Duration::from_secs(3600)).await;
    let bogus = format!("{}not-a-stored-token", crate::auth::secret::PAT_PREFIX);
    f.check(&short, f.now).await.unwrap();
    f.check(&long, f.now).await.unwrap();
    assert_eq!(
        f.check(&bogus, f.now).await.unwrap_err(),
        AuthFailure::Invalid("unknown")
    );
    assert_eq!(f.count("miss"), 3);

    // 4 s on: all three still answer from the cache.
    let soon = f.now + Duration::from_secs(4);
    f.check(&short, soon).await.unwrap();
    f.check(&long, soon).await.unwrap();
    assert!(f.check(&bogus, soon).await.is_err());
    assert_eq!((f.count("miss"), f.count("hit")), (3, 3));

    // 6 s on: the refusal (negative_cache_ttl 5 s) is checked again, the others are not.
    let later = f.now + Duration::from_secs(6);
    assert!(f.check(&bogus, later).await.is_err());
    f.check(&short, later).await.unwrap();
    f.check(&long, later).await.unwrap();
    assert_eq!((f.count("miss"), f.count("hit")), (4, 5));

    // 11 s on: the short PAT's entry ended with the PAT; the long one's still answers.
    let after = f.now + Duration::from_secs(11);
    assert_eq!(
        f.check(&short, after).await.unwrap_err(),
        AuthFailure::Expired
    );
    f.check(&long, after).await.unwrap();
    assert_eq!((f.count("miss"), f.count("hit")), (5, 6));

    // The scrape sweeps out what ended: past the refusal and the short PAT, one entry is left
    // (the expired answer just cached is a refusal too, for 5 s).
    f.auth.refresh_entry_gauge(f.now + Duration::from_secs(20));
    assert_eq!(f.metrics.token_cache_entries.get(), 1);
    // 31 minutes on: auth.cache_ttl ended the long PAT's entry too.
    f.auth
        .refresh_entry_gauge(f.now + Duration::from_secs(31 * 60));
    assert_eq!(f.metrics.token_cache_entries.get(), 0);
}

#[tokio::test]
async fn a_deleted_pat_leaves_the_cache_at_once() {
    let f = Fixture::new().await;
    let (kept, _) = f.pat(1, Duration::from_secs(3600)).await;
    let (doomed, doomed_id) = f.pat(2, Duration::from_secs(3600)).await;
    f.check(&kept, f.now).await.unwrap();
    f.check(&doomed, f.now).await.unwrap();
    f.auth.refresh_entry_gauge(f.now);
    assert_eq!(f.metrics.token_cache_entries.get(), 2);
    f.store.delete_pat("alice", &doomed_id).await.unwrap();
    f.auth.refresh_entry_gauge(f.now);
    assert_eq!(
        f.metrics.token_cache_entries.get(),
        1,
        "removed from the cache by the store's event, before any request"
    );
    assert_eq!(
        f.check(&doomed, f.now).await.unwrap_err(),
        AuthFailure::Invalid("unknown")
    );
    f.check(&kept, f.now).await.unwrap();
}

/// What one cached token costs is mostly these two (README, Numbers): an `Arc<Principal>` of
/// 88 bytes is a 112-byte block of glibc's malloc (104 with the counts, plus 8 of its own),
/// one of 96 would take 128.
#[cfg(target_pointer_width = "64")]
#[test]
fn a_cache_entry_and_its_principal_stay_small() {
    assert_eq!(std::mem::size_of::<Principal>(), 88);
    assert_eq!(std::mem::size_of::<Entry>(), 48);
}
