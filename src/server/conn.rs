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
    pub fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_millis.store(0, Ordering::Relaxed);
        self.started.store(true, Ordering::Relaxed);
        ActivityGuard(self.clone())
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
        Protocol::Http1 => {
            let conn = builders.http1.serve_connection(io, service).with_upgrades();
            watch_over(conn, |c| c.graceful_shutdown(), activity, limits, shutdown).await
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
    let mut watch = Watch {
        timer: Box::pin(tokio::time::sleep(limits.idle)),
        draining: Box::pin(shutdown.cancelled_owned()),
        activity,
        limits,
    };
    let alarm_waker = Waker::from(watch.activity.clone());
    let mut closing = false;
    let result = poll_fn(|cx| {
        watch.activity.task.register(cx.waker());
        loop {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            match watch.verdict(&alarm_waker) {
                Verdict::Wait => return Poll::Pending,
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
}

/// What closes a connection other than the client: the gateway draining, or a wait that ran
/// out.
struct Watch {
    timer: Pin<Box<tokio::time::Sleep>>,
    draining: Pin<Box<WaitForCancellationFutureOwned>>,
    activity: Arc<Activity>,
    limits: Limits,
}

impl Watch {
    /// Looks at the timer and the drain signal only if the alarm rang since the last look.
    fn verdict(&mut self, alarm_waker: &Waker) -> Verdict {
        if !self.activity.rung.swap(false, Ordering::AcqRel) {
            return Verdict::Wait;
        }
        let mut cx = Context::from_waker(alarm_waker);
        let draining = self.draining.as_mut().poll(&mut cx).is_ready();
        loop {
            let now = Instant::now();
            match self.activity.deadline(&self.limits) {
                Some((deadline, expiry)) if deadline <= now => {
                    let multiplexed = self.activity.multiplexed.load(Ordering::Relaxed);
                    return match expiry {
                        // HTTP/2 has GOAWAY for both; an HTTP/1 head in progress must go.
                        Expiry::FirstRequest | Expiry::Head if !multiplexed => Verdict::Abort,
                        _ => Verdict::Close,
                    };
                }
                Some((deadline, _)) => {
                    // Never later than one idle period from now: the deadline may move earlier
                    // without the alarm ringing (a request that began and ended within a long
                    // header_read_timeout), and this look catches it.
                    let wake = deadline.min(now + self.limits.idle);
                    if self.timer.deadline() != wake.into() {
                        self.timer.as_mut().reset(wake.into());
                    }
                }
                None => self.timer.as_mut().reset((now + self.limits.idle).into()),
            }
            if draining {
                return Verdict::Close;
            }
            if self.timer.as_mut().poll(&mut cx).is_pending() {
                return Verdict::Wait;
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
