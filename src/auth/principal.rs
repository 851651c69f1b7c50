//! Who is calling: the principal a bearer token, a PAT or a login session stands for, with the
//! header values the upstream receives made once (SPEC §3.4). A principal is what the token
//! cache keeps for each validated token, so it is compact: what every principal of one user,
//! one app or one scope list holds alike (names, groups, header values) is one shared value
//! ([`Interned`]), ids are 16 bytes, and only what is the token's own is stored per token
//! (README, "Behaviour worth knowing": the token cache).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use super::scope::Scopes;

/// A user as the upstream sees them: the name, its header value and the groups, shared by
/// every principal of that user (while the groups stay the same).
#[derive(Debug, PartialEq, Eq)]
pub struct UserIdentity {
    /// The user name (`sub`).
    pub name: Box<str>,
    /// The name as the value of the user header.
    pub value: HeaderValue,
    /// The user's groups (config users' `groups`, a provider's groups claim); empty for none.
    pub groups: Groups,
}

impl UserIdentity {
    /// `None` when the name cannot be a header value.
    pub fn new(name: &str, groups: Groups) -> Option<Self> {
        Some(Self {
            name: name.into(),
            value: HeaderValue::from_str(name).ok()?,
            groups,
        })
    }
}

/// An app's client id with its header value, shared by every token of that app.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientRef {
    pub id: Box<str>,
    pub value: HeaderValue,
}

impl ClientRef {
    /// `None` when the client id cannot be a header value.
    pub fn new(id: &str) -> Option<Self> {
        Some(Self {
            id: id.into(),
            value: HeaderValue::from_str(id).ok()?,
        })
    }
}

/// The id of a grant, an access token (`jti`) or a PAT, only ever compared with the ids of
/// revocation events. The store's ids are 32 lowercase hex digits, kept as their 16 bytes; any
/// other text is kept as it is.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Id {
    Hex([u8; 16]),
    Text(Box<str>),
}

impl Id {
    pub fn new(text: &str) -> Self {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let bytes = text.as_bytes();
        if bytes.len() == 32 {
            let mut out = [0u8; 16];
            let parsed = out.iter_mut().zip(bytes.chunks_exact(2)).all(|(o, pair)| {
                match (digit(pair[0]), digit(pair[1])) {
                    (Some(hi), Some(lo)) => {
                        *o = hi << 4 | lo;
                        true
                    }
                    _ => false,
                }
            });
            if parsed {
                return Self::Hex(out);
            }
        }
        Self::Text(text.into())
    }
}

impl From<&str> for Id {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hex(bytes) => bytes.iter().try_for_each(|b| write!(f, "{b:02x}")),
            Self::Text(text) => f.write_str(text),
        }
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

/// How the caller proved who they are, with the handles that revoke that proof. Only the
/// combinations that exist can be built: an app's token always has its app, grant and `jti`; a
/// PAT its id; a session neither.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A JWT access token issued to an app (RFC 9068).
    AppToken {
        client: Arc<ClientRef>,
        grant_id: Id,
        jti: Id,
    },
    /// A personal access token.
    PersonalToken { id: Id },
    /// The login session cookie.
    Session,
    /// An access token of another issuer (SPEC §7.2), by its `[[issuers]]` name.
    Foreign {
        issuer: Arc<str>,
        client: Option<Arc<ClientRef>>,
    },
}

/// The groups a caller belongs to (SPEC §7.3): shared with the user's entry in the directory,
/// so a principal holds a pointer, not a copy.
pub type Groups = Arc<[Arc<str>]>;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub credential: Credential,
    /// The user, shared with the other principals of that user.
    pub identity: Arc<UserIdentity>,
    /// Granted scopes, expanded (a WRITE token holds READ and WRITE).
    pub scopes: Scopes,
    /// The expanded scopes, space-separated, as the scopes header's value (shared).
    pub scopes_value: Arc<HeaderValue>,
    /// The end of the credential, in microseconds since the Unix epoch (8 bytes where a
    /// `SystemTime` takes 16: see [`Principal::expires_at`]).
    expires_micros: u64,
}

impl Principal {
    /// A principal of `identity` holding `scopes` (whose header value is `scopes_value`).
    pub fn new(
        credential: Credential,
        identity: Arc<UserIdentity>,
        scopes: Scopes,
        scopes_value: Arc<HeaderValue>,
        expires_at: SystemTime,
    ) -> Self {
        Self {
            credential,
            identity,
            scopes,
            scopes_value,
            expires_micros: unix_micros(expires_at),
        }
    }

    /// When the credential ends (to the microsecond; the store keeps no finer time).
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.expires_micros)
    }

    /// A principal made of values of its own, nothing shared (a session's, which is not
    /// cached); `scopes_text` is the expanded, space-separated scope list. `None` when a name
    /// cannot be a header value.
    pub fn unshared(
        credential: Credential,
        user: &str,
        groups: Groups,
        scopes: Scopes,
        scopes_text: &str,
        expires_at: SystemTime,
    ) -> Option<Self> {
        let identity = Arc::new(UserIdentity::new(user, groups)?);
        let scopes_value = Arc::new(HeaderValue::from_str(scopes_text).ok()?);
        Some(Self::new(
            credential,
            identity,
            scopes,
            scopes_value,
            expires_at,
        ))
    }

    /// The user name (`sub`).
    pub fn user(&self) -> &str {
        &self.identity.name
    }

    /// The user name as the user header's value.
    pub fn user_value(&self) -> &HeaderValue {
        &self.identity.value
    }

    /// The caller's groups; empty for none.
    pub fn groups(&self) -> &Groups {
        &self.identity.groups
    }

    /// Whether the caller belongs to at least one of `groups`.
    pub fn in_any_group(&self, groups: &[String]) -> bool {
        self.identity
            .groups
            .iter()
            .any(|mine| groups.iter().any(|g| **mine == **g))
    }

    fn client(&self) -> Option<&ClientRef> {
        match &self.credential {
            Credential::AppToken { client, .. }
            | Credential::Foreign {
                client: Some(client),
                ..
            } => Some(client),
            _ => None,
        }
    }

    /// The app of an access token.
    pub fn client_id(&self) -> Option<&str> {
        self.client().map(|c| &*c.id)
    }

    /// The app of an access token, as the client-id header's value.
    pub fn client_id_value(&self) -> Option<&HeaderValue> {
        self.client().map(|c| &c.value)
    }

    /// The `[[issuers]]` name of a foreign token; `None` for gatehouse's own credentials.
    pub fn foreign_issuer(&self) -> Option<&str> {
        match &self.credential {
            Credential::Foreign { issuer, .. } => Some(issuer),
            _ => None,
        }
    }

    /// Whether the caller presented a personal access token.
    pub fn is_personal_token(&self) -> bool {
        matches!(self.credential, Credential::PersonalToken { .. })
    }
}

/// Microseconds from the Unix epoch to `t`: 0 before it, `u64::MAX` past the year 586,000.
pub fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The empty group list.
pub fn no_groups() -> Groups {
    Arc::from(Vec::<Arc<str>>::new())
}

/// The users, apps and scope lists of the principals alive now, each made once and shared by
/// every principal that holds it alike: a hundred thousand cached PATs of one user hold one
/// name, one header value and one group list between them. Each table holds weak references
/// only, so a value goes with the last principal holding it, and a table is swept of such
/// dead names whenever it has doubled since its last sweep: it never holds many more names
/// than there are live values.
#[derive(Default)]
pub struct Interned {
    users: Table<UserIdentity>,
    clients: Table<ClientRef>,
    scope_values: Table<HeaderValue>,
}

impl Interned {
    /// The user `name` with `groups`: the live one when there is one with the same groups.
    /// `None` when the name cannot be a header value.
    pub fn user(&self, name: &str, groups: Groups) -> Option<Arc<UserIdentity>> {
        self.users.get(
            name,
            |u| *u.groups == *groups,
            || UserIdentity::new(name, groups.clone()),
        )
    }

    /// The app `id`. `None` when the id cannot be a header value.
    pub fn client(&self, id: &str) -> Option<Arc<ClientRef>> {
        self.clients.get(id, |_| true, || ClientRef::new(id))
    }

    /// The header value of an expanded, space-separated scope list. `None` when the text
    /// cannot be a header value.
    pub fn scopes_value(&self, text: &str) -> Option<Arc<HeaderValue>> {
        self.scope_values
            .get(text, |_| true, || HeaderValue::from_str(text).ok())
    }

    /// How many users, apps and scope lists the tables name (live or not yet swept).
    pub fn len(&self) -> (usize, usize, usize) {
        (
            self.users.len(),
            self.clients.len(),
            self.scope_values.len(),
        )
    }
}

/// One interning table: values by name, held weakly.
struct Table<T> {
    inner: Mutex<TableInner<T>>,
}

struct TableInner<T> {
    by_name: HashMap<Box<str>, Weak<T>>,
    /// The size at which the next sweep runs.
    sweep_at: usize,
}

/// The fewest names a table holds before it is first swept.
const FIRST_SWEEP: usize = 64;

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(TableInner {
                by_name: HashMap::new(),
                sweep_at: FIRST_SWEEP,
            }),
        }
    }
}

impl<T> Table<T> {
    /// The live value of `name` when `fits` takes it, else a new one from `make` (which then
    /// stands for `name`).
    fn get(
        &self,
        name: &str,
        fits: impl Fn(&T) -> bool,
        make: impl FnOnce() -> Option<T>,
    ) -> Option<Arc<T>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = inner.by_name.get(name).and_then(Weak::upgrade)
            && fits(&live)
        {
            return Some(live);
        }
        let value = Arc::new(make()?);
        inner.by_name.insert(name.into(), Arc::downgrade(&value));
        if inner.by_name.len() >= inner.sweep_at {
            inner.by_name.retain(|_, v| v.strong_count() > 0);
            inner.by_name.shrink_to_fit();
            inner.sweep_at = (inner.by_name.len() * 2).max(FIRST_SWEEP);
        }
        Some(value)
    }

    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_name
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_ids_are_kept_as_sixteen_bytes_and_other_ids_as_text() {
        let uuid = "0123456789abcdef0123456789abcdef";
        let id = Id::new(uuid);
        assert!(matches!(id, Id::Hex(_)));
        assert_eq!(id.to_string(), uuid, "the same id back");
        assert_eq!(id, Id::new(uuid));
        assert_ne!(id, Id::new("0123456789abcdef0123456789abcdee"));
        for other in [
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcdeg",
            "short",
            "",
        ] {
            let id = Id::new(other);
            assert!(matches!(id, Id::Text(_)), "{other}");
            assert_eq!(id.to_string(), other);
        }
        assert_ne!(
            Id::new("0123456789ABCDEF0123456789ABCDEF"),
            Id::new("0123456789abcdef0123456789abcdef"),
            "case matters, as it does for the text ids"
        );
    }

    fn groups(names: &[&str]) -> Groups {
        names.iter().map(|g| Arc::from(*g)).collect()
    }

    #[test]
    fn one_user_with_the_same_groups_is_one_shared_value() {
        let interned = Interned::default();
        let a = interned.user("alice", groups(&["staff"])).unwrap();
        // A fresh but equal group list (a federated user's, read again from the store).
        let b = interned.user("alice", groups(&["staff"])).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one allocation for both");
        let moved = interned.user("alice", groups(&["admins"])).unwrap();
        assert!(!Arc::ptr_eq(&a, &moved), "other groups: another identity");
        assert_eq!(*moved.groups, *groups(&["admins"]));
        assert_eq!(*a.groups, *groups(&["staff"]), "the old one is unchanged");
        let bob = interned.user("bob", no_groups()).unwrap();
        assert_eq!(&*bob.name, "bob");
        assert_eq!(bob.value, "bob");
        assert!(interned.user("bad\nname", no_groups()).is_none());
        let c1 = interned.client("app-1").unwrap();
        assert!(Arc::ptr_eq(&c1, &interned.client("app-1").unwrap()));
        let s1 = interned.scopes_value("READ WRITE").unwrap();
        assert!(Arc::ptr_eq(
            &s1,
            &interned.scopes_value("READ WRITE").unwrap()
        ));
        assert_eq!(*s1, "READ WRITE");
    }

    #[test]
    fn a_value_goes_with_its_last_holder_and_the_table_does_not_grow_without_bound() {
        let interned = Interned::default();
        let first = interned.client("app-0").unwrap();
        let weak = Arc::downgrade(&first);
        drop(first);
        assert!(weak.upgrade().is_none(), "the table does not keep it alive");
        let fresh = interned.client("app-0").unwrap();
        assert_eq!(&*fresh.id, "app-0", "made again when asked for again");
        let kept: Vec<_> = (0..10)
            .map(|i| interned.client(&format!("kept-{i}")).unwrap())
            .collect();
        for i in 0..10_000 {
            // Each dropped at once, as a token's principal leaving the cache drops its app.
            interned.client(&format!("gone-{i}")).unwrap();
        }
        let (_, clients, _) = interned.len();
        assert!(clients < 200, "swept as it grows: {clients} names");
        for (i, k) in kept.iter().enumerate() {
            let again = interned.client(&format!("kept-{i}")).unwrap();
            assert!(Arc::ptr_eq(k, &again), "live values survive a sweep");
        }
    }
}
