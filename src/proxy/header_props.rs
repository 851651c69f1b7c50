//! Property tests of the header policy (SPEC §3.4, SECURITY.md "Headers between client and
//! upstream"): whatever header list a client sends (any case, `_` or `.` for `-`, duplicates,
//! names listed in `Connection`), no configured identity header and no `Authorization` that the
//! client sent reaches the upstream; only the gateway's own values do.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::headers::{ClientFacts, HeaderPolicy, Identity};

/// Identity header names an operator might configure, `x-` or not.
const CONFIGURED: [[&str; 3]; 3] = [
    ["X-Auth-User", "X-Auth-Scopes", "X-Auth-Client-Id"],
    ["Remote-User", "Remote-Groups", "Client-Id"],
    ["user", "scopes.list", "a_client"],
];

fn fold(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// A spelling of `name` a backend would fold into the same variable.
fn spelling(name: &str, choice: u8) -> String {
    let sep = match choice % 3 {
        0 => '-',
        1 => '_',
        _ => '.',
    };
    let cased: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if (choice >> 2) & 1 == 1 && i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    cased.replace(['-', '_', '.'], &sep.to_string())
}

#[derive(Debug, Clone)]
enum Field {
    /// One of the configured identity names, or the assertion or request id, in some spelling.
    Identity(usize, u8),
    Authorization,
    /// A `Connection` field naming identity fields and others.
    Connection(Vec<(usize, u8)>),
    Other(String),
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        4 => (0usize..5, any::<u8>()).prop_map(|(i, c)| Field::Identity(i, c)),
        1 => Just(Field::Authorization),
        2 => prop::collection::vec((0usize..5, any::<u8>()), 1..4).prop_map(Field::Connection),
        2 => "[a-z][a-z0-9_.-]{0,12}".prop_map(Field::Other),
    ]
}

fn names(config: usize) -> [String; 5] {
    let [u, s, c] = CONFIGURED[config];
    [
        u.into(),
        s.into(),
        c.into(),
        "X-Auth-Assertion".into(),
        "X-Request-Id".into(),
    ]
}

fn build(config: usize, fields: &[Field]) -> HeaderMap {
    let names = names(config);
    let mut h = HeaderMap::new();
    for f in fields {
        let (name, value) = match f {
            Field::Identity(i, c) => (spelling(&names[*i], *c), "forged".to_string()),
            Field::Authorization => ("authorization".into(), "Bearer stolen".into()),
            Field::Connection(list) => {
                let listed: Vec<String> =
                    list.iter().map(|(i, c)| spelling(&names[*i], *c)).collect();
                ("connection".into(), listed.join(", "))
            }
            Field::Other(n) => (n.clone(), "v".into()),
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.append(n, v);
        }
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn nothing_forged_survives(
        config in 0usize..3,
        fields in prop::collection::vec(field(), 0..12),
        authenticated in any::<bool>(),
    ) {
        let [u, s, c] = CONFIGURED[config];
        let configured: Vec<HeaderName> = [u, s, c]
            .iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
            .collect();
        let policy = HeaderPolicy::new(&configured.iter().collect::<Vec<_>>(), Vec::new());
        let mut headers = build(config, &fields);
        let (user, scopes, client) = (
            HeaderValue::from_static("alice"),
            HeaderValue::from_static("READ"),
            HeaderValue::from_static("app"),
        );
        let identity = Identity { user: &user, scopes: &scopes, client_id: Some(&client), groups: &[], assertion: None };
        let (peer_value, request_id) = (HeaderValue::from_static("203.0.113.9"), HeaderValue::from_static("rid"));
        let facts = ClientFacts {
            peer: "203.0.113.9".parse().unwrap(),
            peer_value: &peer_value,
            scheme: "https",
            host: None,
            request_id: &request_id,
        };
        policy.prepare_request(
            &mut headers,
            &HeaderValue::from_static("upstream"),
            &facts,
            false,
            false,
            authenticated.then_some(&identity),
        );
        prop_assert!(headers.get("authorization").is_none());
        let ours: [(&str, &HeaderValue); 3] = [(u, &user), (s, &scopes), (c, &client)];
        for (name, value) in headers.iter() {
            prop_assert_ne!(value.as_bytes(), b"forged", "{} survived", name);
            let folded = fold(name.as_str());
            if let Some((_, expected)) = ours.iter().find(|(n, _)| fold(n) == folded) {
                prop_assert!(authenticated, "{} reached a public upstream", name);
                prop_assert_eq!(value, *expected);
            }
        }
        for (name, _) in ours {
            prop_assert!(headers.get_all(name.to_ascii_lowercase().as_str()).iter().count() <= 1);
        }
        prop_assert_eq!(&headers["x-request-id"], "rid");
    }
}
