//! `[[scopes]]` (SPEC §5, scope tokens per RFC 6749 §3.3): the scope set, its default
//! READ ⊂ WRITE ⊂ ADMIN ⊂ SYSTEM_ADMIN, and the check that every scope named elsewhere in the
//! file is in the set.

use std::collections::HashSet;

use toml_edit::TableLike;

use super::decode::{Decoder, Span};
use super::sections::array_of_tables;

/// `[[scopes]]`: one scope of the set; when the file has any, they replace the default set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeEntry {
    /// `name`: the scope token, such as `READ` (RFC 6749 §3.3 characters), unique. Required.
    pub name: String,
    /// `description`: what holding the scope allows, shown on the consent page. Default `""`.
    pub description: String,
    /// `implies`: the scopes this one includes, each declared in `[[scopes]]`. Default none.
    pub implies: Vec<String>,
}

/// The keys of a `[[scopes]]` entry, in the order of [`ScopeEntry`].
pub(super) const KEYS: &[&str] = &["name", "description", "implies"];

/// The scope names when the file has no `[[scopes]]`.
const DEFAULT_SCOPES: &[&str] = &["READ", "WRITE", "ADMIN", "SYSTEM_ADMIN"];

/// Every `[[scopes]]` entry of `root`.
pub(super) fn decode(d: &mut Decoder<'_>, root: &dyn TableLike) -> Vec<ScopeEntry> {
    let entries = array_of_tables(d, root, "scopes");
    let mut out: Vec<ScopeEntry> = Vec::new();
    let mut spans = Vec::new();
    for (i, (t, span)) in entries.into_iter().enumerate() {
        let sec = format!("scopes[{i}]");
        d.reject_unknown(t, &sec, KEYS);
        let what = "a scope name such as \"READ\"";
        let (name, name_span) = d.required_non_empty_str(t, &sec, "name", span, what);
        if !name.is_empty() && !is_scope_token(&name) {
            d.error(
                name_span.clone(),
                format!(
                    "{sec}.name: '{name}' has characters not allowed in a scope (RFC 6749 §3.3)"
                ),
            );
        }
        if !name.is_empty() && out.iter().any(|s| s.name == name) {
            d.error(
                name_span,
                format!("{sec}.name: scope '{name}' is declared twice"),
            );
        }
        let description = d.str(t, &sec, "description", "");
        let implies = d.str_array(t, &sec, "implies");
        spans.push(implies.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>());
        out.push(ScopeEntry {
            name,
            description,
            implies: implies.into_iter().map(|(s, _)| s).collect(),
        });
    }
    for (i, entry) in out.iter().enumerate() {
        for (j, implied) in entry.implies.iter().enumerate() {
            if !out.iter().any(|s| &s.name == implied) {
                d.error(
                    spans[i][j].clone(),
                    format!("scopes[{i}].implies: unknown scope '{implied}'"),
                );
            }
        }
    }
    out
}

/// The scope names that `[[users]]`, `[[apps]]` and `[[routes]]` may name: those of
/// `scopes`, or the default set when it is empty.
pub(super) fn names(scopes: &[ScopeEntry]) -> HashSet<String> {
    if scopes.is_empty() {
        DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
    } else {
        scopes.iter().map(|s| s.name.clone()).collect()
    }
}

/// Reports `name` (the value of `field`, at `span`) when it is not one of `known`.
pub(super) fn check_known(
    d: &mut Decoder<'_>,
    known: &HashSet<String>,
    name: &str,
    span: Span,
    field: &str,
) {
    if !known.contains(name) {
        let mut list: Vec<&str> = known.iter().map(String::as_str).collect();
        list.sort_unstable();
        d.error(
            span,
            format!(
                "{field}: unknown scope '{name}' (known: {})",
                list.join(", ")
            ),
        );
    }
}

fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}
