//! Per-route scope rules (SPEC §3.4): the scope each method needs, resolved against the scope
//! set once when the routes are built, so a request costs one lookup and one bitset test.

use std::collections::BTreeMap;

use http::Method;

use super::scope::{ScopeSet, Scopes};

/// One required scope: its bit and its name for `WWW-Authenticate: … scope="WRITE"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeRule {
    pub required: Scopes,
    pub name: String,
}

/// The rules of one route: per method, then `*` for the rest.
#[derive(Clone, Debug, Default)]
pub struct RouteScopes {
    by_method: Vec<(Method, ScopeRule)>,
    otherwise: Option<ScopeRule>,
}

impl RouteScopes {
    /// Resolves a route's `scopes` table (`"*"` for the rest); unknown names are refused (the
    /// config check reports them first, with their location).
    pub fn new(table: &BTreeMap<String, String>, set: &ScopeSet) -> Result<Self, String> {
        let mut rules = Self::default();
        for (method, name) in table {
            let required = set
                .lookup(name)
                .ok_or_else(|| format!("unknown scope '{name}'"))?;
            let rule = ScopeRule {
                required,
                name: name.clone(),
            };
            if method == "*" {
                rules.otherwise = Some(rule);
            } else {
                let m = Method::from_bytes(method.as_bytes())
                    .map_err(|_| format!("bad method '{method}'"))?;
                rules.by_method.push((m, rule));
            }
        }
        Ok(rules)
    }

    /// The rule for `method`: its own, GET's for HEAD, else `*`'s; `None` means the route does
    /// not allow the method.
    pub fn for_method(&self, method: &Method) -> Option<&ScopeRule> {
        let find = |m: &Method| self.by_method.iter().find(|(k, _)| k == m).map(|(_, r)| r);
        find(method)
            .or_else(|| {
                if method == Method::HEAD {
                    find(&Method::GET)
                } else {
                    None
                }
            })
            .or(self.otherwise.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.by_method.is_empty() && self.otherwise.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(pairs: &[(&str, &str)]) -> RouteScopes {
        let table = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RouteScopes::new(&table, &ScopeSet::default_confluence()).unwrap()
    }

    #[test]
    fn methods_then_head_as_get_then_the_rest() {
        let set = ScopeSet::default_confluence();
        let r = rules(&[("GET", "READ"), ("*", "WRITE")]);
        assert_eq!(r.for_method(&Method::GET).unwrap().name, "READ");
        assert_eq!(r.for_method(&Method::HEAD).unwrap().name, "READ");
        assert_eq!(r.for_method(&Method::DELETE).unwrap().name, "WRITE");
        let write = set.expand(set.lookup("WRITE").unwrap());
        assert!(write.satisfies(r.for_method(&Method::GET).unwrap().required));
        let read = set.expand(set.lookup("READ").unwrap());
        assert!(!read.satisfies(r.for_method(&Method::POST).unwrap().required));
    }

    #[test]
    fn unlisted_methods_without_a_default_are_not_allowed() {
        let r = rules(&[("GET", "READ")]);
        assert!(r.for_method(&Method::POST).is_none());
        assert!(
            RouteScopes::new(
                &[("GET".to_string(), "NOPE".to_string())].into(),
                &ScopeSet::default_confluence()
            )
            .is_err()
        );
    }
}
