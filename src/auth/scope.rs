//! The scope model of SPEC §2: named scopes with transitive implications (RFC 6749 §3.3
//! scope-tokens), compact `Scopes` bitsets, and the grant rule expand(requested) ∩
//! expand(user max) ∩ expand(app) written as its highest members.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The most scopes one `ScopeSet` can hold (one bit each in a `u64`).
pub const MAX_SCOPES: usize = 64;

/// One scope as declared in the config (`[[scopes]]`) or by the default set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeDef {
    /// The scope-token (RFC 6749 §3.3), e.g. `WRITE`.
    pub name: String,
    /// Shown on the consent page, e.g. "Create, update, and delete content".
    pub description: String,
    /// Scopes this one implies directly; the closure is taken transitively.
    #[serde(default)]
    pub implies: Vec<String>,
}

impl ScopeDef {
    /// A definition from plain strings.
    pub fn new(name: &str, description: &str, implies: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            description: description.to_owned(),
            implies: implies.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// Why a scope configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeConfigError {
    #[error("at least one scope must be defined")]
    Empty,
    #[error("at most {MAX_SCOPES} scopes can be defined, got {0}")]
    TooMany(usize),
    #[error(
        "scope name {0:?} must be 1 or more RFC 6749 scope-token characters (printable ASCII except space, '\"' and '\\')"
    )]
    InvalidName(String),
    #[error("scope {0:?} is defined more than once")]
    Duplicate(String),
    #[error("scope {scope:?} implies unknown scope {implied:?}")]
    UnknownImplied { scope: String, implied: String },
    #[error("scope {0:?} implies itself through a cycle")]
    Cycle(String),
}

/// A request for scopes that cannot be honoured: RFC 6749 §4.1.2.1 / §5.2 `invalid_scope`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidScope {
    #[error("the scope parameter is missing or empty")]
    Empty,
    #[error("unknown scope {0:?}")]
    Unknown(String),
    #[error("none of the requested scopes may be granted")]
    NotGrantable,
}

/// A set of scopes of one `ScopeSet`, as a bitset: `Copy`, and checks never allocate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u64);

impl Scopes {
    /// The empty set.
    pub const EMPTY: Scopes = Scopes(0);

    /// The raw bits (bit i = the i-th scope of the `ScopeSet`), e.g. for a cache key.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether no scope is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many scopes are in the set.
    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Whether every scope of `other` is in `self` (plain set inclusion, no expansion).
    pub const fn contains(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether a token holding `self` may do what needs `required`: the proxy's hot path,
    /// one AND and a compare. `self` must already be expanded ([`ScopeSet::expand`], done
    /// once when a token is validated); [`ScopeSet::satisfies`] expands for you.
    pub const fn satisfies(self, required: Scopes) -> bool {
        self.contains(required)
    }

    /// Set union.
    pub const fn union(self, other: Scopes) -> Scopes {
        Scopes(self.0 | other.0)
    }

    /// Set intersection.
    pub const fn intersection(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }

    fn indices(self) -> impl Iterator<Item = usize> {
        let bits = self.0;
        (0..MAX_SCOPES).filter(move |i| bits & (1u64 << i) != 0)
    }
}

/// The scopes a deployment knows, validated once, with each scope's closure precomputed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeSet {
    defs: Vec<ScopeDef>,
    /// `closure[i]`: scope i and everything it implies, transitively.
    closure: Vec<u64>,
}

impl ScopeSet {
    /// Confluence Data Center's scopes: READ ⊂ WRITE ⊂ ADMIN ⊂ SYSTEM_ADMIN.
    pub fn default_confluence() -> Self {
        let defs = vec![
            ScopeDef::new("READ", "View content", &[]),
            ScopeDef::new("WRITE", "Create, update, and delete content", &["READ"]),
            ScopeDef::new("ADMIN", "Administer the service", &["WRITE"]),
            ScopeDef::new("SYSTEM_ADMIN", "Administer the system", &["ADMIN"]),
        ];
        let closure = vec![0b0001, 0b0011, 0b0111, 0b1111];
        Self { defs, closure }
    }

    /// Validates `defs`: 1..=64 scopes, scope-token names, unique names, implications that
    /// name known scopes, and no cycle.
    pub fn new(defs: Vec<ScopeDef>) -> Result<Self, ScopeConfigError> {
        if defs.is_empty() {
            return Err(ScopeConfigError::Empty);
        }
        if defs.len() > MAX_SCOPES {
            return Err(ScopeConfigError::TooMany(defs.len()));
        }
        for (i, def) in defs.iter().enumerate() {
            if !is_scope_token(&def.name) {
                return Err(ScopeConfigError::InvalidName(def.name.clone()));
            }
            if defs[..i].iter().any(|d| d.name == def.name) {
                return Err(ScopeConfigError::Duplicate(def.name.clone()));
            }
        }
        let mut strict = Vec::with_capacity(defs.len());
        for def in &defs {
            let mut mask = 0u64;
            for implied in &def.implies {
                let Some(j) = defs.iter().position(|d| &d.name == implied) else {
                    return Err(ScopeConfigError::UnknownImplied {
                        scope: def.name.clone(),
                        implied: implied.clone(),
                    });
                };
                mask |= 1u64 << j;
            }
            strict.push(mask);
        }
        transitive_closure(&mut strict);
        if let Some(i) = (0..defs.len()).find(|&i| strict[i] & (1u64 << i) != 0) {
            return Err(ScopeConfigError::Cycle(defs[i].name.clone()));
        }
        let closure = strict
            .iter()
            .enumerate()
            .map(|(i, m)| m | (1u64 << i))
            .collect();
        Ok(Self { defs, closure })
    }

    /// The definitions, in declaration order (bit i is `defs()[i]`).
    pub fn defs(&self) -> &[ScopeDef] {
        &self.defs
    }

    /// Every scope of the set.
    pub fn all(&self) -> Scopes {
        Scopes(self.closure.iter().fold(0, |acc, m| acc | m))
    }

    /// The scope named `name` alone (not expanded), if it is known. Case-sensitive.
    pub fn lookup(&self, name: &str) -> Option<Scopes> {
        self.defs
            .iter()
            .position(|d| d.name == name)
            .map(|i| Scopes(1u64 << i))
    }

    /// The definitions of the scopes in `scopes`, in declaration order (for consent pages).
    pub fn iter<'a>(&'a self, scopes: Scopes) -> impl Iterator<Item = &'a ScopeDef> + 'a {
        scopes.indices().filter_map(move |i| self.defs.get(i))
    }

    /// Parses a space-separated scope parameter (RFC 6749 §3.3); the names are not expanded.
    /// Unknown names and an empty value are `invalid_scope`.
    pub fn parse(&self, value: &str) -> Result<Scopes, InvalidScope> {
        let mut out = Scopes::EMPTY;
        for name in value.split(' ').filter(|s| !s.is_empty()) {
            let one = self
                .lookup(name)
                .ok_or_else(|| InvalidScope::Unknown(truncate(name, 64)))?;
            out = out.union(one);
        }
        if out.is_empty() {
            return Err(InvalidScope::Empty);
        }
        Ok(out)
    }

    /// The transitive closure: every scope in `scopes` plus everything they imply.
    pub fn expand(&self, scopes: Scopes) -> Scopes {
        let mut out = 0u64;
        let mut bits = scopes.0;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            out |= self.closure.get(i).copied().unwrap_or(0);
        }
        Scopes(out)
    }

    /// Whether `granted` (expanded here, so any form works) covers `required`. Allocation-free.
    pub fn satisfies(&self, granted: Scopes, required: Scopes) -> bool {
        self.expand(granted).contains(required)
    }

    /// The minimal members of expand(`scopes`) whose expansion is that whole set: alice's
    /// `READ WRITE` is written `WRITE`.
    pub fn highest(&self, scopes: Scopes) -> Scopes {
        let expanded = self.expand(scopes);
        let mut out = expanded.0;
        for i in expanded.indices() {
            // Everything i implies (besides itself) is redundant.
            let implied = self.closure.get(i).copied().unwrap_or(0) & !(1u64 << i);
            out &= !implied;
        }
        Scopes(out)
    }

    /// The names of `scopes` as they are (no expansion), space-separated in declaration order.
    pub fn to_names(&self, scopes: Scopes) -> String {
        let mut out = String::new();
        for def in self.iter(scopes) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&def.name);
        }
        out
    }

    /// The expanded set, space-separated: what `X-Auth-Scopes` and introspection show
    /// (a WRITE token carries `READ WRITE`).
    pub fn to_expanded_string(&self, scopes: Scopes) -> String {
        self.to_names(self.expand(scopes))
    }

    /// The highest members, space-separated: what a token response's `scope` says.
    pub fn to_highest_string(&self, scopes: Scopes) -> String {
        self.to_names(self.highest(scopes))
    }

    /// SPEC §2: expand(requested) ∩ expand(user_max) ∩ expand(app_scopes), as its highest
    /// members; capping is silent, an empty result is `invalid_scope`.
    pub fn grant(
        &self,
        requested: Scopes,
        user_max: Scopes,
        app_scopes: Scopes,
    ) -> Result<Scopes, InvalidScope> {
        if requested.is_empty() {
            return Err(InvalidScope::Empty);
        }
        let granted = self
            .expand(requested)
            .intersection(self.expand(user_max))
            .intersection(self.expand(app_scopes));
        if granted.is_empty() {
            return Err(InvalidScope::NotGrantable);
        }
        Ok(self.highest(granted))
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_names(self.all()))
    }
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

fn transitive_closure(masks: &mut [u64]) {
    loop {
        let mut changed = false;
        for i in 0..masks.len() {
            let mut grown = masks[i];
            for j in Scopes(masks[i]).indices() {
                grown |= masks.get(j).copied().unwrap_or(0);
            }
            if grown != masks[i] {
                masks[i] = grown;
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
#[path = "scope_tests.rs"]
mod tests;
