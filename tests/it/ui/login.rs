//! `/login` and `/logout` over real HTTPS (SPEC §3.2, SECURITY.md "Browser pages"): CSRF
//! tokens bound to the browser, a new session id at every login, `return_to` kept on this
//! origin, one answer for every failure, throttling that moves with the clock, logout that
//! ends the session, and `gatehouse hash-password`.

use std::time::Duration;

use gatehouse::store::secret_hash;

use crate::helpers::harness::{metric_value, tokens};
use crate::helpers::login_support::*;

#[tokio::test]
async fn the_login_page_is_a_hardened_form_with_a_csrf_token() {
    let gw = start("").await;
    let (client, _) = browser(&gw);
    let r = client
        .get(gw.url("/login?return_to=/wiki"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_page_headers(&r);
    let set = set_cookies(&r);
    let login_cookie = set
        .iter()
        .find(|c| c.starts_with("gatehouse_login="))
        .unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/login"] {
        assert!(login_cookie.contains(attr), "{login_cookie}");
    }
    let html = r.text().await.unwrap();
    assert!(html.contains("name=\"viewport\""));
    assert!(!html.contains("<script"), "works without JavaScript");
    assert_eq!(hidden(&html, "csrf_token").len(), 43);
    assert_eq!(hidden(&html, "return_to"), "/wiki");
}

#[tokio::test]
async fn login_starts_a_new_session_and_deletes_the_planted_one() {
    let gw = start("").await;
    let (client, jar) = browser(&gw);
    // A session id the attacker knows (their own) planted in the victim's browser.
    let planted = tokens::session(&gw.gateway, "root").await;
    let url = reqwest::Url::parse(&gw.url("/")).unwrap();
    jar.add_cookie_str(
        &format!("gatehouse_session={planted}; Path=/; Secure"),
        &url,
    );
    let r = login(&gw, &client, "alice", ALICE_PASSWORD, "/wiki/home?x=1").await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/wiki/home?x=1");
    let set = set_cookies(&r);
    let session = set
        .iter()
        .find(|c| c.starts_with("gatehouse_session="))
        .unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attr), "{session}");
    }
    let fresh = cookie_value(&set, "gatehouse_session").unwrap();
    assert_ne!(fresh, planted);
    assert!(fresh.len() >= 43, "256-bit session ids");
    let store = &gw.gateway.store;
    let now = gw.gateway.clock.now();
    assert!(
        store
            .get_session(&secret_hash(&planted), now)
            .await
            .unwrap()
            .is_none(),
        "old session deleted"
    );
    let s = store
        .get_session(&secret_hash(&fresh), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.user, "alice");
    assert_eq!(
        s.expire_time.duration_since(s.create_time).unwrap(),
        Duration::from_secs(12 * 3600)
    );
    // A second login from the same browser renews the id again.
    let r = login(&gw, &client, "alice", ALICE_PASSWORD, "/").await;
    let again = cookie_value(&set_cookies(&r), "gatehouse_session").unwrap();
    assert_ne!(again, fresh);
    assert!(
        store
            .get_session(&secret_hash(&fresh), now)
            .await
            .unwrap()
            .is_none()
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "gatehouse_login_attempts_total{result=\"success\"}"),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_wrong_user_and_a_wrong_password_get_the_same_answer_and_the_same_work() {
    let gw = start("").await;
    let verifier = &gw.gateway.login.verifier;
    let mut answers = Vec::new();
    for (user, password) in [
        ("alice", "wrong"),
        ("mallory", "wrong"),
        ("mallory", ALICE_PASSWORD),
    ] {
        let (client, _) = browser(&gw);
        let before = verifier.computed();
        let r = login(&gw, &client, user, password, "/").await;
        assert_eq!(
            verifier.computed(),
            before + 1,
            "{user}: one argon2 verification, known or not"
        );
        let status = r.status();
        let html = r.text().await.unwrap();
        let start = html.find("<div class=\"error\"").unwrap();
        let message = html[start..].split("</div>").next().unwrap().to_owned();
        answers.push((status, message));
        // Separate throttle keys are not needed: two failures from one address only back off.
        gw.gateway.clock.advance(Duration::from_secs(60));
    }
    assert_eq!(answers[0].0, 401);
    assert!(
        answers[0].1.contains("Invalid user name or password."),
        "{}",
        answers[0].1
    );
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "gatehouse_login_attempts_total{result=\"failure\"}"),
        Some(3.0)
    );
}

#[tokio::test]
async fn login_csrf_tokens_that_are_missing_or_from_another_browser_are_refused() {
    let gw = start("").await;
    let (a, _) = browser(&gw);
    let (b, _) = browser(&gw);
    let token_a = login_form(&gw, &a, "").await;
    let _ = login_form(&gw, &b, "").await;
    let computed = gw.gateway.login.verifier.computed();
    let r = post_login(&gw, &b, &token_a, "alice", ALICE_PASSWORD, "/").await;
    assert_eq!(r.status(), 400, "a token from another browser");
    assert!(
        set_cookies(&r)
            .iter()
            .all(|c| !c.starts_with("gatehouse_session="))
    );
    let r = post_login(&gw, &a, "", "alice", ALICE_PASSWORD, "/").await;
    assert_eq!(r.status(), 400, "no token");
    // No login cookie at all (a cross-site form post from a fresh browser).
    let (c, _) = browser(&gw);
    let r = post_login(&gw, &c, &token_a, "alice", ALICE_PASSWORD, "/").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        gw.gateway.login.verifier.computed(),
        computed,
        "no password work for a forged form"
    );
    let r = post_login(&gw, &a, &token_a, "alice", ALICE_PASSWORD, "/").await;
    assert_eq!(r.status(), 303, "the real form still works");
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_login_attempts_total{result=\"invalid_csrf\"}"
        ),
        Some(3.0)
    );
}

#[tokio::test]
async fn return_to_never_leaves_the_origin() {
    let gw = start("").await;
    let (client, _) = browser(&gw);
    for bad in [
        "//evil.com/x",
        "/\\evil.com",
        "https://evil.com/",
        "https:evil.com",
        "javascript:alert(1)",
        "/%2F%2Fevil.com",
        "/%5Cevil.com",
        "/%09/evil.com",
        "/%252F%252Fevil.com",
        "evil.com",
    ] {
        let r = login(&gw, &client, "alice", ALICE_PASSWORD, bad).await;
        assert_eq!(r.status(), 303, "{bad}");
        assert_eq!(location(&r), "/", "{bad}");
    }
    let r = login(
        &gw,
        &client,
        "alice",
        ALICE_PASSWORD,
        "/oauth2/authorize?scope=READ%20WRITE",
    )
    .await;
    assert_eq!(location(&r), "/oauth2/authorize?scope=READ%20WRITE");
}

#[tokio::test]
async fn failed_logins_back_off_then_ban_the_name_and_the_address() {
    let gw = start("[login]\nmax_failures = 3\nwindow = \"5m\"\nban = \"15m\"\n").await;
    let clock = &gw.gateway.clock;
    let verifier = &gw.gateway.login.verifier;
    let (client, _) = browser(&gw);
    assert_eq!(
        login(&gw, &client, "alice", "guess1", "/").await.status(),
        401
    );
    assert_eq!(
        login(&gw, &client, "alice", "guess2", "/").await.status(),
        401
    );
    // Second failure: a one-second back-off, even for the right password, without hashing.
    let before = verifier.computed();
    let r = login(&gw, &client, "alice", ALICE_PASSWORD, "/").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(verifier.computed(), before);
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        login(&gw, &client, "alice", "guess3", "/").await.status(),
        401
    );
    // Third failure reaches max_failures: banned for 15 minutes.
    let r = login(&gw, &client, "alice", ALICE_PASSWORD, "/").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "900");
    let html = r.text().await.unwrap();
    assert!(html.contains("Too many failed sign-in attempts"));
    clock.advance(Duration::from_secs(600));
    let r = login(&gw, &client, "root", ROOT_PASSWORD, "/").await;
    assert_eq!(r.status(), 429, "the address is banned for every name");
    clock.advance(Duration::from_secs(300));
    let r = login(&gw, &client, "alice", ALICE_PASSWORD, "/").await;
    assert_eq!(r.status(), 303, "the ban is over");
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "gatehouse_login_attempts_total{result=\"throttled\"}"),
        Some(3.0)
    );
}

#[tokio::test]
async fn parallel_wrong_passwords_get_no_more_tries_than_max_failures() {
    // Default [login]: max_failures = 5. Forty guesses for one user, all at once, each from
    // its own browser (its own form and CSRF token) and all within one window.
    let gw = start("").await;
    let verifier = &gw.gateway.login.verifier;
    let forms = futures_util::future::join_all((0..40).map(|_| async {
        let (client, _) = browser(&gw);
        let csrf = login_form(&gw, &client, "").await;
        (client, csrf)
    }))
    .await;
    let before = verifier.computed();
    let statuses =
        futures_util::future::join_all(forms.iter().enumerate().map(|(i, (client, csrf))| {
            let gw = &gw;
            async move {
                let guess = format!("guess-{i}");
                let r = post_login(gw, client, csrf, "alice", &guess, "/").await;
                r.status().as_u16()
            }
        }))
        .await;
    let failed = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(failed <= 5, "{failed} guesses checked: {statuses:?}");
    assert_eq!(failed + throttled, 40, "{statuses:?}");
    let verified = verifier.computed() - before;
    assert!(verified <= 5, "{verified} password verifications");
    let m = gw.metrics().await;
    let counted = metric_value(&m, "gatehouse_login_attempts_total{result=\"failure\"}");
    assert!(counted.unwrap_or(0.0) <= 5.0, "{counted:?}");
}

#[tokio::test]
async fn parallel_right_passwords_from_one_address_take_turns_and_all_sign_in() {
    // Colleagues behind one NAT (and one user in several tabs) sign in at the same moment:
    // attempts under way make the next ones wait their turn, never refuse them.
    let gw = start("").await;
    let gw = &gw;
    let forms = futures_util::future::join_all((0..12).map(|i| async move {
        let (client, _) = browser(gw);
        let csrf = login_form(gw, &client, "").await;
        let (user, password) = if i % 2 == 0 {
            ("alice", ALICE_PASSWORD)
        } else {
            ("root", ROOT_PASSWORD)
        };
        (client, csrf, user, password)
    }))
    .await;
    let statuses =
        futures_util::future::join_all(forms.iter().map(|(client, csrf, user, password)| async {
            let r = post_login(gw, client, csrf, user, password, "/").await;
            r.status().as_u16()
        }))
        .await;
    assert!(statuses.iter().all(|s| *s == 303), "{statuses:?}");
}

#[tokio::test]
async fn logout_needs_its_csrf_token_and_ends_the_session() {
    let gw = start("").await;
    let (client, _) = browser(&gw);
    let r = login(&gw, &client, "alice", ALICE_PASSWORD, "/").await;
    let cookie = cookie_value(&set_cookies(&r), "gatehouse_session").unwrap();
    let r = client.get(gw.url("/logout")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_page_headers(&r);
    let html = r.text().await.unwrap();
    assert!(html.contains("alice"));
    let token = hidden(&html, "csrf_token");
    // Another session's logout token, and no token: refused, the session lives on.
    let (other, _) = browser(&gw);
    login(&gw, &other, "alice", ALICE_PASSWORD, "/").await;
    let other_html = other
        .get(gw.url("/logout"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let other_token = hidden(&other_html, "csrf_token");
    assert_ne!(other_token, token);
    for bad in [other_token.as_str(), ""] {
        let r = client
            .post(gw.url("/logout"))
            .form(&[("csrf_token", bad)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let store = &gw.gateway.store;
    let now = gw.gateway.clock.now();
    assert!(
        store
            .get_session(&secret_hash(&cookie), now)
            .await
            .unwrap()
            .is_some()
    );
    let r = client
        .post(gw.url("/logout"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/login");
    let cleared = set_cookies(&r);
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("gatehouse_session=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert!(
        store
            .get_session(&secret_hash(&cookie), now)
            .await
            .unwrap()
            .is_none()
    );
    // The old cookie value, replayed by hand, is no session.
    let r = gw
        .client(true)
        .get(gw.url("/logout"))
        .header("cookie", format!("gatehouse_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/login");
}

#[test]
fn hash_password_reads_one_line_and_prints_an_argon2id_hash() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let run = |input: &[u8]| {
        let mut child = Command::new(crate::helpers::harness::process::binary())
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(b"s3cret pass\nignored second line\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let hash = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1);
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    use gatehouse::auth::password::verify_password_blocking as verify;
    assert!(verify("s3cret pass", hash));
    assert!(
        !verify("s3cret pass\n", hash),
        "the newline is not part of the password"
    );
    let out = run(b"\n");
    assert_eq!(out.status.code(), Some(2), "an empty password is bad usage");
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn a_store_outage_answers_503_and_never_signs_in_or_redirects() {
    let gw = start("").await;
    create_app(&gw, "webapp", |_| {}).await;
    let cookie = tokens::session(&gw.gateway, "alice").await;
    let (client, _) = browser(&gw);
    let csrf = login_form(&gw, &client, "").await;
    gw.gateway.store.close().await;
    let r = post_login(&gw, &client, &csrf, "alice", ALICE_PASSWORD, "/").await;
    assert_eq!(r.status(), 503);
    assert!(
        set_cookies(&r)
            .iter()
            .all(|c| !c.starts_with("gatehouse_session="))
    );
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let html = r.text().await.unwrap();
    assert!(html.contains(&request_id), "the page names the request id");
    assert!(
        !html.to_lowercase().contains("sqlite"),
        "no internal detail"
    );
    let params = crate::oauth::authorize::with("x", None);
    let r = crate::oauth::authorize::get_as(&gw, &cookie, "webapp", &params).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("location").is_none());
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "gatehouse_login_attempts_total{result=\"unavailable\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn throttling_counts_the_user_name_and_the_client_address_separately() {
    // Behind a trusted proxy, X-Forwarded-For tells the client addresses apart.
    let gw = crate::helpers::harness::TestGateway::start(
        "trusted_proxies = [\"127.0.0.1/32\"]",
        &format!(
            "[login]\nmax_failures = 2\nwindow = \"5m\"\nban = \"15m\"\n{}",
            users()
        ),
    )
    .await;
    let attempt = |from: &'static str, user: &'static str, password: &'static str| {
        let gw = &gw;
        async move {
            let (client, _) = browser(gw);
            let csrf = login_form(gw, &client, "").await;
            client
                .post(gw.url("/login"))
                .header("x-forwarded-for", from)
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("username", user),
                    ("password", password),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(attempt("10.0.0.1", "alice", "x").await, 401);
    assert_eq!(attempt("10.0.0.2", "alice", "y").await, 401);
    // alice is banned wherever she comes from; the addresses only had one failure each.
    assert_eq!(attempt("10.0.0.3", "alice", ALICE_PASSWORD).await, 429);
    assert_eq!(attempt("10.0.0.1", "root", ROOT_PASSWORD).await, 303);
    // One address guessing many names is banned for every name.
    assert_eq!(attempt("10.0.0.9", "carol", "x").await, 401);
    assert_eq!(attempt("10.0.0.9", "dave", "x").await, 401);
    assert_eq!(attempt("10.0.0.9", "root", ROOT_PASSWORD).await, 429);
    assert_eq!(attempt("10.0.0.8", "root", ROOT_PASSWORD).await, 303);
}

#[tokio::test]
async fn a_login_session_opens_session_routes_until_logout() {
    let up = crate::helpers::harness::upstream::Upstream::start().await;
    let route = format!(
        "[[routes]]\npath = \"/wiki\"\nupstream = \"http://{}\"\nauth = \"session\"\nscope = \"READ\"\n",
        up.addr
    );
    let gw =
        crate::helpers::harness::TestGateway::start("", &format!("{}\n{route}", users())).await;
    let (client, _) = browser(&gw);
    let page = |client: &reqwest::Client| {
        client
            .get(gw.url("/wiki/home"))
            .header("accept", "text/html")
            .send()
    };
    let r = page(&client).await.unwrap();
    assert_eq!(r.status(), 303);
    let to_login = location(&r);
    let return_to = query(&gw.url(&to_login))["return_to"].clone();
    assert_eq!(return_to, "/wiki/home");
    let r = login(&gw, &client, "alice", ALICE_PASSWORD, &return_to).await;
    assert_eq!(location(&r), "/wiki/home");
    let r = page(&client).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().headers["x-auth-user"], "alice");
    assert_eq!(up.last().headers["x-auth-scopes"], "READ WRITE");
    let html = client
        .get(gw.url("/logout"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = hidden(&html, "csrf_token");
    let r = client
        .post(gw.url("/logout"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = page(&client).await.unwrap();
    assert_eq!(r.status(), 303, "signed out: back to the login page");
}
