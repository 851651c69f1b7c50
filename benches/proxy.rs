//! Criterion benchmarks of the proxy's per-request functions: path normalization, route
//! lookup, and request-header rewriting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::config::{AuthMode, RouteConfig};
use gatehouse::metrics::Metrics;
use gatehouse::proxy::headers::{ClientFacts, HeaderPolicy, ip_header_value, request_id};
use gatehouse::proxy::path::normalize;
use gatehouse::proxy::routes::RouteTable;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::hint::black_box;

fn routes() -> RouteTable {
    let paths = [
        "/",
        "/rest/api",
        "/rest/api/content",
        "/rest/admin",
        "/wiki",
        "/download",
        "/rest/oauth2",
        "/static",
        "/plugins",
        "/s",
    ];
    let configs: Vec<RouteConfig> = paths
        .iter()
        .map(|p| RouteConfig {
            path: (*p).to_string(),
            host: String::new(),
            upstream: Some("http://127.0.0.1:8090".parse().unwrap()),
            auth: AuthMode::None,
            scopes: BTreeMap::new(),
            timeout: Duration::from_secs(30),
            forward_authorization: false,
            assertion: false,
            upstream_ca: None,
            allow_groups: Vec::new(),
            allow_users: Vec::new(),
        })
        .collect();
    RouteTable::new(
        &configs,
        &gatehouse::auth::scope::ScopeSet::default_confluence(),
        &Metrics::new().unwrap(),
    )
}

fn typical_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "wiki.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-GB,en;q=0.9"),
        (
            "authorization",
            "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2ln",
        ),
        ("cookie", "gatehouse_session=abc"),
        ("connection", "keep-alive"),
        ("x-request-id", "client-id-123"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

fn bench(c: &mut Criterion) {
    c.bench_function("normalize/plain", |b| {
        b.iter(|| normalize(black_box("/rest/api/content/12345/child/page")))
    });
    c.bench_function("normalize/rewritten", |b| {
        b.iter(|| normalize(black_box("/rest/x/../api/./%63ontent//12345")))
    });
    let table = routes();
    c.bench_function("routes/find_10", |b| {
        b.iter(|| table.find(black_box(None), black_box("/rest/api/content/12345")))
    });
    let user = HeaderName::from_static("x-auth-user");
    let scopes = HeaderName::from_static("x-auth-scopes");
    let policy = HeaderPolicy::new(&[&user, &scopes], Vec::new());
    let peer_value = ip_header_value("203.0.113.7".parse().unwrap());
    let template = typical_headers();
    let upstream_host = HeaderValue::from_static("backend:8080");
    c.bench_function("headers/prepare_request", |b| {
        b.iter_batched(
            || template.clone(),
            |mut h| {
                let rid = request_id(&h);
                let facts = ClientFacts {
                    peer: "203.0.113.7".parse().unwrap(),
                    peer_value: &peer_value,
                    scheme: "https",
                    host: h.get("host").cloned(),
                    request_id: &rid,
                };
                policy.prepare_request(&mut h, &upstream_host, &facts, false, false, None);
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("headers/new_request_id", |b| {
        b.iter(|| request_id(black_box(&HeaderMap::new())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
