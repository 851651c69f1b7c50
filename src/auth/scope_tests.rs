//! Tests of the scope model (SPEC §2, RFC 6749 §3.3): config validation, parsing, closure,
//! highest members and the grant rule, with property tests for the parser and the algebra.

use super::*;
use proptest::prelude::*;

fn s(set: &ScopeSet, value: &str) -> Scopes {
    set.parse(value).unwrap()
}

#[test]
fn default_set_matches_the_spec() {
    let set = ScopeSet::default_confluence();
    let names: Vec<_> = set.defs().iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["READ", "WRITE", "ADMIN", "SYSTEM_ADMIN"]);
    let descriptions: Vec<_> = set.defs().iter().map(|d| d.description.as_str()).collect();
    assert_eq!(
        descriptions,
        [
            "View content",
            "Create, update, and delete content",
            "Administer the service",
            "Administer the system"
        ]
    );
    // The hand-written closure equals the computed one.
    assert_eq!(ScopeSet::new(set.defs().to_vec()).unwrap(), set);
}

#[test]
fn expansion_is_transitive() {
    let set = ScopeSet::default_confluence();
    assert_eq!(set.to_expanded_string(s(&set, "READ")), "READ");
    assert_eq!(set.to_expanded_string(s(&set, "WRITE")), "READ WRITE");
    assert_eq!(set.to_expanded_string(s(&set, "ADMIN")), "READ WRITE ADMIN");
    assert_eq!(
        set.to_expanded_string(s(&set, "SYSTEM_ADMIN")),
        "READ WRITE ADMIN SYSTEM_ADMIN"
    );
}

#[test]
fn satisfies_follows_implication_not_the_reverse() {
    let set = ScopeSet::default_confluence();
    let write = set.expand(s(&set, "WRITE"));
    assert!(write.satisfies(s(&set, "READ")));
    assert!(write.satisfies(s(&set, "WRITE")));
    assert!(!write.satisfies(s(&set, "ADMIN")));
    assert!(write.satisfies(Scopes::EMPTY));
    // The ScopeSet form expands the granted side itself.
    assert!(set.satisfies(s(&set, "ADMIN"), s(&set, "READ")));
    assert!(!set.satisfies(s(&set, "READ"), s(&set, "WRITE")));
}

#[test]
fn highest_writes_the_minimal_members() {
    let set = ScopeSet::default_confluence();
    assert_eq!(set.to_names(set.highest(s(&set, "READ WRITE"))), "WRITE");
    assert_eq!(set.to_highest_string(s(&set, "READ ADMIN WRITE")), "ADMIN");
    assert!(set.highest(Scopes::EMPTY).is_empty());
}

#[test]
fn grant_caps_silently_at_user_and_app() {
    let set = ScopeSet::default_confluence();
    // alice, max WRITE, asking ADMIN gets WRITE.
    let g = set
        .grant(s(&set, "ADMIN"), s(&set, "WRITE"), s(&set, "SYSTEM_ADMIN"))
        .unwrap();
    assert_eq!(set.to_names(g), "WRITE");
    assert_eq!(set.to_expanded_string(g), "READ WRITE");
    // The app caps too.
    let g = set
        .grant(s(&set, "ADMIN"), s(&set, "ADMIN"), s(&set, "READ"))
        .unwrap();
    assert_eq!(set.to_names(g), "READ");
    // Asking less than allowed gets what was asked.
    let g = set
        .grant(s(&set, "READ"), s(&set, "ADMIN"), s(&set, "ADMIN"))
        .unwrap();
    assert_eq!(set.to_names(g), "READ");
}

#[test]
fn grant_with_nothing_in_common_is_invalid_scope() {
    let defs = vec![
        ScopeDef::new("mail", "Mail", &[]),
        ScopeDef::new("calendar", "Calendar", &[]),
    ];
    let set = ScopeSet::new(defs).unwrap();
    let err = set
        .grant(s(&set, "mail"), s(&set, "calendar"), set.all())
        .unwrap_err();
    assert_eq!(err, InvalidScope::NotGrantable);
    assert_eq!(
        set.grant(Scopes::EMPTY, set.all(), set.all()),
        Err(InvalidScope::Empty)
    );
}

#[test]
fn parse_rejects_unknown_and_empty() {
    let set = ScopeSet::default_confluence();
    assert_eq!(set.parse(""), Err(InvalidScope::Empty));
    assert_eq!(set.parse("   "), Err(InvalidScope::Empty));
    assert_eq!(
        set.parse("READ DELETE"),
        Err(InvalidScope::Unknown("DELETE".into()))
    );
    // Case-sensitive (RFC 6749 §3.3), and only spaces separate.
    assert!(matches!(set.parse("read"), Err(InvalidScope::Unknown(_))));
    assert!(matches!(
        set.parse("READ\tWRITE"),
        Err(InvalidScope::Unknown(_))
    ));
    assert!(matches!(
        set.parse("READ,WRITE"),
        Err(InvalidScope::Unknown(_))
    ));
    // Extra spaces are tolerated; duplicates collapse.
    assert_eq!(set.to_names(s(&set, " WRITE  READ WRITE ")), "READ WRITE");
}

#[test]
fn unknown_names_are_truncated_in_errors() {
    let set = ScopeSet::default_confluence();
    let long = "X".repeat(10_000);
    let Err(InvalidScope::Unknown(name)) = set.parse(&long) else {
        panic!("expected Unknown")
    };
    assert_eq!(name.len(), 64);
}

#[test]
fn config_validation_rejects_bad_sets() {
    use ScopeConfigError as E;
    assert_eq!(ScopeSet::new(vec![]), Err(E::Empty));
    let dup = vec![ScopeDef::new("A", "", &[]), ScopeDef::new("A", "", &[])];
    assert_eq!(ScopeSet::new(dup), Err(E::Duplicate("A".into())));
    let unknown = vec![ScopeDef::new("A", "", &["B"])];
    assert_eq!(
        ScopeSet::new(unknown),
        Err(E::UnknownImplied {
            scope: "A".into(),
            implied: "B".into()
        })
    );
    let self_cycle = vec![ScopeDef::new("A", "", &["A"])];
    assert_eq!(ScopeSet::new(self_cycle), Err(E::Cycle("A".into())));
    let cycle = vec![
        ScopeDef::new("A", "", &["C"]),
        ScopeDef::new("B", "", &["A"]),
        ScopeDef::new("C", "", &["B"]),
    ];
    assert!(matches!(ScopeSet::new(cycle), Err(E::Cycle(_))));
    for bad in ["", "has space", "quo\"te", "back\\slash", "tab\t", "é"] {
        let defs = vec![ScopeDef::new(bad, "", &[])];
        assert_eq!(
            ScopeSet::new(defs),
            Err(E::InvalidName(bad.into())),
            "{bad:?}"
        );
    }
    let many = (0..65)
        .map(|i| ScopeDef::new(&format!("s{i}"), "", &[]))
        .collect();
    assert_eq!(ScopeSet::new(many), Err(E::TooMany(65)));
    let max = (0..64)
        .map(|i| ScopeDef::new(&format!("s{i}"), "", &[]))
        .collect();
    assert_eq!(ScopeSet::new(max).unwrap().all().len(), 64);
}

#[test]
fn custom_sets_with_diamonds_expand_and_reduce() {
    // files:write and mail:write both imply read; admin implies both writes.
    let defs = vec![
        ScopeDef::new("read", "Read", &[]),
        ScopeDef::new("files:write", "Files", &["read"]),
        ScopeDef::new("mail:write", "Mail", &["read"]),
        ScopeDef::new("admin", "Admin", &["files:write", "mail:write"]),
    ];
    let set = ScopeSet::new(defs).unwrap();
    assert_eq!(
        set.to_expanded_string(s(&set, "admin")),
        "read files:write mail:write admin"
    );
    assert_eq!(
        set.to_highest_string(s(&set, "read files:write mail:write")),
        "files:write mail:write"
    );
    let g = set
        .grant(s(&set, "admin"), s(&set, "files:write"), set.all())
        .unwrap();
    assert_eq!(set.to_names(g), "files:write");
    // Scope-token characters beyond letters are fine: '!' and '~' are allowed.
    assert!(ScopeSet::new(vec![ScopeDef::new("a!b~c#[]", "", &[])]).is_ok());
}

#[test]
fn consent_iteration_yields_descriptions_in_order() {
    let set = ScopeSet::default_confluence();
    let d: Vec<_> = set
        .iter(set.expand(s(&set, "WRITE")))
        .map(|d| d.description.as_str())
        .collect();
    assert_eq!(d, ["View content", "Create, update, and delete content"]);
}

#[test]
fn scope_defs_deserialize_from_config_shape() {
    let def: ScopeDef = serde_json::from_str(r#"{"name":"READ","description":"View"}"#).unwrap();
    assert!(def.implies.is_empty());
}

fn arb_set() -> impl Strategy<Value = ScopeSet> {
    // Random DAGs: scope i may imply only scopes j < i, so there is never a cycle.
    (1usize..12).prop_flat_map(|n| {
        proptest::collection::vec(proptest::collection::vec(any::<bool>(), n), n).prop_map(
            move |edges| {
                let defs = (0..n)
                    .map(|i| ScopeDef {
                        name: format!("s{i}"),
                        description: String::new(),
                        implies: (0..i)
                            .filter(|&j| edges[i][j])
                            .map(|j| format!("s{j}"))
                            .collect(),
                    })
                    .collect();
                ScopeSet::new(defs).unwrap()
            },
        )
    })
}

proptest! {
    #[test]
    fn parse_never_panics(value in ".{0,200}") {
        let set = ScopeSet::default_confluence();
        if let Ok(scopes) = set.parse(&value) {
            prop_assert!(!scopes.is_empty());
        }
    }

    #[test]
    fn names_round_trip(set in arb_set(), bits in any::<u64>()) {
        let scopes = Scopes(bits & set.all().bits());
        prop_assume!(!scopes.is_empty());
        prop_assert_eq!(set.parse(&set.to_names(scopes)).unwrap(), scopes);
    }

    #[test]
    fn highest_expands_back_and_is_minimal(set in arb_set(), bits in any::<u64>()) {
        let scopes = Scopes(bits & set.all().bits());
        let expanded = set.expand(scopes);
        let top = set.highest(scopes);
        prop_assert_eq!(set.expand(top), expanded);
        prop_assert!(expanded.contains(top));
        // Dropping any member of `top` loses something.
        for i in top.indices() {
            let fewer = Scopes(top.bits() & !(1u64 << i));
            prop_assert_ne!(set.expand(fewer), expanded);
        }
        prop_assert_eq!(set.expand(expanded), expanded);
    }

    #[test]
    fn grant_never_widens(set in arb_set(), r in any::<u64>(), u in any::<u64>(), a in any::<u64>()) {
        let all = set.all().bits();
        let (r, u, a) = (Scopes(r & all), Scopes(u & all), Scopes(a & all));
        match set.grant(r, u, a) {
            Ok(g) => {
                let e = set.expand(g);
                prop_assert!(set.expand(r).contains(e));
                prop_assert!(set.expand(u).contains(e));
                prop_assert!(set.expand(a).contains(e));
                prop_assert_eq!(set.highest(g), g);
            }
            Err(_) => {
                let meet = set.expand(r).intersection(set.expand(u)).intersection(set.expand(a));
                prop_assert!(meet.is_empty());
            }
        }
    }
}
