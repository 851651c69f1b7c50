//! One client connection: HTTP/1.1 or HTTP/2 (RFC 9112 / RFC 9113; hyper's own connection
//! when TLS's ALPN has said which, hyper-util's auto builder when the first bytes must tell)
//! with header limits; the waits a client may make (its first request and each request head
//! within `header_read_timeout`, the pause between requests within `idle_timeout`); a graceful
//! close when the gateway drains; and a lingering close (RFC 9112 §9.6) so that an early answer
//! reaches a client still sending.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::body::{Body, BoxError};
use crate::config::ServerConfig;

pub use crate::proxy::pipeline::ConnInfo;

/// What the connection is doing, for its deadlines: requests in flight, when the last one
/// ended, whether a request head has begun to arrive, and the alarm that wakes the connection's
/// task when a deadline may have moved.
pub struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    last_millis: AtomicU64,
    /// Whether any request has begun on the connection.
    started: AtomicBool,
    /// When bytes of a request head began to arrive with nothing in flight (milliseconds since
    /// `epoch`, plus one), or 0.
    head_millis: AtomicU64,
    /// HTTP/2: bytes between requests are frames (pings, window updates), not a head.
    multiplexed: AtomicBool,
    /// Rung by the idle timer, the drain signal and the start of a head.
    rung: AtomicBool,
    task: AtomicWaker,
    /// The last request carried a body, which may still be read after its response has ended
    /// (a proxied upload the upstream answered early): hyper is then still inside that request,
    /// and the connection is not parked until a request without a body follows.
    body_open: AtomicBool,
    /// Something was written to the client and not flushed since: hyper's write buffer or
    /// rustls's may still hold part of a response (a client that does not read).
    unflushed: AtomicBool,
    /// The last read from the client found nothing to read (no decrypted byte waits in rustls).
    read_waiting: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_millis: AtomicU64::new(0),
            started: AtomicBool::new(false),
            head_millis: AtomicU64::new(0),
            multiplexed: AtomicBool::new(false),
            rung: AtomicBool::new(true),
            task: AtomicWaker::new(),
            body_open: AtomicBool::new(false),
            unflushed: AtomicBool::new(false),
            read_waiting: AtomicBool::new(false),
        })
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_millis.store(self.millis(), Ordering::Relaxed);
    }

    /// Marks a request as started; the guard ends it when the response body is done. No
    /// clock read here: while a request is in flight the connection is not idle, and the idle
    /// time counts from when the last one ended.
    /// Whether the request has a body is not known here: the connection counts as inside a
    /// request with a body until a later request says otherwise ([`Activity::begin_request`]).
    pub fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_millis.store(0, Ordering::Relaxed);
        self.started.store(true, Ordering::Relaxed);
        self.body_open.store(true, Ordering::Relaxed);
        ActivityGuard(self.clone())
    }

    /// [`Activity::begin`] for `req`, noting whether it carries a body: only after a request
    /// without one can its connection be parked ([`serve_http1_parking`]).
    pub fn begin_request<B: hyper::body::Body>(
        self: &Arc<Self>,
        req: &http::Request<B>,
    ) -> ActivityGuard {
        let guard = self.begin();
        self.body_open
            .store(!req.body().is_end_stream(), Ordering::Relaxed);
        guard
    }

    /// The connection speaks HTTP/2 (ALPN said so, or the client sent the preface).
    pub fn set_multiplexed(&self) {
        self.multiplexed.store(true, Ordering::Relaxed);
    }

    /// Bytes arrived from the client. With nothing in flight on an HTTP/1 connection they begin
    /// a request head, which must be complete within `header_read_timeout`.
    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_millis.load(Ordering::Relaxed) == 0
            && !self.multiplexed.load(Ordering::Relaxed)
        {
            self.head_millis
                .store(self.millis().saturating_add(1), Ordering::Relaxed);
            // Read inside the connection's own poll: it looks at the alarm before it sleeps.
            self.rung.store(true, Ordering::Release);
        }
    }

    /// What the connection waits for now, and until when.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let at = |millis: u64| self.epoch + Duration::from_millis(millis);
        let head = self.head_millis.load(Ordering::Relaxed);
        let multiplexed = self.multiplexed.load(Ordering::Relaxed);
        if !self.started.load(Ordering::Relaxed) {
            // Nothing asked yet: the slow-client bound, from the connection's first moment.
            let since = if head == 0 || multiplexed {
                0
            } else {
                head - 1
            };
            return Some((at(since) + limits.header_read, Expiry::FirstRequest));
        }
        if head != 0 && !multiplexed {
            return Some((at(head - 1) + limits.header_read, Expiry::Head));
        }
        let last = self.last_millis.load(Ordering::Relaxed);
        Some((at(last) + limits.idle, Expiry::Idle))
    }

    /// Whether and when a connection waiting between requests (its last response ended, no
    /// byte of a next one arrived) may be parked: [`PARK_DELAY`] after its last response ended,
    /// once that response is flushed and the last read found nothing.
    fn parking(&self) -> Parking {
        if self.body_open.load(Ordering::Relaxed) {
            return Parking::Never;
        }
        if self.unflushed.load(Ordering::Relaxed) || !self.read_waiting.load(Ordering::Relaxed) {
            return Parking::Later;
        }
        let last = self.last_millis.load(Ordering::Relaxed);
        Parking::At(self.epoch + Duration::from_millis(last) + PARK_DELAY)
    }
}

/// How long a kept-alive HTTP/1.1 connection over TLS waits without a request before it is
/// parked: its hyper connection (8 KiB read and 8 KiB write buffer, the dispatcher) is taken
/// apart and only the TLS stream is kept until the client sends again. A client that sends
/// its next request within a second (a page's resources, an API client's loop) never pays
/// the rebuild; one that pauses longer costs 16 KiB less while it waits. It is parked between
/// one and two delays after its last response: the check rides on the connection's one timer.
pub const PARK_DELAY: Duration = Duration::from_secs(1);

/// Whether a connection between requests may be parked.
enum Parking {
    /// Not while the last request's body may still be read.
    Never,
    /// Not yet: a response is still being flushed, or a read has not come up empty.
    Later,
    /// From this moment on.
    At(Instant),
}

impl Wake for Activity {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.rung.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// The bounds on a connection that waits: for its first request or the rest of a request
/// head (`server.header_read_timeout`, slowloris), and between requests
/// (`server.idle_timeout`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_read: Duration,
    pub idle: Duration,
}

/// Which wait ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    FirstRequest,
    Head,
    Idle,
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

/// The connection builders with the configured limits: one that tells HTTP/1.1 from HTTP/2 by
/// the first bytes (plain listeners), and hyper's own for a protocol TLS's ALPN has chosen.
/// The auto builder first reads the bytes that tell the protocol apart and hands them back
/// ahead of the stream, which made hyper's 8 KiB read buffer grow to 16 KiB on every
/// connection (a short first read, then a reservation of a full buffer more): 8 KiB more per
/// idle connection, so TLS connections skip it (docs/performance-notes.md).
///
/// hyper's own header-read timer is off: it starts only once a first byte has come, and it
/// also cuts keep-alive connections waiting between requests; [`serve`] keeps both bounds
/// instead.
pub struct Builders {
    pub auto: auto::Builder<TokioExecutor>,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

/// Which protocol a connection speaks, when it is known before its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Not known: the first bytes tell (HTTP/2's preface or an HTTP/1 request line).
    Sniff,
    Http1,
    Http2,
}

pub fn builders(server: &ServerConfig) -> Builders {
    let max_buf = server.max_header_bytes.max(8192);
    let max_header_list = u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX);
    let mut auto = auto::Builder::new(TokioExecutor::new());
    auto.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(max_buf)
        .max_headers(server.max_headers)
        .keep_alive(true);
    auto.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(max_header_list)
        .max_concurrent_streams(250)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(max_buf)
        .max_headers(server.max_headers)
        .keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(max_header_list)
        .max_concurrent_streams(250)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    Builders {
        auto,
        http1: h1,
        http2: h2,
    }
}

/// Serves one connection until the client leaves, a wait runs out, or the gateway drains.
/// `activity` is the one the connection's [`ClientIo`] reports to.
pub async fn serve<I, S>(
    io: I,
    protocol: Protocol,
    builders: &Builders,
    service: S,
    activity: Arc<Activity>,
    limits: Limits,
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
    let io = TokioIo::new(io);
    match protocol {
        // Boxed, like the others: every connection's task would carry the largest state inline
        // (the TLS listener's HTTP/1.1 connections go through [`serve_http1_parking`]).
        Protocol::Http1 => {
            let conn = builders.http1.serve_connection(io, service).with_upgrades();
            Box::pin(watch_over(
                conn,
                |c| c.graceful_shutdown(),
                activity,
                limits,
                shutdown,
            ))
            .await
        }
        // Boxed, like the sniffing connection: the HTTP/2 and auto connections' state is
        // kilobytes larger than HTTP/1's, and every connection's task would carry the largest.
        Protocol::Http2 => {
            let conn = builders.http2.serve_connection(io, service);
            Box::pin(watch_over(
                conn,
                |c| c.graceful_shutdown(),
                activity,
                limits,
                shutdown,
            ))
            .await
        }
        Protocol::Sniff => {
            let conn = builders.auto.serve_connection_with_upgrades(io, service);
            Box::pin(watch_over(
                conn,
                |c| c.graceful_shutdown(),
                activity,
                limits,
                shutdown,
            ))
            .await
        }
    }
}

/// Drives `conn` and closes it (gracefully with `graceful`, or at once) when a wait runs out or
/// the gateway drains.
async fn watch_over<C, E>(
    conn: C,
    graceful: impl Fn(Pin<&mut C>),
    activity: Arc<Activity>,
    limits: Limits,
    shutdown: CancellationToken,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    // One timer and one drain waiter for the connection's whole life, polled only when the
    // alarm rang (the timer fired, the drain began or a head started), not on every wake-up of
    // the connection: making them afresh, or even polling them, per wake-up cost a timer-wheel
    // insertion and removal and a waiter-list lock several times per request. The timer is
    // re-armed, when it rings, to the deadline as it then stands.
    let mut watch = Watch::new(activity, limits, shutdown, false);
    let alarm_waker = Waker::from(watch.activity.clone());
    let mut closing = false;
    let result = poll_fn(|cx| {
        watch.activity.task.register(cx.waker());
        loop {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            match watch.verdict(&alarm_waker) {
                Verdict::Wait | Verdict::Park => return Poll::Pending,
                // A client that has not finished a request head gets no more time: hyper's
                // graceful close would wait for that request (SECURITY.md, slowloris).
                Verdict::Abort => return Poll::Ready(None),
                Verdict::Close if closing => return Poll::Pending,
                Verdict::Close => {
                    closing = true;
                    graceful(conn.as_mut());
                }
            }
        }
    })
    .await;
    log_end(result);
}

/// A client's TLS stream, as the gateway's TLS listener accepts it.
pub type TlsIo = tokio_rustls::server::TlsStream<ClientIo>;

/// Serves an HTTP/1.1 connection over TLS like [`serve`], parking it whenever it has waited
/// [`PARK_DELAY`] between requests: hyper's connection is taken apart (`into_parts`), its
/// buffers are freed, and the TLS stream alone waits for the socket to become readable; then a
/// fresh hyper connection takes over, first reading whatever bytes the old one had read and
/// not parsed. A connection is parked only when hyper is between messages and holds nothing
/// unsent: no request in flight (a response counts until its body's end), no byte of a next
/// request head seen, the last request without a body, everything written flushed and the last
/// read come up empty. Parked, it still closes on `idle_timeout` and on the drain, with TLS's
/// close_notify; `parked` counts the connections parked now.
pub async fn serve_http1_parking<S>(
    tls: TlsIo,
    builders: &Builders,
    service: S,
    activity: Arc<Activity>,
    limits: Limits,
    shutdown: CancellationToken,
    parked: prometheus::IntGauge,
) where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<TrackedBody>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut watch = Watch::new(activity.clone(), limits, shutdown, true);
    let alarm_waker = Waker::from(activity.clone());
    let mut io = ParkableIo {
        tls,
        replay: Bytes::new(),
        activity,
    };
    let mut service = service;
    loop {
        // Boxed: hyper's connection state (about 1.9 KiB) held inline would stay part of the
        // task, parked or not.
        let mut conn = Box::new(
            builders
                .http1
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
        );
        let mut closing = false;
        let driven = poll_fn(|cx| {
            watch.activity.task.register(cx.waker());
            loop {
                if let Poll::Ready(result) = Pin::new(&mut *conn).poll(cx) {
                    return Poll::Ready(Some(Some(result)));
                }
                match watch.verdict(&alarm_waker) {
                    Verdict::Wait => return Poll::Pending,
                    Verdict::Park if closing => return Poll::Pending,
                    Verdict::Park => return Poll::Ready(None),
                    Verdict::Abort => return Poll::Ready(Some(None)),
                    Verdict::Close if closing => return Poll::Pending,
                    Verdict::Close => {
                        closing = true;
                        Pin::new(&mut *conn).graceful_shutdown();
                    }
                }
            }
        })
        .await;
        if let Some(ended) = driven {
            return log_end(ended);
        }
        // Upgraded connections end above; `None` cannot come here.
        let Some(parts) = (*conn).into_parts() else {
            return;
        };
        io = parts.io.into_inner();
        service = parts.service;
        if !parts.read_buf.is_empty() {
            // Bytes of a next request hyper had read but not parsed (the start of a head that
            // came with the previous request): they are a head begun, served at once.
            tracing::debug!(
                bytes = parts.read_buf.len(),
                "unparked at once: replaying a head begun"
            );
            io.replay = parts.read_buf;
            io.activity.bytes_arrived();
            continue;
        }
        drop(parts.read_buf);
        parked.inc();
        let readable = poll_fn(|cx| {
            watch.activity.task.register(cx.waker());
            if io.tls.get_ref().0.poll_readable(cx).is_ready() {
                return Poll::Ready(true);
            }
            match watch.verdict(&alarm_waker) {
                Verdict::Wait | Verdict::Park => Poll::Pending,
                Verdict::Close | Verdict::Abort => Poll::Ready(false),
            }
        })
        .await;
        parked.dec();
        if !readable {
            // close_notify, then the lingering close, as hyper's graceful close does.
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut io.tls).await;
            return;
        }
    }
}

/// The IO a parking connection's hyper connection runs on: the TLS stream, the bytes a
/// previous hyper connection had read and not parsed (given back first, in order), and the
/// flush and read state [`Activity::parking`] looks at.
struct ParkableIo {
    tls: TlsIo,
    replay: Bytes,
    activity: Arc<Activity>,
}

impl AsyncRead for ParkableIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay.split_to(n));
            if this.replay.is_empty() {
                // Let go of the old connection's read buffer.
                this.replay = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut this.tls).poll_read(cx, buf);
        this.activity
            .read_waiting
            .store(polled.is_pending(), Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for ParkableIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.activity.unflushed.store(true, Ordering::Relaxed);
        Pin::new(&mut this.tls).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.activity.unflushed.store(true, Ordering::Relaxed);
        Pin::new(&mut this.tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }

    /// hyper flushes its IO only once its own write buffer is empty: a flush that completes
    /// means nothing of a response is held on the gateway's side.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tls).poll_flush(cx);
        if let Poll::Ready(Ok(())) = polled {
            this.activity.unflushed.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_shutdown(cx)
    }
}

fn log_end<E: std::fmt::Display>(result: Option<Result<(), E>>) {
    match result {
        Some(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
        None => tracing::debug!("connection closed: no request head in time"),
        Some(Ok(())) => {}
    }
}

/// What to do with a connection now.
enum Verdict {
    Wait,
    /// Close once what is in flight is answered (drain, or idle between requests).
    Close,
    /// Close at once: a request head, or the first request, did not come in time.
    Abort,
    /// Waiting between requests long enough: park (only where [`Watch::parks`]).
    Park,
}

/// What closes a connection other than the client: the gateway draining, or a wait that ran
/// out.
struct Watch {
    timer: Pin<Box<tokio::time::Sleep>>,
    draining: Pin<Box<WaitForCancellationFutureOwned>>,
    activity: Arc<Activity>,
    limits: Limits,
    /// Whether the connection may be parked between requests.
    parks: bool,
}

impl Watch {
    fn new(
        activity: Arc<Activity>,
        limits: Limits,
        shutdown: CancellationToken,
        parks: bool,
    ) -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep(limits.idle)),
            draining: Box::pin(shutdown.cancelled_owned()),
            activity,
            limits,
            parks,
        }
    }

    /// Looks at the timer and the drain signal only if the alarm rang since the last look.
    fn verdict(&mut self, alarm_waker: &Waker) -> Verdict {
        if !self.activity.rung.swap(false, Ordering::AcqRel) {
            return Verdict::Wait;
        }
        let mut cx = Context::from_waker(alarm_waker);
        let draining = self.draining.as_mut().poll(&mut cx).is_ready();
        loop {
            let now = Instant::now();
            let mut park = false;
            match self.activity.deadline(&self.limits) {
                Some((deadline, expiry)) if deadline <= now => {
                    let multiplexed = self.activity.multiplexed.load(Ordering::Relaxed);
                    return match expiry {
                        // HTTP/2 has GOAWAY for both; an HTTP/1 head in progress must go.
                        Expiry::FirstRequest | Expiry::Head if !multiplexed => Verdict::Abort,
                        _ => Verdict::Close,
                    };
                }
                Some((deadline, expiry)) => {
                    // Never later than one idle period from now: the deadline may move earlier
                    // without the alarm ringing (a request that began and ended within a long
                    // header_read_timeout), and this look catches it.
                    let mut wake = deadline.min(now + self.limits.idle);
                    if self.parks {
                        match expiry {
                            Expiry::Idle => match self.activity.parking() {
                                Parking::At(at) if at <= now => park = true,
                                Parking::At(at) => wake = wake.min(at),
                                Parking::Later => wake = wake.min(now + PARK_DELAY),
                                Parking::Never => {}
                            },
                            // A head is arriving (or the first one awaited): look again once
                            // it may have been answered, as no alarm rings when it has.
                            Expiry::Head | Expiry::FirstRequest => {
                                wake = wake.min(now + PARK_DELAY)
                            }
                        }
                    }
                    if self.timer.deadline() != wake.into() {
                        self.timer.as_mut().reset(wake.into());
                    }
                }
                None => {
                    // A request in flight: a parking connection looks again soon after it ends.
                    let every = if self.parks {
                        PARK_DELAY
                    } else {
                        self.limits.idle
                    };
                    self.timer.as_mut().reset((now + every).into());
                }
            }
            if draining {
                return Verdict::Close;
            }
            // Polled even when parking: the timer, armed for the idle deadline, must ring a
            // parked connection too.
            if self.timer.as_mut().poll(&mut cx).is_pending() {
                return if park { Verdict::Park } else { Verdict::Wait };
            }
        }
    }
}

/// How long and how much a closing connection keeps reading what the client still sends, so
/// that an answer given before the request body was read (413, 408) is not destroyed by the
/// reset that closing a socket with unread data causes (nginx's `lingering_close`).
const LINGER_QUIET: Duration = Duration::from_secs(1);
const LINGER_MAX: Duration = Duration::from_secs(5);
const LINGER_BYTES: usize = 16 << 20;

/// A client's TCP stream: reports arriving bytes to the connection's [`Activity`] and closes
/// with a bounded lingering read.
pub struct ClientIo {
    tcp: TcpStream,
    activity: Arc<Activity>,
    first_read: bool,
    linger: Linger,
}

enum Linger {
    Open,
    Draining {
        quiet: Pin<Box<tokio::time::Sleep>>,
        until: Instant,
        discarded: usize,
    },
    Done,
}

impl ClientIo {
    /// `sniff_h2`: on a listener without ALPN, recognise HTTP/2's preface in the first bytes.
    pub fn new(tcp: TcpStream, activity: Arc<Activity>, sniff_h2: bool) -> Self {
        Self {
            tcp,
            activity,
            first_read: sniff_h2,
            linger: Linger::Open,
        }
    }

    /// Ready when the socket has bytes (or an error, or the client's close) to read; touches
    /// no buffer.
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.tcp.poll_read_ready(cx)
    }

    /// Reads and discards until the client closes, falls quiet, or the bounds are reached.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut scratch = [0u8; 4096];
        loop {
            let Linger::Draining {
                quiet,
                until,
                discarded,
            } = &mut self.linger
            else {
                return Poll::Ready(());
            };
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.tcp).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    *discarded += buf.filled().len();
                    if *discarded > LINGER_BYTES || Instant::now() >= *until {
                        self.linger = Linger::Done;
                    } else {
                        quiet.as_mut().reset((Instant::now() + LINGER_QUIET).into());
                    }
                }
                Poll::Ready(_) => self.linger = Linger::Done,
                Poll::Pending => {
                    if quiet.as_mut().poll(cx).is_ready() {
                        self.linger = Linger::Done;
                    } else {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

/// Whether a connection's first bytes are HTTP/2's preface (RFC 9113 §3.4). A first read may
/// hold only part of it: a prefix of four bytes or more (`PRI `, no HTTP/1 method gatehouse
/// serves) counts.
fn opens_http2(first: &[u8]) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let first = &first[..first.len().min(PREFACE.len())];
    first.len() >= 4 && PREFACE.starts_with(first)
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() > before
        {
            if this.first_read {
                this.first_read = false;
                if opens_http2(&buf.filled()[before..]) {
                    this.activity.set_multiplexed();
                }
            }
            this.activity.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    /// Sends FIN, then lingers (see [`LINGER_QUIET`]) before the socket may be dropped.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Linger::Open = this.linger {
            std::task::ready!(Pin::new(&mut this.tcp).poll_shutdown(cx))?;
            this.linger = Linger::Draining {
                quiet: Box::pin(tokio::time::sleep(LINGER_QUIET)),
                until: Instant::now() + LINGER_MAX,
                discarded: 0,
            };
        }
        this.poll_linger(cx).map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::opens_http2;

    #[test]
    fn the_http2_preface_is_recognised_from_its_first_bytes() {
        assert!(opens_http2(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04"
        ));
        assert!(opens_http2(b"PRI * HT"), "a preface split across reads");
        assert!(!opens_http2(b"PRI"), "too short to tell");
        assert!(!opens_http2(b"GET / HTTP/1.1\r\n"));
        assert!(!opens_http2(b"PRIX"));
    }
}
