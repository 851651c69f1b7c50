//! One client connection: the TLS handshake under the header-read deadline, HTTP/1.1 or HTTP/2
//! (hyper-util's auto builder, RFC 9112 / RFC 9113) with header limits, an idle watchdog that
//! closes connections with nothing in flight, and a graceful close when the gateway drains.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::body::{Body, BoxError};
use crate::config::ServerConfig;

/// What the handlers know about the connection a request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The peer's address as a header value, made once per connection.
    pub peer_value: http::HeaderValue,
    /// `"https"` for the TLS listener, `"http"` for the plain one.
    pub scheme: &'static str,
}

/// Requests in flight and the time of the last one, for the idle watchdog.
pub struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    last_millis: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_millis: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(ms, Ordering::Relaxed);
    }

    /// Marks a request as started; the guard ends it when the response body is done. No
    /// clock read here: while a request is in flight the connection is not idle, and the idle
    /// time counts from when the last one ended.
    pub fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        ActivityGuard(self.clone())
    }

    /// When the connection may be closed for idleness, or `None` while requests are in flight.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.epoch + Duration::from_millis(self.last_millis.load(Ordering::Relaxed)) + idle)
    }
}

/// Ends one request's activity when dropped.
pub struct ActivityGuard(Arc<Activity>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it is fully sent.
    pub struct TrackedBody {
        #[pin]
        inner: Body,
        guard: Option<ActivityGuard>,
    }
}

impl TrackedBody {
    pub fn new(inner: Body, guard: ActivityGuard) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The HTTP/1.1 + HTTP/2 connection builder with the configured limits.
pub fn builder(server: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_header_bytes.max(8192))
        .max_headers(server.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(250)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Serves one connection until the client leaves, it idles out, or the gateway drains.
pub async fn serve<I, S>(
    io: I,
    builder: Arc<auto::Builder<TokioExecutor>>,
    make_service: impl FnOnce(Arc<Activity>) -> S,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<TrackedBody>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let activity = Activity::new();
    let service = make_service(activity.clone());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    // One timer and one drain waiter for the connection's whole life, polled only when one of
    // them has fired (the alarm says so), not on every wake-up of the connection: making them
    // afresh, or even polling them, per wake-up cost a timer-wheel insertion and removal and a
    // waiter-list lock several times per request. The timer is re-armed, when it fires, to the
    // idle deadline as it then stands.
    let mut watch = Watch {
        idle: Box::pin(tokio::time::sleep(idle_timeout)),
        draining: Box::pin(shutdown.cancelled_owned()),
        alarm: Arc::new(Alarm {
            rung: AtomicBool::new(true),
            task: AtomicWaker::new(),
        }),
        activity,
        idle_timeout,
    };
    let alarm_waker = Waker::from(watch.alarm.clone());
    let mut closing = false;
    let result = poll_fn(|cx| {
        watch.alarm.task.register(cx.waker());
        loop {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            if closing || !watch.should_close(&alarm_waker) {
                return Poll::Pending;
            }
            closing = true;
            conn.as_mut().graceful_shutdown();
        }
    })
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// What closes a connection other than the client: the gateway draining, or idleness.
struct Watch {
    idle: Pin<Box<tokio::time::Sleep>>,
    draining: Pin<Box<WaitForCancellationFutureOwned>>,
    alarm: Arc<Alarm>,
    activity: Arc<Activity>,
    idle_timeout: Duration,
}

impl Watch {
    /// Whether the connection should now close gracefully. Looks at the timer and the drain
    /// signal only if the alarm rang since the last look; both wake the task through it.
    fn should_close(&mut self, alarm_waker: &Waker) -> bool {
        if !self.alarm.rung.swap(false, Ordering::AcqRel) {
            return false;
        }
        let mut cx = Context::from_waker(alarm_waker);
        if self.draining.as_mut().poll(&mut cx).is_ready() {
            return true;
        }
        while self.idle.as_mut().poll(&mut cx).is_ready() {
            let now = Instant::now();
            match self.activity.idle_deadline(self.idle_timeout) {
                Some(deadline) if deadline <= now => return true,
                Some(deadline) => self.idle.as_mut().reset(deadline.into()),
                None => self.idle.as_mut().reset((now + self.idle_timeout).into()),
            }
        }
        false
    }
}

/// Rung by the idle timer and the drain signal: notes that they need a look, then wakes the
/// connection's task.
struct Alarm {
    rung: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Alarm {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.rung.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, scheme: &'static str) -> Self {
        Self {
            peer,
            peer_value: crate::proxy::headers::ip_header_value(peer.ip()),
            scheme,
        }
    }
}
