//! Token validation across replicas sharing PostgreSQL (SPEC §3.4, §6): a revocation at one
//! replica's endpoint reaches the other's cache, and a replica that stops hearing the others
//! fails closed once `auth.revocation_propagation` has passed, until it listens again.

use std::time::Duration;

use gatehouse::store::StoreEvent;

use crate::helpers::harness::tokens;
use crate::helpers::harness::upstream::Upstream;
use crate::helpers::harness::{ConfigDir, TestGateway, next_event_where};
use crate::proxy::auth::{challenge, routes};

const HOUR: Duration = Duration::from_secs(3600);
/// The secret of the apps `tokens::access_token` creates.
const CLIENT_SECRET: &str = "a-client-secret-of-enough-length";
/// A generous bound on a store event's arrival: busy machines are slow, and waiting on the
/// event itself costs nothing when it comes early.
const EVENT_LIMIT: Duration = Duration::from_secs(30);

/// Two replicas sharing PostgreSQL: a token revoked at replica one's `/oauth2/revoke` (RFC
/// 7009) is refused by replica two, which had it cached, from the moment it hears of it.
#[tokio::test]
async fn a_token_revoked_at_one_replicas_endpoint_is_refused_by_the_other() {
    let Some(db) = crate::helpers::support::TestDb::postgres("auth replicas").await else {
        return;
    };
    let up = Upstream::start().await;
    let store = format!("[store]\nurl = \"{}\"\n", db.url);
    let first_dir = ConfigDir::new();
    let second_dir = ConfigDir::sharing_keys_with(&first_dir);
    let config = format!("{store}{}", routes(&up, ""));
    let one = TestGateway::start_in(first_dir, "", &config).await;
    let two = TestGateway::start_in(second_dir, "", &config).await;
    let t = tokens::access_token(&one.gateway, "app1", "alice", "READ", HOUR).await;
    let (client_one, client_two) = (one.client(true), two.client(true));
    let status = |gw: &TestGateway, client: &reqwest::Client| {
        let req = client.get(gw.url("/rest/api/x")).bearer_auth(&t.token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(&one, &client_one).await, 200);
    assert_eq!(
        status(&two, &client_two).await,
        200,
        "cached on the second replica too"
    );

    let mut heard = two.gateway.store.subscribe();
    let r = client_one
        .post(one.url("/oauth2/revoke"))
        .basic_auth("app1", Some(CLIENT_SECRET))
        .form(&[("token", t.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        status(&one, &client_one).await,
        401,
        "at once where it was revoked"
    );
    next_event_where(&mut heard, EVENT_LIMIT, |e| {
        *e == StoreEvent::TokenRevoked { jti: t.jti.clone() }
    })
    .await;
    let r = client_two
        .get(two.url("/rest/api/x"))
        .bearer_auth(&t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the next request on replica two");
    assert!(challenge(&r).contains("invalid_token"), "{}", challenge(&r));
}

/// SPEC §6: a replica that cannot hear other replicas' revocations (its LISTEN connection
/// dropped and cannot come back) answers from a cache only for `auth.revocation_propagation`
/// after it stopped hearing them; past that, what needs the store or the cache is 503 until
/// it listens again — never a token another replica may have revoked meanwhile. Recovery
/// needs no restart. The bound is crossed by moving the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_hearing_revocations_fails_closed_after_the_bound() {
    let Some(db) = crate::helpers::support::TestDb::postgres("listener outage").await else {
        return;
    };
    let up = Upstream::start().await;
    let config = format!(
        "[store]\nurl = \"{}\"\n[auth]\nrevocation_propagation = \"10m\"\n{}",
        db.url,
        routes(&up, "")
    );
    let gw = TestGateway::start("", &config).await;
    let g = &gw.gateway;
    // Replica two, as far as the store is concerned; opened while connections are allowed.
    let other = db.open().await;
    let doomed = tokens::access_token(g, "app1", "alice", "READ", HOUR).await;
    let fresh = tokens::access_token(g, "app1", "alice", "READ", HOUR).await;
    let client = gw.client(true);
    let status = |token: &str| {
        let req = client.get(gw.url("/rest/api/x")).bearer_auth(token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(&doomed.token).await, 200, "valid, and cached");

    let mut events = g.store.subscribe();
    db.allow_connections(false).await;
    db.terminate_listeners().await;
    next_event_where(&mut events, EVENT_LIMIT, |e| {
        matches!(e, StoreEvent::NotificationsLost)
    })
    .await;
    // Within the bound the replica still serves, from the store (its pool's open
    // connections) and then from the cache.
    assert_eq!(status(&doomed.token).await, 200);
    // Replica two revokes: its notification cannot reach this replica.
    let now = g.clock.now();
    assert!(other.revoke_grant(&doomed.grant_id, now).await.unwrap());

    g.clock.advance(Duration::from_secs(601));
    assert_eq!(
        status(&doomed.token).await,
        503,
        "past the bound, not even a cached answer"
    );
    assert_eq!(status(&fresh.token).await, 503, "nor one from the store");
    let mut forged = fresh.token.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    assert_eq!(
        status(&forged).await,
        401,
        "what fails without the store still fails as invalid"
    );

    db.allow_connections(true).await;
    // The listener retries with a backoff of up to 5 s.
    next_event_where(&mut events, EVENT_LIMIT, |e| {
        matches!(e, StoreEvent::NotificationsBack)
    })
    .await;
    assert_eq!(
        status(&doomed.token).await,
        401,
        "the missed revocation holds"
    );
    assert_eq!(status(&fresh.token).await, 200, "listening again: served");
    other.close().await;
}
