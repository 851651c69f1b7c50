//! Upgraded connections (RFC 9110 §7.8, RFC 6455 WebSocket): bytes copied both ways between the
//! client and the upstream. A tunnel is still the client's connection, so it keeps the
//! connection's slot under `server.max_connections` and its place in the gauge, closes after
//! `server.idle_timeout` without a byte either way, and ends when the gateway drains (SPEC
//! §3.4).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where a connection's tunnels run: what they hold of the connection (its slot and gauge,
/// released when the last holder ends), the drain signal and the task tracker the drain waits
/// on, and the idle bound.
#[derive(Clone)]
pub struct Tunnels {
    hold: Arc<dyn Send + Sync>,
    stop: CancellationToken,
    tracker: TaskTracker,
    idle: Duration,
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels").field("idle", &self.idle).finish()
    }
}

impl Tunnels {
    /// `hold` is kept alive by every tunnel of the connection (its connection slot).
    pub fn new(
        hold: Arc<dyn Send + Sync>,
        stop: CancellationToken,
        tracker: TaskTracker,
        idle: Duration,
    ) -> Self {
        Self {
            hold,
            stop,
            tracker,
            idle,
        }
    }

    /// Runs the tunnel once both sides have switched protocols.
    pub fn open(&self, client: OnUpgrade, upstream: OnUpgrade) {
        let (hold, stop, idle) = (self.hold.clone(), self.stop.clone(), self.idle);
        self.tracker.spawn(async move {
            let _hold = hold;
            tokio::select! {
                () = run(client, upstream, idle) => {}
                () = stop.cancelled() => tracing::debug!("tunnel closed: the gateway drains"),
            }
        });
    }
}

async fn run(client: OnUpgrade, upstream: OnUpgrade, idle: Duration) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut client = Touched {
        io: TokioIo::new(client),
        started,
        last: last.clone(),
    };
    let mut upstream = Touched {
        io: TokioIo::new(upstream),
        started,
        last: last.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::select! {
        copied = copy => {
            if let Err(e) = copied {
                tracing::debug!(error = %e, "upgraded connection ended with an error");
            }
        }
        () = idle_out(started, &last, idle) => tracing::debug!("tunnel closed: idle"),
    }
}

/// Resolves once no byte has moved for `idle`.
async fn idle_out(started: Instant, last: &AtomicU64, idle: Duration) {
    loop {
        let moved = started + Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = moved + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// An upgraded stream that notes when bytes last arrived from it.
struct Touched<T> {
    io: T,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Touched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = u64::try_from(this.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            this.last.store(ms, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Touched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
