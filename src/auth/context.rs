//! What a handler of the gateway's own endpoints (SPEC §3.1–§3.3) is given for one request:
//! the services it may use — the store, the clock, the metrics, the key material, the token
//! validator and the login throttle — and one immutable snapshot of the config and the user
//! directory, taken when the request began, so that a reload changes everything or nothing for
//! a request. It gives no way to reach the listeners, the proxy or the server's own state.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use super::directory::Directory;
use super::keys::SigningKeys;
use super::providers::Providers;
use super::throttle::LoginGuard;
use super::{AuthFailure, Authenticator, Principal};
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

/// Who a request to one of the gateway's own endpoints turned out to come from, for the access
/// log (SPEC §7.5): noted where the caller is established (a bearer token, a session, a login,
/// a client authentication), never a credential itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The user (a token's or a session's subject, or who just logged in).
    pub user: Option<String>,
    /// The app: the client that authenticated at the token endpoint, or an app token's.
    pub client_id: Option<String>,
}

/// One request's view of the gateway.
pub struct Ctx<'a> {
    pub store: &'a Store,
    pub clock: &'a Clock,
    pub metrics: &'a Metrics,
    /// The keys that sign and verify the gateway's JWTs.
    pub keys: &'a SigningKeys,
    /// Bearer-token validation and its cache.
    pub auth: &'a Authenticator,
    /// Login throttling and bounded password verification (SPEC §3.2).
    pub login: &'a LoginGuard,
    /// The config as it stood when the request began.
    pub config: &'a Config,
    /// The users and scopes of that config.
    pub directory: &'a Directory,
    /// The OpenID Connect providers of that config, with what is known of each (SPEC §7.1).
    pub providers: &'a Providers,
    /// The TCP peer.
    pub peer: SocketAddr,
    pub request_id: &'a HeaderValue,
    /// Who the request came from, as far as its handler found out (for the access log).
    pub caller: std::sync::Mutex<Caller>,
}

impl Ctx<'_> {
    /// The request id, for logs and error bodies.
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }

    /// The caller behind the request's `Authorization: Bearer` (an access token or a PAT) for
    /// the gateway's own endpoints (other issuers' tokens only with `allow_management`), noted
    /// for the access log.
    pub async fn bearer(&self, headers: &HeaderMap) -> Result<Arc<Principal>, AuthFailure> {
        let now = self.clock.now();
        let accept = super::foreign::Accept::Management;
        let principal = self
            .auth
            .from_headers(headers, self.directory, self.keys, self.store, now, accept)
            .await?;
        self.note_user(principal.user());
        if let Some(client_id) = principal.client_id() {
            self.note_client(client_id);
        }
        Ok(principal)
    }

    /// Notes the request's user for the access log.
    pub fn note_user(&self, user: &str) {
        self.caller_mut().user = Some(user.to_owned());
    }

    /// Notes the request's app (an authenticated client) for the access log.
    pub fn note_client(&self, client_id: &str) {
        self.caller_mut().client_id = Some(client_id.to_owned());
    }

    /// Who the request came from, as noted so far.
    pub fn take_caller(&self) -> Caller {
        std::mem::take(&mut *self.caller_mut())
    }

    fn caller_mut(&self) -> std::sync::MutexGuard<'_, Caller> {
        self.caller
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The client's address as `server.trusted_proxies` resolves it (SPEC §3.2): the peer,
    /// or behind trusted proxies the nearest forwarded address that is not one of them.
    pub fn client_addr(&self, headers: &HeaderMap) -> IpAddr {
        let trusted = &self.config.server.trusted_proxies;
        super::throttle::client_addr(self.peer.ip(), headers, |ip| {
            crate::config::is_trusted_proxy(trusted, ip)
        })
    }
}
