//! Refresh-token rotation (RFC 6749 §6, RFC 9700 §4.14.2, SPEC §3.1): a refresh kills the
//! access token issued with the old refresh token; a rotated token presented again revokes
//! the grant, except the immediate predecessor within `oauth.refresh_grace`, which gets the
//! same answer (or `invalid_grant`) and never revokes; 50 concurrent refreshes rotate once;
//! scope may narrow but never widen.

use std::collections::HashSet;
use std::time::Duration;

use gatehouse::store::secret_hash;

use crate::helpers::harness::metric_value;
use crate::helpers::oauth_fixture::{Auth, Fx, OTHER, OTHER_SECRET, claims};

#[tokio::test]
async fn a_refresh_rotates_the_pair_and_kills_the_old_access_token() {
    let fx = Fx::start("").await;
    let first = fx.tokens("WRITE").await;
    let (old_access, old_refresh) = (first.field("access_token"), first.field("refresh_token"));
    assert_eq!(fx.proxied(&old_access).await, 200);
    let second = fx.refresh(&old_refresh, None).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.header("cache-control"), Some("no-store"));
    assert_eq!(second.json()["scope"], "WRITE");
    let (new_access, new_refresh) = (second.field("access_token"), second.field("refresh_token"));
    assert_ne!(new_refresh, old_refresh);
    assert_eq!(
        fx.proxied(&old_access).await,
        401,
        "the old access token stops at once"
    );
    assert_eq!(fx.proxied(&new_access).await, 200);
    assert_eq!(
        claims(&new_access)["gid"],
        claims(&old_access)["gid"],
        "same grant"
    );
    let m = fx.gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "gatehouse_tokens_issued_total{grant_type=\"refresh_token\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn reuse_after_rotation_revokes_the_grant() {
    let fx = Fx::start("").await;
    let first = fx.tokens("WRITE").await;
    let old = first.field("refresh_token");
    let second = fx.refresh(&old, None).await;
    assert_eq!(second.status, 200);
    fx.advance(Duration::from_secs(11)); // past oauth.refresh_grace (10 s)
    let reuse = fx.refresh(&old, None).await;
    assert_eq!(
        (reuse.status, reuse.error().as_str()),
        (400, "invalid_grant")
    );
    assert_eq!(
        fx.proxied(&second.field("access_token")).await,
        401,
        "grant revoked"
    );
    let next = fx.refresh(&second.field("refresh_token"), None).await;
    assert_eq!(
        next.error(),
        "invalid_grant",
        "the current refresh token died with the grant"
    );
}

#[tokio::test]
async fn a_repeat_within_the_grace_gets_the_same_answer_and_revokes_nothing() {
    let fx = Fx::start("").await;
    let first = fx.tokens("WRITE").await;
    let old = first.field("refresh_token");
    let second = fx.refresh(&old, None).await;
    fx.advance(Duration::from_secs(5));
    let again = fx.refresh(&old, None).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.text, second.text, "the same response again");
    assert_eq!(again.header("cache-control"), Some("no-store"));
    assert_eq!(
        fx.proxied(&second.field("access_token")).await,
        200,
        "grant alive"
    );
    let third = fx.refresh(&second.field("refresh_token"), None).await;
    assert_eq!(third.status, 200, "{}", third.text);
}

#[tokio::test]
async fn only_the_immediate_predecessor_has_a_grace() {
    let fx = Fx::start("").await;
    let gen1 = fx.tokens("WRITE").await.field("refresh_token");
    let gen2 = fx.refresh(&gen1, None).await;
    let gen3 = fx.refresh(&gen2.field("refresh_token"), None).await;
    assert_eq!(gen3.status, 200);
    // gen1 is two generations old: reuse, even within the grace period.
    let a = fx.refresh(&gen1, None).await;
    assert_eq!(a.error(), "invalid_grant");
    assert_eq!(
        fx.proxied(&gen3.field("access_token")).await,
        401,
        "grant revoked"
    );
}

#[tokio::test]
async fn a_repeat_from_a_replica_without_the_answer_is_refused_without_revoking() {
    let fx = Fx::start("").await;
    let first = fx.tokens("WRITE").await;
    let old = first.field("refresh_token");
    // Rotate behind this replica's back, as another replica sharing the store would.
    let g = fx.gateway();
    let now = g.clock.now();
    let rt = gatehouse::store::NewRefreshToken {
        hash: secret_hash("gh_rt_rotated-elsewhere"),
        expire_time: now + Duration::from_secs(3600),
        access_jti: None,
        access_expire_time: None,
    };
    let outcome = g
        .store
        .rotate_refresh_token(
            &secret_hash(&old),
            crate::helpers::oauth_fixture::CONF,
            &rt,
            now,
        )
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        gatehouse::store::RotateOutcome::Rotated { .. }
    ));
    let a = fx.refresh(&old, None).await;
    assert_eq!(a.error(), "invalid_grant");
    let next = fx.refresh("gh_rt_rotated-elsewhere", None).await;
    assert_eq!(next.status, 200, "the grant was not revoked: {}", next.text);
}

#[tokio::test]
async fn fifty_concurrent_refreshes_rotate_exactly_once() {
    let fx = Fx::start("").await;
    let first = fx.tokens("WRITE").await;
    let old = first.field("refresh_token");
    let answers = futures_util::future::join_all((0..50).map(|_| fx.refresh(&old, None))).await;
    let mut bodies = HashSet::new();
    for a in &answers {
        match a.status {
            200 => {
                bodies.insert(a.text.clone());
            }
            400 => assert_eq!(a.error(), "invalid_grant", "{}", a.text),
            other => panic!("unexpected {other}: {}", a.text),
        }
    }
    assert_eq!(
        bodies.len(),
        1,
        "every success is the one rotation's answer"
    );
    let body: serde_json::Value = serde_json::from_str(bodies.iter().next().unwrap()).unwrap();
    let rt = fx
        .gateway()
        .store
        .get_refresh_token(&secret_hash(&old))
        .await
        .unwrap()
        .unwrap();
    let winner = body["refresh_token"].as_str().unwrap();
    assert_eq!(
        rt.successor_hash,
        Some(secret_hash(winner)),
        "one successor"
    );
    let grant = fx
        .gateway()
        .store
        .get_grant(&rt.grant_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.revoked_at, None, "the grant survives the race");
    assert_eq!(
        fx.proxied(body["access_token"].as_str().unwrap()).await,
        200
    );
    let next = fx.refresh(winner, None).await;
    assert_eq!(next.status, 200, "{}", next.text);
}

#[tokio::test]
async fn scope_narrows_on_refresh_but_never_widens() {
    let fx = Fx::start("").await;
    let first = fx.tokens("WRITE").await;
    let rt = first.field("refresh_token");
    let wider = fx.refresh(&rt, Some("ADMIN")).await;
    assert_eq!(
        (wider.status, wider.error().as_str()),
        (400, "invalid_scope")
    );
    let unknown = fx.refresh(&rt, Some("NOPE")).await;
    assert_eq!(unknown.error(), "invalid_scope");
    let narrow = fx.refresh(&rt, Some("READ")).await;
    assert_eq!(
        narrow.status, 200,
        "the refused widening did not use the token: {}",
        narrow.text
    );
    assert_eq!(narrow.json()["scope"], "READ");
    assert_eq!(claims(&narrow.field("access_token"))["scope"], "READ");
    let r = fx
        .gw
        .client(true)
        .post(fx.gw.url("/rest/api/content"))
        .bearer_auth(narrow.field("access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a READ token cannot write");
    // Without `scope`, a refresh gets the originally granted scope back (RFC 6749 §6).
    let again = fx.refresh(&narrow.field("refresh_token"), None).await;
    assert_eq!(again.json()["scope"], "WRITE");
}

#[tokio::test]
async fn another_clients_refresh_token_is_refused_and_left_alone() {
    let fx = Fx::start("").await;
    let first = fx.tokens("WRITE").await;
    let rt = first.field("refresh_token");
    let a = fx
        .post(
            "/oauth2/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            Auth::Basic(OTHER, OTHER_SECRET),
        )
        .await;
    assert_eq!(a.error(), "invalid_grant");
    let a = fx.refresh(&rt, None).await;
    assert_eq!(a.status, 200, "still usable by its own client: {}", a.text);
    let a = fx.refresh("gh_rt_unknown", None).await;
    assert_eq!(a.error(), "invalid_grant");
    let a = fx
        .post(
            "/oauth2/token",
            &[("grant_type", "refresh_token")],
            Auth::Basic(
                crate::helpers::oauth_fixture::CONF,
                crate::helpers::oauth_fixture::CONF_SECRET,
            ),
        )
        .await;
    assert_eq!(a.error(), "invalid_request");
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    let fx = Fx::start("refresh_token_ttl = \"1h\"").await;
    let rt = fx.tokens("READ").await.field("refresh_token");
    fx.advance(Duration::from_secs(3601));
    let a = fx.refresh(&rt, None).await;
    assert_eq!(a.error(), "invalid_grant");
}

#[tokio::test]
async fn concurrent_refreshes_on_two_replicas_rotate_once_and_revoke_nothing() {
    let Some((one, two, _db)) = Fx::replicas("refresh on two replicas").await else {
        return;
    };
    let first = one.tokens("WRITE").await;
    let old = first.field("refresh_token");
    let on_one = (0..25).map(|_| one.refresh(&old, None));
    let on_two = (0..25).map(|_| two.refresh(&old, None));
    let (a, b) = futures_util::future::join(
        futures_util::future::join_all(on_one),
        futures_util::future::join_all(on_two),
    )
    .await;
    let mut bodies = HashSet::new();
    for answer in a.iter().chain(b.iter()) {
        match answer.status {
            200 => {
                bodies.insert(answer.text.clone());
            }
            _ => assert_eq!(answer.error(), "invalid_grant", "{}", answer.text),
        }
    }
    assert_eq!(bodies.len(), 1, "one rotation, whichever replica won");
    let body: serde_json::Value = serde_json::from_str(bodies.iter().next().unwrap()).unwrap();
    let winner = body["refresh_token"].as_str().unwrap();
    assert_eq!(
        one.proxied(body["access_token"].as_str().unwrap()).await,
        200
    );
    let next = two.refresh(winner, None).await;
    assert_eq!(next.status, 200, "the grant survived: {}", next.text);
}
