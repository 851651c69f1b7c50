//! Revocation events: a `tokio::sync::broadcast` bus per store handle, and the JSON envelope
//! carried by PostgreSQL NOTIFY so that other replicas hear them too.
//!
//! Delivery rule: a change made through this handle is broadcast locally right after its
//! transaction commits (no wait for the round trip through PostgreSQL), and with PostgreSQL it
//! is also sent with `pg_notify` inside that transaction. Each envelope names the handle that
//! sent it, and a handle's listener drops its own envelopes, so every subscriber sees each
//! event exactly once.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::StoreEvent;

/// The PostgreSQL NOTIFY channel.
pub(crate) const CHANNEL: &str = "gatehouse_revocations";

/// Events a slow subscriber may fall behind by before it sees `Lagged` (then: flush all).
const CAPACITY: usize = 4096;

/// Called synchronously for every published event, before `publish` returns.
pub type EventHook = Arc<dyn Fn(&StoreEvent) + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Events {
    tx: broadcast::Sender<StoreEvent>,
    origin: String,
    /// Applied before the change's caller gets its answer, so that a revocation the caller
    /// has seen succeed is already in force for its next request: the broadcast subscribers
    /// run on another task and may be a moment behind.
    hooks: Arc<RwLock<Vec<EventHook>>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    o: String,
    e: StoreEvent,
}

impl Events {
    pub(crate) fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self {
            tx,
            origin: super::new_id(),
            hooks: Arc::default(),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.tx.subscribe()
    }

    /// Registers `hook` for every event published from now on.
    pub(crate) fn add_hook(&self, hook: EventHook) {
        self.hooks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(hook);
    }

    /// Runs the hooks, then broadcasts to this process's subscribers (none listening is fine).
    pub(crate) fn publish(&self, events: &[StoreEvent]) {
        let hooks = self
            .hooks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for event in events {
            for hook in hooks.iter() {
                hook(event);
            }
        }
        drop(hooks);
        for event in events {
            let _ = self.tx.send(event.clone());
        }
    }

    /// The NOTIFY payload for `event`.
    pub(crate) fn encode(&self, event: &StoreEvent) -> String {
        let env = Envelope {
            o: self.origin.clone(),
            e: event.clone(),
        };
        serde_json::to_string(&env).unwrap_or_default()
    }

    /// Decodes a NOTIFY payload; `None` for our own envelopes and for garbage.
    pub(crate) fn decode_remote(&self, payload: &str) -> Option<StoreEvent> {
        match serde_json::from_str::<Envelope>(payload) {
            Ok(env) if env.o != self.origin => Some(env.e),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a malformed revocation notification");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_envelopes_are_dropped_and_others_decoded() {
        let a = Events::new();
        let b = Events::new();
        let ev = StoreEvent::GrantRevoked {
            grant_id: "g1".into(),
        };
        let payload = a.encode(&ev);
        assert_eq!(a.decode_remote(&payload), None);
        assert_eq!(b.decode_remote(&payload), Some(ev));
        assert_eq!(b.decode_remote("not json"), None);
    }

    #[test]
    fn pat_event_payload_carries_hex_hash_only() {
        let a = Events::new();
        let h = super::super::secret_hash("gh_pat_secret");
        let payload = a.encode(&StoreEvent::PatRevoked {
            id: "p1".into(),
            token_hash: h,
        });
        assert!(payload.contains(&h.to_hex()));
        assert!(!payload.contains("gh_pat_secret"));
    }
}
