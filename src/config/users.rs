//! `[[users]]` (SPEC §5): the users who may sign in with a password, each key with its rule
//! (argon2id hashes only, scopes from the configured set).

use std::collections::HashSet;

use toml_edit::TableLike;

use super::Secret;
use super::decode::Decoder;
use super::scopes::check_known;
use super::sections::array_of_tables;

/// `[[users]]`: one user who signs in with a password.
#[derive(Clone, Debug)]
pub struct UserEntry {
    /// `name`: the user name, 1-64 characters of `A-Z a-z 0-9 . _ @ -`, unique. Required.
    pub name: String,
    /// `password_hash`: an argon2id hash from `gatehouse hash-password`. Required.
    pub password_hash: Secret,
    /// `max_scope`: the widest scope the user may hold, such as `WRITE`; tokens are capped at
    /// it. Required.
    pub max_scope: String,
    /// `groups`: the groups the user belongs to (SPEC §7.3), for routes' `allow_groups` and the
    /// upstream's `X-Auth-Groups`. Default `[]`.
    pub groups: Vec<String>,
}

/// The keys of a `[[users]]` entry, in the order of [`UserEntry`].
pub(super) const KEYS: &[&str] = &[
    "name",
    "password_hash",
    "password_hash_file",
    "max_scope",
    "groups",
];

/// Every `[[users]]` entry of `root`; `known` is the scope set.
pub(super) fn decode(
    d: &mut Decoder<'_>,
    root: &dyn TableLike,
    known: &HashSet<String>,
) -> Vec<UserEntry> {
    let mut out: Vec<UserEntry> = Vec::new();
    for (i, (t, span)) in array_of_tables(d, root, "users").into_iter().enumerate() {
        let sec = format!("users[{i}]");
        d.reject_unknown(t, &sec, KEYS);
        let what = "a user name such as \"alice\"";
        let (name, name_span) = d.required_non_empty_str(t, &sec, "name", span.clone(), what);
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
        if !name.is_empty() && !valid {
            d.error(
                name_span.clone(),
                format!("{sec}.name: '{name}' must be 1-64 characters of A-Z a-z 0-9 . _ @ -"),
            );
        }
        if !name.is_empty() && out.iter().any(|u| u.name == name) {
            d.error(
                name_span,
                format!("{sec}.name: user '{name}' is declared twice"),
            );
        }
        let what = "an argon2id hash from `gatehouse hash-password`";
        let (hash, hash_span) = d.required_secret(t, &sec, "password_hash", span.clone(), what);
        if !hash.is_empty() && !hash.starts_with("$argon2id$") {
            d.error(
                hash_span,
                format!(
                    "{sec}.password_hash: must be an argon2id hash from `gatehouse hash-password`"
                ),
            );
        }
        let what = "the widest scope the user may hold, such as \"WRITE\"";
        let (max_scope, scope_span) = d.required_non_empty_str(t, &sec, "max_scope", span, what);
        if !max_scope.is_empty() {
            check_known(
                d,
                known,
                &max_scope,
                scope_span,
                &format!("{sec}.max_scope"),
            );
        }
        let groups = group_names(d, t, &sec, "groups");
        out.push(UserEntry {
            name,
            password_hash: Secret::new(hash),
            max_scope,
            groups,
        });
    }
    out
}

/// A list of group names (`users[].groups`, `routes[].allow_groups`, `auth.forward_groups`):
/// each 1-256 visible ASCII characters without spaces, so that the space-separated
/// `X-Auth-Groups` header can carry it; duplicates are reported.
pub(super) fn group_names(
    d: &mut Decoder<'_>,
    t: &dyn TableLike,
    sec: &str,
    key: &str,
) -> Vec<String> {
    let what = "a group name such as \"wiki-admins\"";
    let mut out: Vec<String> = Vec::new();
    for (i, (group, span)) in d
        .non_empty_str_array(t, sec, key, what)
        .into_iter()
        .enumerate()
    {
        if group.len() > 256 || !group.bytes().all(|b| b.is_ascii_graphic()) {
            d.error(
                span,
                format!("{sec}.{key}[{i}]: '{group}' must be 1-256 visible ASCII characters without spaces"),
            );
        } else if out.contains(&group) {
            d.error(span, format!("{sec}.{key}[{i}]: '{group}' is listed twice"));
        } else {
            out.push(group);
        }
    }
    out
}
