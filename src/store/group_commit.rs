//! Group commit of the token grants (SPEC §3.1, §6): code redemptions and refresh rotations
//! are queued to the writer tasks of the store handle (one for SQLite, which has one writer at
//! a time anyway; a few for PostgreSQL, whose round trips would otherwise leave one connection
//! waiting), and a writer runs everything waiting as one transaction and sends each caller its
//! outcome only after that transaction committed. With
//! a durable commit (SQLite `synchronous=FULL`, PostgreSQL `synchronous_commit=on`) concurrent
//! grants then share one disk flush instead of queueing for one each, as a database's own WAL
//! writer does.
//!
//! The rules do not bend: the items of a batch run one after another inside the transaction,
//! each with the same conditional `UPDATE`s as a transaction of its own, so a later item sees
//! what an earlier one wrote (a code redeemed by an earlier item is `AlreadyUsed`, a token
//! rotated by an earlier item is `AlreadyRotated`): exactly what one transaction per grant
//! would have decided in that order. An outcome that refuses (a lost race, an expired code)
//! changes nothing. If a statement fails, the batch is rolled back and its items are run
//! again one transaction each, so one failing item never fails the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    Engine, Inner, NewRefreshToken, RedeemOutcome, RotateOutcome, SecretHash, StoreError,
    StoreErrorKind,
};

/// Most grants committed together; more wait for the next batch.
const MAX_BATCH: usize = 256;
/// Writers on SQLite (one writer at a time is SQLite's own rule) and on PostgreSQL (batches
/// in flight at once; row locks keep their grants apart, and PostgreSQL flushes concurrent
/// commits together).
pub(crate) const SQLITE_WRITERS: usize = 1;
pub(crate) const POSTGRES_WRITERS: usize = 4;
/// Grants waiting for the writer before callers wait to queue (backpressure).
const QUEUE: usize = 4096;

/// One grant's write, with where its outcome goes.
pub(crate) enum GrantWrite {
    Redeem {
        hash: SecretHash,
        first: NewRefreshToken,
        now: SystemTime,
        reply: oneshot::Sender<Result<RedeemOutcome, StoreError>>,
    },
    Rotate {
        old: SecretHash,
        client_id: String,
        new: NewRefreshToken,
        now: SystemTime,
        reply: oneshot::Sender<Result<RotateOutcome, StoreError>>,
    },
}

/// What one applied [`GrantWrite`] decided (sent to its caller once committed).
// Made and matched once per grant, as the outcomes themselves are (see `store/model.rs`).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Decided {
    Redeem(RedeemOutcome),
    Rotate(RotateOutcome),
}

impl GrantWrite {
    /// Sends the committed outcome, or the error, to the caller (who may have gone).
    pub(crate) fn answer(self, result: Result<Decided, StoreError>) {
        match (self, result) {
            (Self::Redeem { reply, .. }, Ok(Decided::Redeem(o))) => drop(reply.send(Ok(o))),
            (Self::Rotate { reply, .. }, Ok(Decided::Rotate(o))) => drop(reply.send(Ok(o))),
            (Self::Redeem { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
            (Self::Rotate { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
            (Self::Redeem { reply, .. }, Ok(_)) => {
                drop(reply.send(Err(StoreError::internal("group commit: outcome mismatch"))))
            }
            (Self::Rotate { reply, .. }, Ok(_)) => {
                drop(reply.send(Err(StoreError::internal("group commit: outcome mismatch"))))
            }
        }
    }
}

/// The queue into a store's grant writer.
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<GrantWrite>,
    writers: usize,
    /// Batches the writer has run (committed or not).
    batches: AtomicU64,
}

impl GroupCommit {
    /// Starts `writers` writers of the store behind `inner`, taking turns at the queue. They
    /// end when every handle is gone.
    pub(crate) fn start(inner: Weak<Inner>, writers: usize) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let writers = writers.max(1);
        for _ in 0..writers {
            tokio::spawn(writer(inner.clone(), rx.clone()));
        }
        Self {
            queue,
            writers,
            batches: AtomicU64::new(0),
        }
    }

    pub(crate) fn writers(&self) -> usize {
        self.writers
    }

    pub(crate) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Queues `write` and waits for its committed outcome.
    pub(crate) async fn submit<T>(
        &self,
        write: GrantWrite,
        outcome: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let gone = || StoreError::new(StoreErrorKind::Unavailable, "the grant writer has stopped");
        self.queue.send(write).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }
}

/// Takes everything waiting (up to [`MAX_BATCH`]) and commits it as one transaction; the
/// grants that arrive meanwhile form the next batch (another writer's, if there are several).
async fn writer(inner: Weak<Inner>, rx: Arc<Mutex<mpsc::Receiver<GrantWrite>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if rx.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let Some(inner) = inner.upgrade() else { return };
        let writes = std::mem::take(&mut batch);
        inner.grants.batches.fetch_add(1, Ordering::Relaxed);
        match &inner.engine {
            Engine::Sqlite(e) => e.write_grants(writes).await,
            Engine::Postgres(e) => e.write_grants(writes).await,
        }
    }
}
