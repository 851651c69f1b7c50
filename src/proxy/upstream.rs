//! Persistent HTTP/1.1 connections to one upstream (RFC 9112 §9.3), over TCP or TLS, kept in a
//! LIFO idle pool. A connection is driven by whoever holds it: the request future while the
//! response head is awaited, then the response body until its last byte, after which it goes
//! back to the pool. A proxied request therefore never hops between tasks; this is what makes
//! the forwarding path cheaper than a pooled client that runs each connection as its own task.
//! Upgrade requests (RFC 9110 §7.8) get a fresh connection of their own, run as a task, since
//! the upgraded stream outlives the request.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant as TokioInstant, Sleep};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Most idle connections kept per upstream; more are closed when they come back.
const MAX_IDLE: usize = 1024;
/// An idle connection older than this is closed rather than reused (upstreams commonly close
/// theirs after 60–120 s; reusing one they are closing costs a failed request).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("HTTP: {0}")]
    Protocol(#[from] hyper::Error),
    #[error("the upstream closed the connection before answering")]
    Closed,
    #[error("no answer before the route's timeout")]
    TimedOut,
}

impl UpstreamError {
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect(_))
    }
}

/// Where and how to connect: host and port, and TLS (with SNI) for `https://` upstreams.
pub struct Endpoint {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The `Host` header sent upstream: the upstream's host, and its port unless the default.
    host_header: HeaderValue,
}

impl Endpoint {
    /// `tls` is the client config for `https://` upstreams, `None` for `http://`.
    pub fn new(
        authority: &http::uri::Authority,
        https: bool,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, String> {
        let default_port = if https { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let host_header = match authority.port_u16() {
            Some(p) if p != default_port => {
                HeaderValue::from_str(&format!("{}:{p}", authority.host()))
            }
            _ => HeaderValue::from_str(authority.host()),
        }
        .map_err(|_| format!("{authority}: not a valid Host header"))?;
        let tls = match (https, tls) {
            (true, Some(config)) => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| format!("{host}: not a valid TLS server name"))?;
                Some((TlsConnector::from(config), name))
            }
            (true, None) => return Err("an https upstream needs a TLS client config".into()),
            (false, _) => None,
        };
        Ok(Self {
            host,
            port,
            tls,
            host_header,
        })
    }

    async fn connect(&self) -> Result<UpstreamIo, UpstreamError> {
        let connect = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
            tcp.set_nodelay(true)?;
            match &self.tls {
                None => Ok(UpstreamIo::Plain(tcp)),
                Some((connector, name)) => {
                    let tls = connector.connect(name.clone(), tcp).await?;
                    Ok(UpstreamIo::Tls(Box::new(tls)))
                }
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(result) => result.map_err(UpstreamError::Connect),
            Err(_) => Err(UpstreamError::Connect(io::Error::new(
                io::ErrorKind::TimedOut,
                "connect timed out",
            ))),
        }
    }
}

/// A TCP or TLS stream to an upstream.
pub enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type Driver = Connection<TokioIo<UpstreamIo>, Incoming>;

/// One HTTP/1.1 connection: the handle that sends requests and the state machine that runs
/// it. Whoever owns the link polls the driver; nothing else does.
struct Link {
    sender: SendRequest<Incoming>,
    /// `None` once the connection has ended (dropping it settles any request still queued).
    driver: Option<Pin<Box<Driver>>>,
    /// One timer for all the requests the connection carries (see `poll_deadline`).
    timer: Option<Pin<Box<Sleep>>>,
}

impl Link {
    /// Polls the connection with `cx`; `false` once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(driver) = self.driver.as_mut()
            && driver.as_mut().poll(cx).is_ready()
        {
            self.driver = None;
        }
        self.driver.is_some()
    }

    /// Ready once `deadline` has passed; until then this task will be woken when it does.
    /// The connection keeps one timer for all the requests it carries, so a request costs no
    /// timer-wheel insertion and removal (a `timeout` per request costs both): moving the
    /// deadline later is a compare-and-swap in tokio, and the wheel entry, when its old time
    /// comes, is re-filed without waking anyone. A timer left armed on an idle connection keeps
    /// the waker of the last task that polled it until its deadline: one spurious wake-up then.
    fn poll_deadline(&mut self, deadline: TokioInstant, cx: &mut Context<'_>) -> Poll<()> {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    }

    /// Drives the connection until it can take a request: `Ok(false)` if it has ended,
    /// `Err(TimedOut)` if `deadline` passed first. Must be followed by `exchange` in the same
    /// poll when it returns `Ok(true)`.
    async fn ready(&mut self, deadline: TokioInstant) -> Result<bool, UpstreamError> {
        poll_fn(|cx| {
            // First a look with a no-op waker: an idle connection says it wants a request
            // without registering this task on its request channel, so sending the request
            // does not wake the task for nothing. `exchange` polls the driver with the real
            // waker before anything waits.
            if !self.drive(&mut noop_context()) {
                return Poll::Ready(Ok(false));
            }
            if let Poll::Ready(r) = self.sender.poll_ready(&mut noop_context()) {
                return Poll::Ready(Ok(r.is_ok()));
            }
            if !self.drive(cx) {
                return Poll::Ready(Ok(false));
            }
            // Only the driver makes the sender ready, and it was just polled with this task's
            // waker: whatever the sender waits for wakes this task through the driver.
            match self.sender.poll_ready(&mut noop_context()) {
                Poll::Ready(r) => Poll::Ready(Ok(r.is_ok())),
                Poll::Pending => self
                    .poll_deadline(deadline, cx)
                    .map(|()| Err(UpstreamError::TimedOut)),
            }
        })
        .await
    }
}

fn noop_context() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

struct Idle {
    link: Link,
    since: Instant,
}

/// The idle connections to one upstream.
pub struct UpstreamPool {
    endpoint: Endpoint,
    idle: Mutex<VecDeque<Idle>>,
}

/// How an exchange ended when it did not produce a response.
enum Failed {
    /// The request was never written: it may go on another connection.
    Unsent(Box<Request<Incoming>>),
    Error(hyper::Error),
    /// The connection ended without settling the request (not expected from hyper).
    Closed,
    /// The deadline passed first; the connection, in an unknown state, is dropped.
    TimedOut,
}

impl UpstreamPool {
    pub fn new(endpoint: Endpoint) -> Arc<Self> {
        let pool = Arc::new(Self {
            endpoint,
            idle: Mutex::new(VecDeque::new()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap(Arc::downgrade(&pool)));
        }
        pool
    }

    pub fn host_header(&self) -> &HeaderValue {
        &self.endpoint.host_header
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // The queue is consistent after every operation on it, so a panic elsewhere while
        // the lock was held leaves nothing to repair.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Option<Link> {
        let mut idle = self.idle();
        let newest = idle.pop_back()?;
        if newest.since.elapsed() > IDLE_TIMEOUT {
            // The newest is too old, so all of them are.
            idle.clear();
            return None;
        }
        Some(newest.link)
    }

    /// Pools `link` if it can take the next request at once. One whose request body is still
    /// being written (the upstream answered before reading it all) is closed instead: pooled,
    /// it would hold up the next request until the client finished sending (SECURITY.md
    /// "Resources"), and the upstream, having answered, needs the rest no more.
    fn put(&self, mut link: Link) {
        if !link.drive(&mut noop_context())
            || !matches!(
                link.sender.poll_ready(&mut noop_context()),
                Poll::Ready(Ok(()))
            )
        {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle {
                link,
                since: Instant::now(),
            });
        }
    }

    /// Closes the connections idle for longer than `IDLE_TIMEOUT`.
    fn close_stale(&self) {
        let mut idle = self.idle();
        while idle
            .front()
            .is_some_and(|oldest| oldest.since.elapsed() > IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
    }

    async fn open(&self) -> Result<Link, UpstreamError> {
        let io = self.endpoint.connect().await?;
        let (sender, driver) = upstream_http1().handshake(TokioIo::new(io)).await?;
        Ok(Link {
            sender,
            driver: Some(Box::pin(driver)),
            timer: None,
        })
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection or a new one, and
    /// returns the response, whose body keeps the connection until it has been read.
    /// `TimedOut` if the response head has not arrived by `deadline`.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        deadline: TokioInstant,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        loop {
            let (mut link, fresh) = match self.take() {
                Some(link) => (link, false),
                // Boxed: connecting (TLS above all) is a large future, needed only on a miss.
                None => match tokio::time::timeout_at(deadline, Box::pin(self.open())).await {
                    Ok(opened) => (opened?, true),
                    Err(_) => return Err(UpstreamError::TimedOut),
                },
            };
            if !link.ready(deadline).await? {
                if fresh {
                    return Err(UpstreamError::Connect(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "the upstream closed a new connection",
                    )));
                }
                continue;
            }
            match exchange(&mut link, req, deadline).await {
                Ok(response) => {
                    let pool = self.clone();
                    return Ok(response.map(|inner| UpstreamBody {
                        inner,
                        lease: Some((link, pool)),
                    }));
                }
                // A reused connection the upstream was closing: the request never left, so
                // it is safe to send it again.
                Err(Failed::Unsent(unsent)) if !fresh => req = *unsent,
                Err(Failed::Unsent(_) | Failed::Closed) => return Err(UpstreamError::Closed),
                Err(Failed::TimedOut) => return Err(UpstreamError::TimedOut),
                Err(Failed::Error(e)) => return Err(e.into()),
            }
        }
    }

    /// Sends an upgrade request on a connection of its own, run as a task so that the
    /// upgraded stream can be handed over once the upstream answers 101.
    pub async fn send_upgrade(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let io = self.endpoint.connect().await?;
        let (mut sender, driver) = upstream_http1().handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(e) = driver.with_upgrades().await {
                tracing::debug!(error = %e, "upstream upgrade connection ended with an error");
            }
        });
        Ok(sender.send_request(req).await?)
    }
}

/// Closes stale idle connections now and then, until the pool is gone.
async fn reap(pool: Weak<UpstreamPool>) {
    let mut tick = tokio::time::interval(IDLE_TIMEOUT / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pool.upgrade() {
            Some(pool) => pool.close_stale(),
            None => return,
        }
    }
}

/// Writes `req` on `link` and waits for the response head until `deadline`, driving the
/// connection meanwhile.
async fn exchange(
    link: &mut Link,
    req: Request<Incoming>,
    deadline: TokioInstant,
) -> Result<Response<Incoming>, Failed> {
    let mut answer = std::pin::pin!(link.sender.try_send_request(req));
    poll_fn(|cx| {
        let running = link.drive(cx);
        // The answer is only ever settled by the driver, polled just above with this task's
        // waker, or by dropping the driver once it has ended: it needs no waker of its own.
        match answer.as_mut().poll(&mut noop_context()) {
            Poll::Ready(Ok(response)) => Poll::Ready(Ok(response)),
            Poll::Ready(Err(mut e)) => Poll::Ready(Err(match e.take_message() {
                Some(unsent) => Failed::Unsent(Box::new(unsent)),
                None => Failed::Error(e.into_error()),
            })),
            Poll::Pending if !running => Poll::Ready(Err(Failed::Closed)),
            Poll::Pending => link
                .poll_deadline(deadline, cx)
                .map(|()| Err(Failed::TimedOut)),
        }
    })
    .await
}

/// An upstream response body. It drives its connection while it is read and returns the
/// connection to the pool once the body has been read to its end; a body dropped early closes
/// the connection, since the rest of its response would still be on the wire.
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<(Link, Arc<UpstreamPool>)>,
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream()
            && let Some((link, pool)) = self.lease.take()
        {
            pool.put(link);
        }
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some((link, _)) = this.lease.as_mut() else {
            return Pin::new(&mut this.inner).poll_frame(cx);
        };
        // While the connection runs, the body is only ever fed by the driver polled here with
        // this task's waker, so the body itself needs no waker of its own.
        if link.drive(cx) {
            Pin::new(&mut this.inner).poll_frame(&mut noop_context())
        } else {
            // The connection ended: what it delivered is still in the body, then its end.
            Pin::new(&mut this.inner).poll_frame(cx)
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The largest read buffer (and write queue) of an upstream connection, against hyper's default
/// of ~400 KiB: what one streaming body can hold in the gateway is bounded by this, per upstream
/// connection. 64 KiB is four TLS records of the client side. (It was tried first as the cause
/// of the ~200 MiB a large-body soak held; alone it changed nothing, 195 MiB: the cause was
/// argon2's per-login block, see `auth::password`.) Its effect on download throughput was not
/// measured.
const UPSTREAM_MAX_BUF: usize = 64 * 1024;

fn upstream_http1() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.max_buf_size(UPSTREAM_MAX_BUF);
    builder
}
