//! Store contract suite, part 2: create/read/update/delete of every entity, and the proof,
//! through the gateway's real paths, that no plaintext secret reaches the database.

use gatehouse::store::*;
use serde_json::{Value, json};

use crate::helpers::harness::TestGateway;
use crate::helpers::harness::process::binary;
use crate::helpers::login_support::{
    ALICE_PASSWORD, CALLBACK, browser, cookie_value, hidden, location, login_form, post_login,
    query, set_cookies, users,
};
use crate::helpers::support::{TestDb, contract_tests};
use crate::oauth::authorize::{VERIFIER, authorize_url};
use crate::store::lifecycle::{app, at, t0};

contract_tests!(
    apps_crud_and_keyset_pages,
    app_secret_rotation_with_and_without_grace,
    an_update_from_a_stale_copy_never_undoes_a_rotation,
    config_apps_upsert_and_never_take_over_api_apps,
    personal_tokens_crud,
    sessions_expire_and_end,
    consents_are_consumed_once,
    no_plaintext_secret_is_stored,
);

async fn apps_crud_and_keyset_pages(db: TestDb) {
    let store = db.open().await;
    let mut first = app("client-a", "secret-a");
    store.create_app(&first).await.unwrap();
    assert_eq!(store.get_app(&first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(
        store.get_app_by_client_id("client-a").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.get_app("missing").await.unwrap(), None);

    let mut dup = app("client-a", "other");
    let err = store.create_app(&dup).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict, "{err}");
    dup.client_id = "client-dup".to_owned();
    dup.id = first.id.clone();
    assert_eq!(
        store.create_app(&dup).await.unwrap_err().kind(),
        StoreErrorKind::Conflict
    );

    first.display_name = "Renamed".to_owned();
    first.scopes = vec!["READ".to_owned()];
    first.skip_consent = true;
    first.labels.insert("env".to_owned(), "prod".to_owned());
    first
        .allowed_callback_urls
        .push("http://127.0.0.1:8000/cb".to_owned());
    first.updated_by = "users/bob".to_owned();
    first.update_time = at(10);
    store.update_app(&first).await.unwrap();
    assert_eq!(store.get_app(&first.id).await.unwrap(), Some(first.clone()));

    let mut ghost = app("ghost", "g");
    ghost.id = "nosuchapp0".to_owned();
    assert_eq!(
        store.update_app(&ghost).await.unwrap_err().kind(),
        StoreErrorKind::NotFound
    );

    // Five more, two created in the same microsecond: pages follow (create_time, id).
    let mut ids = vec![first.id.clone()];
    for i in 0..5u64 {
        let mut a = app(&format!("client-{i}"), "s");
        a.create_time = at(100 + i.min(3));
        store.create_app(&a).await.unwrap();
        ids.push(a.id);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<AppCursor> = None;
    loop {
        let page = store.list_apps(cursor.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        cursor = Some(AppCursor::after(last));
        seen.extend(page.iter().map(|a| (a.create_time, a.id.clone())));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages come in (create_time, id) order");
    assert_eq!(seen.len(), 6);

    store.delete_app(&first.id).await.unwrap();
    assert_eq!(store.get_app(&first.id).await.unwrap(), None);
    assert_eq!(
        store.delete_app(&first.id).await.unwrap_err().kind(),
        StoreErrorKind::NotFound
    );
    store.close().await;
}

async fn app_secret_rotation_with_and_without_grace(db: TestDb) {
    let store = db.open().await;
    let a = app("rotating", "secret-1");
    store.create_app(&a).await.unwrap();

    let grace_end = at(3_600);
    let rotated = store
        .rotate_app_secret(
            &a.id,
            secret_hash("secret-2"),
            Some(grace_end),
            "users/bob",
            at(5),
        )
        .await
        .unwrap();
    assert_eq!(rotated.secret_hash, Some(secret_hash("secret-2")));
    assert_eq!(rotated.previous_secret_hash, Some(secret_hash("secret-1")));
    assert_eq!(rotated.previous_secret_expires_at, Some(grace_end));
    assert_eq!(rotated.updated_by, "users/bob");
    assert!(rotated.secret_matches(&secret_hash("secret-1"), at(10)));
    assert!(!rotated.secret_matches(&secret_hash("secret-1"), at(3_600)));
    assert!(rotated.secret_matches(&secret_hash("secret-2"), at(99_999)));

    let rotated = store
        .rotate_app_secret(&a.id, secret_hash("secret-3"), None, "users/bob", at(6))
        .await
        .unwrap();
    assert_eq!(rotated.previous_secret_hash, None);
    assert_eq!(rotated.previous_secret_expires_at, None);
    assert!(!rotated.secret_matches(&secret_hash("secret-2"), at(7)));
    assert_eq!(store.get_app(&a.id).await.unwrap(), Some(rotated));

    let err = store
        .rotate_app_secret("nosuchapp0", secret_hash("x"), None, "u", at(7))
        .await;
    assert_eq!(err.unwrap_err().kind(), StoreErrorKind::NotFound);
    store.close().await;
}

async fn an_update_from_a_stale_copy_never_undoes_a_rotation(db: TestDb) {
    let store = db.open().await;
    let a = app("patched-while-rotated", "leaked-secret");
    store.create_app(&a).await.unwrap();
    // A PATCH reads the app, a rotation lands, then the PATCH writes its copy back.
    let mut stale = store.get_app(&a.id).await.unwrap().unwrap();
    let rotated = store
        .rotate_app_secret(&a.id, secret_hash("new-secret"), None, "users/bob", at(5))
        .await
        .unwrap();
    stale.display_name = "Renamed".to_owned();
    stale.client_type = ClientType::Public;
    stale.update_time = at(6);
    store.update_app(&stale).await.unwrap();
    let now = store.get_app(&a.id).await.unwrap().unwrap();
    assert_eq!(now.display_name, "Renamed");
    assert_eq!(now.secret_hash, rotated.secret_hash, "the rotation stands");
    assert!(!now.secret_matches(&secret_hash("leaked-secret"), at(7)));
    assert!(now.secret_matches(&secret_hash("new-secret"), at(7)));
    assert_eq!(
        now.client_type,
        ClientType::Confidential,
        "the client type never changes"
    );
    store.close().await;
}

async fn config_apps_upsert_and_never_take_over_api_apps(db: TestDb) {
    let store = db.open().await;
    let mut cfg = app("reporting", "cfg-secret-1");
    cfg.managed_by = ManagedBy::Config;
    let stored = store.upsert_config_app(&cfg).await.unwrap();
    assert_eq!(stored, cfg);

    // Next start: same client id, new definition and a new random id that must not stick.
    let mut next = app("reporting", "cfg-secret-2");
    next.display_name = "Reporting v2".to_owned();
    next.update_time = at(60);
    next.create_time = at(60);
    let stored = store.upsert_config_app(&next).await.unwrap();
    assert_eq!(stored.id, cfg.id, "an existing config app keeps its id");
    assert_eq!(stored.create_time, cfg.create_time);
    assert_eq!(stored.display_name, "Reporting v2");
    assert_eq!(stored.secret_hash, Some(secret_hash("cfg-secret-2")));
    assert_eq!(stored.managed_by, ManagedBy::Config);

    let api = app("api-owned", "s");
    store.create_app(&api).await.unwrap();
    let err = store
        .upsert_config_app(&app("api-owned", "evil"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict, "{err}");
    assert_eq!(store.get_app(&api.id).await.unwrap(), Some(api));
    store.close().await;
}

async fn personal_tokens_crud(db: TestDb) {
    let store = db.open().await;
    let mut events = store.subscribe();
    let mk = |id: &str, user: &str, secs: u64| PersonalToken {
        id: id.to_owned(),
        user: user.to_owned(),
        display_name: format!("token {id}"),
        scope: "READ".to_owned(),
        token_hash: secret_hash(&format!("pat-secret-{id}")),
        create_time: at(secs),
        expire_time: at(secs + 86_400),
        last_used_time: None,
    };
    let (p1, p2, p3) = (
        mk("p1", "alice", 1),
        mk("p2", "alice", 2),
        mk("p3", "bob", 3),
    );
    for p in [&p2, &p1, &p3] {
        store.create_pat(p).await.unwrap();
    }
    assert_eq!(
        store.create_pat(&p1).await.unwrap_err().kind(),
        StoreErrorKind::Conflict
    );
    assert_eq!(
        store
            .get_pat_by_hash(&secret_hash("pat-secret-p1"))
            .await
            .unwrap(),
        Some(p1.clone())
    );
    assert_eq!(
        store.get_pat_by_hash(&secret_hash("wrong")).await.unwrap(),
        None
    );
    assert_eq!(
        store.list_pats("alice").await.unwrap(),
        vec![p1.clone(), p2.clone()]
    );

    store.touch_pat("p1", at(100)).await.unwrap();
    store.touch_pat("p1", at(110)).await.unwrap(); // within a minute: not written
    let got = store
        .get_pat_by_hash(&p1.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.last_used_time, Some(at(100)));
    store.touch_pat("p1", at(200)).await.unwrap();
    let got = store
        .get_pat_by_hash(&p1.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.last_used_time, Some(at(200)));

    let err = store.delete_pat("bob", "p1").await.unwrap_err();
    assert_eq!(
        err.kind(),
        StoreErrorKind::NotFound,
        "only the owner may delete"
    );
    store.delete_pat("alice", "p1").await.unwrap();
    assert_eq!(store.get_pat_by_hash(&p1.token_hash).await.unwrap(), None);
    assert_eq!(
        events.try_recv().unwrap(),
        StoreEvent::PatRevoked {
            id: "p1".to_owned(),
            token_hash: p1.token_hash
        }
    );
    assert_eq!(store.list_pats("alice").await.unwrap(), vec![p2]);
    store.close().await;
}

async fn sessions_expire_and_end(db: TestDb) {
    let store = db.open().await;
    let s = Session {
        id_hash: secret_hash("session-cookie-value"),
        user: "alice".to_owned(),
        create_time: t0(),
        expire_time: at(43_200),
    };
    store.create_session(&s).await.unwrap();
    assert_eq!(
        store.get_session(&s.id_hash, at(1)).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store.get_session(&s.id_hash, at(43_200)).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        store
            .get_session(&secret_hash("other"), at(1))
            .await
            .unwrap(),
        None
    );
    assert!(store.delete_session(&s.id_hash).await.unwrap());
    assert!(!store.delete_session(&s.id_hash).await.unwrap());
    assert_eq!(store.get_session(&s.id_hash, at(1)).await.unwrap(), None);
    store.close().await;
}

async fn consents_are_consumed_once(db: TestDb) {
    let store = db.open().await;
    store.create_app(&app("consenting", "s")).await.unwrap();
    let p = PendingConsent {
        id: new_id(),
        csrf_hash: secret_hash("csrf-token"),
        user: "alice".to_owned(),
        client_id: "consenting".to_owned(),
        redirect_uri: "https://client.example.com/callback".to_owned(),
        scope: "READ".to_owned(),
        state: Some("xyz".to_owned()),
        code_challenge: Some("challenge".to_owned()),
        code_challenge_method: Some("S256".to_owned()),
        create_time: t0(),
        expire_time: at(600),
    };
    store.create_consent(&p).await.unwrap();
    assert_eq!(
        store.get_consent(&p.id, at(1)).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(
        store.get_consent(&p.id, at(600)).await.unwrap(),
        None,
        "expired"
    );

    let wrong_csrf = store
        .take_consent(&p.id, &secret_hash("nope"), "alice", at(1))
        .await;
    assert_eq!(wrong_csrf.unwrap(), None);
    let wrong_user = store
        .take_consent(&p.id, &p.csrf_hash, "mallory", at(1))
        .await;
    assert_eq!(wrong_user.unwrap(), None);
    let late = store
        .take_consent(&p.id, &p.csrf_hash, "alice", at(601))
        .await;
    assert_eq!(late.unwrap(), None);
    let taken = store
        .take_consent(&p.id, &p.csrf_hash, "alice", at(2))
        .await
        .unwrap();
    assert_eq!(taken, Some(p.clone()));
    assert_eq!(
        store
            .take_consent(&p.id, &p.csrf_hash, "alice", at(3))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.get_consent(&p.id, at(3)).await.unwrap(), None);

    let mut orphan = p.clone();
    orphan.id = new_id();
    orphan.client_id = "no-such-client".to_owned();
    assert_eq!(
        store.create_consent(&orphan).await.unwrap_err().kind(),
        StoreErrorKind::Conflict
    );
    store.close().await;
}

/// Every secret the gateway hands out, made through the paths that make them in production —
/// `gatehouse token create`, the management API (create, both kinds of rotation, PATs), the
/// login form, the consent page, the code flow at `/oauth2/token` and a refresh — is nowhere
/// in the database afterwards (the SQLite file with its WAL, or a `pg_dump`), while the
/// hashes that stand for them are.
async fn no_plaintext_secret_is_stored(db: TestDb) {
    let url = if db.is_postgres() {
        db.url.clone()
    } else {
        format!("sqlite://{}", db.sqlite_path().display())
    };
    let gw = TestGateway::start("", &format!("[store]\nurl = \"{url}\"\n{}", users())).await;
    let mut secrets = Vec::new();

    let out = std::process::Command::new(binary())
        .args(["token", "create", "--config"])
        .arg(gw.dir.dir.path().join("gatehouse.toml"))
        .args(["--user", "root", "--scope", "SYSTEM_ADMIN"])
        .env_remove("GATEHOUSE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();
    secrets.push(admin.clone());

    let api = gw.client(true);
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = api.request(method, gw.url(&path)).bearer_auth(&admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            assert!((200..300).contains(&status), "{status} {body}");
            body
        }
    };
    let body = json!({
        "displayName": "Hashing",
        "allowedCallbackUrls": [CALLBACK],
        "scopes": ["READ", "WRITE"],
    });
    let created = call(reqwest::Method::POST, "/v1/oauthApps".into(), Some(body)).await;
    let name = created["name"].as_str().unwrap().to_owned();
    let client_id = created["clientId"].as_str().unwrap().to_owned();
    secrets.push(created["clientSecret"].as_str().unwrap().to_owned());
    for grace in [Some(json!({"gracePeriod": "1h"})), None] {
        let rotated = call(
            reqwest::Method::POST,
            format!("/v1/{name}:rotateSecret"),
            grace,
        )
        .await;
        secrets.push(rotated["clientSecret"].as_str().unwrap().to_owned());
    }
    let client_secret = secrets.last().unwrap().clone();
    let pat = call(
        reqwest::Method::POST,
        "/v1/personalTokens".into(),
        Some(json!({"displayName": "ci", "scope": "READ"})),
    )
    .await;
    secrets.push(pat["token"].as_str().unwrap().to_owned());

    let (browser, _) = browser(&gw);
    let login_csrf = login_form(&gw, &browser, "/").await;
    let r = post_login(&gw, &browser, &login_csrf, "alice", ALICE_PASSWORD, "/").await;
    assert_eq!(r.status(), 303);
    let session = cookie_value(&set_cookies(&r), "gatehouse_session").expect("a session");
    secrets.extend([login_csrf, session]);
    let challenge = gatehouse::oauth::pkce::s256_challenge(VERIFIER);
    let url = authorize_url(
        &gw,
        &client_id,
        &[
            ("response_type", "code"),
            ("redirect_uri", CALLBACK),
            ("scope", "WRITE"),
            ("state", "st"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let html = browser.get(url).send().await.unwrap().text().await.unwrap();
    let consent_csrf = hidden(&html, "csrf_token");
    let r = browser
        .post(gw.url("/oauth2/authorize"))
        .form(&[
            ("consent_id", hidden(&html, "consent_id").as_str()),
            ("csrf_token", consent_csrf.as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let code = query(&location(&r))["code"].clone();
    secrets.extend([consent_csrf, code.clone()]);

    let token = |form: Vec<(&'static str, String)>| {
        let req = api
            .post(gw.url("/oauth2/token"))
            .basic_auth(&client_id, Some(&client_secret))
            .form(&form);
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            let field = |k: &str| body[k].as_str().unwrap().to_owned();
            (field("access_token"), field("refresh_token"))
        }
    };
    let (access, first_refresh) = token(vec![
        ("grant_type", "authorization_code".into()),
        ("code", code),
        ("redirect_uri", CALLBACK.into()),
        ("code_verifier", VERIFIER.into()),
    ])
    .await;
    let (access2, second_refresh) = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", first_refresh.clone()),
    ])
    .await;
    secrets.extend([access, first_refresh, access2, second_refresh.clone()]);
    gw.shutdown().await;

    let dump = db.dump().await;
    let text = String::from_utf8_lossy(&dump);
    assert!(
        text.contains(&client_id),
        "the scan finds what is stored in plain (the client id)"
    );
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "plaintext {secret} found in the store"
        );
    }
    // What stands for them instead (hex in pg_dump, raw bytes in the SQLite file).
    for secret in [&admin, &client_secret, &second_refresh] {
        let h = secret_hash(secret);
        let found = if db.is_postgres() {
            text.contains(&h.to_hex())
        } else {
            dump.windows(32).any(|w| w == h.0)
        };
        assert!(found, "the hash of {secret} is stored");
    }
}
