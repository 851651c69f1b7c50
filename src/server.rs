//! The running gateway: `App::build` binds every listener (public TLS, optional plain and
//! redirect listeners, admin) and `App::run` serves them until shutdown, then drains in-flight
//! requests within `server.shutdown_grace`.

pub mod admin;
pub mod conn;
pub mod dispatch;
pub mod endpoints;
pub mod files;
pub mod reload;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::forward::ForwarderError;
use conn::{ConnInfo, TrackedBody};
pub use reload::{ReloadError, Snapshot};

/// Why the gateway could not start (exit code 1, one line on stderr).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A file the config names does not load: a config problem (exit 2), located at its key.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error(transparent)]
    Upstream(#[from] ForwarderError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("oauth.signing_keys: {0}")]
    Keys(#[from] crate::auth::keys::KeyError),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Directory(String),
    #[error("{0}")]
    Apps(String),
}

/// Everything a request handler needs, shared by every connection.
pub struct Gateway {
    /// The config the process started with: listeners, limits and timeouts come from here.
    pub config: Config,
    /// What a reload replaces; each request loads it once.
    pub live: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    pub store: crate::store::Store,
    pub clock: crate::clock::Clock,
    pub keys: Arc<crate::auth::keys::SigningKeys>,
    pub auth: Arc<crate::auth::Authenticator>,
    /// The authorization server's per-replica caches (refresh grace answers, CORS origins).
    pub oauth: crate::oauth::caches::OAuthCaches,
    /// Login throttling and bounded password verification (SPEC §3.2).
    pub login: crate::auth::throttle::LoginGuard,
    /// The public listener's TLS settings; its certificates come from `certs`.
    tls: Arc<rustls::ServerConfig>,
    /// The certificates served, swapped by a reload and by the file watch (`server.tls.watch`).
    certs: Arc<tls::CertStore>,
    listening: AtomicBool,
}

/// How often the certificate and key files are looked at (`server.tls.watch`): a change is
/// served within this plus the time a half-written file takes to complete (SPEC §7.5: 5 s).
const CERT_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How long `/readyz` waits for the store.
const READINESS_STORE_BOUND: std::time::Duration = std::time::Duration::from_millis(700);

impl Gateway {
    /// Ready when the listeners are serving, the gateway is not draining, and the store answers.
    pub async fn readiness(&self) -> Result<(), &'static str> {
        if !self.listening.load(Ordering::Relaxed) {
            return Err("listeners are not serving");
        }
        // Probes give up after 1 s (Kubernetes' default): answer within it, whatever the store
        // does, rather than let a store that hangs make the probe time out.
        match tokio::time::timeout(READINESS_STORE_BOUND, self.store.health()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the store does not answer");
                Err("the store does not answer")
            }
            Err(_) => {
                tracing::warn!(bound = ?READINESS_STORE_BOUND, "readiness: the store did not answer in time");
                Err("the store does not answer")
            }
        }
    }
}

struct Listeners {
    public: TcpListener,
    plain: Option<TcpListener>,
    redirect: Option<TcpListener>,
    admin: TcpListener,
}

/// A gateway whose listeners are bound; `run` serves them.
pub struct App {
    gateway: Arc<Gateway>,
    listeners: Listeners,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { what, addr, source })
}

async fn bind_optional(
    what: &'static str,
    addr: Option<SocketAddr>,
) -> Result<Option<TcpListener>, StartupError> {
    match addr {
        Some(addr) => Ok(Some(bind(what, addr).await?)),
        None => Ok(None),
    }
}

impl App {
    /// Loads certificates, prepares the upstream clients and binds every listener.
    pub async fn build(config: Config) -> Result<App, StartupError> {
        let metrics = Metrics::new()?;
        let files::ConfigFiles { tls, keys } = files::load(&config)?;
        let certs = Arc::new(tls::CertStore::new(tls));
        let tls = tls::server_config_with(certs.resolver())?;
        let live = Snapshot::build(config.clone(), &metrics, None)?;
        let keys = Arc::new(keys);
        let auth = Arc::new(crate::auth::Authenticator::new(&config.auth, &metrics));
        let store = crate::store::Store::open_with_ca(
            config.store.url.expose(),
            &config.base_dir(),
            config.store.max_connections,
            config.store.tls_ca.as_deref(),
        )
        .await?;
        let clock = crate::clock::Clock::system();
        crate::apps::config_sync::sync_live(&store, &live.config, &live.directory, clock.now())
            .await
            .map_err(StartupError::Apps)?;
        crate::auth::accounts::retire_clashing_federated_users(&store, &live.config, clock.now())
            .await?;
        let listeners = Listeners {
            public: bind("server.listen", config.server.listen).await?,
            plain: bind_optional("server.plain_listen", config.server.plain_listen).await?,
            redirect: bind_optional(
                "server.http_redirect_listen",
                config.server.http_redirect_listen,
            )
            .await?,
            admin: bind("admin.listen", config.admin.listen).await?,
        };
        if config.server.plain_listen.is_some() {
            tracing::warn!(
                "server.plain_listen serves plain HTTP: use it only behind a TLS-terminating proxy on a private network"
            );
        }
        // With PostgreSQL the throttles are shared by the replicas (SPEC §3.2).
        let oauth = crate::oauth::caches::OAuthCaches::new(config.oauth.refresh_grace)
            .sharing_throttle_through(&store)
            .following(&store);
        let login = crate::auth::throttle::LoginGuard::sharing_through(&config, &store);
        let gateway = Gateway {
            live: ArcSwap::from_pointee(live),
            metrics,
            store,
            clock,
            keys,
            auth,
            oauth,
            login,
            tls,
            certs,
            listening: AtomicBool::new(false),
            config,
        };
        Ok(App {
            gateway: Arc::new(gateway),
            listeners,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        local(&self.listeners.public)
    }
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.listeners.plain.as_ref().map(local)
    }
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.listeners.redirect.as_ref().map(local)
    }
    pub fn admin_addr(&self) -> SocketAddr {
        local(&self.listeners.admin)
    }
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
    /// within `server.shutdown_grace`, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let App { gateway, listeners } = self;
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let server = &gateway.config.server;
        let limit = Arc::new(Semaphore::new(server.max_connections));
        let builder = Arc::new(conn::builders(server));
        let public = Kind::Public { tls: true };
        tracker.spawn(accept_loop(
            listeners.public,
            public,
            gateway.clone(),
            limit.clone(),
            builder.clone(),
            stop.clone(),
            tracker.clone(),
        ));
        if let Some(plain) = listeners.plain {
            let kind = Kind::Public { tls: false };
            tracker.spawn(accept_loop(
                plain,
                kind,
                gateway.clone(),
                limit.clone(),
                builder.clone(),
                stop.clone(),
                tracker.clone(),
            ));
        }
        if let Some(redirect) = listeners.redirect {
            tracker.spawn(accept_loop(
                redirect,
                Kind::Redirect,
                gateway.clone(),
                limit.clone(),
                builder.clone(),
                stop.clone(),
                tracker.clone(),
            ));
        }
        let admin_limit = Arc::new(Semaphore::new(64));
        // The admin listener outlives the drain so that /readyz can say 503 while it runs.
        let admin_stop = CancellationToken::new();
        let admin = tokio::spawn(accept_loop(
            listeners.admin,
            Kind::Admin,
            gateway.clone(),
            admin_limit,
            builder,
            admin_stop.clone(),
            TaskTracker::new(),
        ));
        gateway.auth.follow(&gateway.store, gateway.clock.clone());
        let cleanup = gateway
            .store
            .spawn_cleanup(std::time::Duration::from_secs(60), gateway.clock.clone());
        let cert_watch = gateway.certs.spawn_watch(CERT_WATCH_INTERVAL);
        let cache_sweep = gateway
            .auth
            .spawn_sweep(std::time::Duration::from_secs(60), gateway.clock.clone());
        gateway.listening.store(true, Ordering::Relaxed);
        tracing::info!(store = gateway.store.engine_name(), "gatehouse is serving");

        shutdown.await;
        gateway.listening.store(false, Ordering::Relaxed);
        tracing::info!(grace = ?gateway.config.server.shutdown_grace, "shutting down: draining in-flight requests");
        stop.cancel();
        tracker.close();
        if tokio::time::timeout(gateway.config.server.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over: closing the remaining connections");
        }
        admin_stop.cancel();
        admin.abort();
        cleanup.abort();
        cert_watch.abort();
        cache_sweep.abort();
        gateway.store.close().await;
    }
}

fn local(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

#[derive(Clone, Copy)]
enum Kind {
    Public { tls: bool },
    Redirect,
    Admin,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Public { tls: true } => "https",
            Kind::Public { tls: false } => "http",
            Kind::Redirect => "redirect",
            Kind::Admin => "admin",
        }
    }
}

/// Accepts connections while a connection slot is free, until `stop`.
async fn accept_loop(
    listener: TcpListener,
    kind: Kind,
    gateway: Arc<Gateway>,
    limit: Arc<Semaphore>,
    builder: Arc<conn::Builders>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let gauge = gateway
        .metrics
        .connections_active
        .with_label_values(&[kind.label()]);
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            permit = limit.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, listener = kind.label(), "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let slot = Arc::new(Slot::take(permit, gauge.clone()));
        let (gateway, builder, stop, conn_tracker) = (
            gateway.clone(),
            builder.clone(),
            stop.clone(),
            tracker.clone(),
        );
        tracker.spawn(async move {
            let place = Place {
                slot,
                stop,
                tracker: conn_tracker,
            };
            handle_connection(stream, peer, kind, gateway, builder, place).await;
        });
    }
}

/// A connection's share of `server.max_connections` and of the connections gauge, held by the
/// connection's task and by any tunnel it opens: released when the last of them ends.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl Slot {
    fn take(permit: tokio::sync::OwnedSemaphorePermit, gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Self {
            _permit: permit,
            gauge,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Where a connection lives: its slot, the drain signal and the tracker the drain waits on.
struct Place {
    slot: Arc<Slot>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    kind: Kind,
    gateway: Arc<Gateway>,
    builder: Arc<conn::Builders>,
    place: Place,
) {
    let server = &gateway.config.server;
    let limits = conn::Limits {
        header_read: server.header_read_timeout,
        idle: server.idle_timeout,
    };
    let activity = conn::Activity::new();
    let tls = matches!(kind, Kind::Public { tls: true });
    let io = conn::ClientIo::new(stream, activity.clone(), !tls);
    let stop = place.stop.clone();
    match kind {
        Kind::Public { tls: true } => {
            let acceptor = TlsAcceptor::from(gateway.tls.clone());
            // Boxed, like the hyper connection a parked connection gives back: held inline, its
            // state (a TLS stream's worth) would stay part of every connection's task.
            let handshake = Box::pin(tokio::time::timeout(
                server.header_read_timeout,
                acceptor.accept(io),
            ));
            let stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            // ALPN has chosen the protocol (none chosen: HTTP/1.1, RFC 7301 §3.2).
            let protocol = if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                activity.set_multiplexed();
                conn::Protocol::Http2
            } else {
                conn::Protocol::Http1
            };
            let info = ConnInfo::new(peer, "https", tunnels(&gateway, place));
            let parked = gateway.metrics.connections_parked.clone();
            let service = public_service(gateway, info, activity.clone());
            if protocol == conn::Protocol::Http1 {
                conn::serve_http1_parking(
                    stream, &builder, service, activity, limits, stop, parked,
                )
                .await;
            } else {
                conn::serve(stream, protocol, &builder, service, activity, limits, stop).await;
            }
        }
        Kind::Public { tls: false } => {
            let info = ConnInfo::new(peer, "http", tunnels(&gateway, place));
            let service = public_service(gateway, info, activity.clone());
            conn::serve(
                io,
                conn::Protocol::Sniff,
                &builder,
                service,
                activity,
                limits,
                stop,
            )
            .await;
        }
        Kind::Redirect => {
            let counted = activity.clone();
            let service = service_fn(move |req| {
                let response = admin::redirect_to_https(&gateway.config.server.public_url, &req);
                let guard = counted.begin();
                async move { Ok::<_, Infallible>(response.map(|b| TrackedBody::new(b, guard))) }
            });
            conn::serve(
                io,
                conn::Protocol::Sniff,
                &builder,
                service,
                activity,
                limits,
                stop,
            )
            .await;
        }
        Kind::Admin => {
            let counted = activity.clone();
            let service = service_fn(move |req| {
                let gateway = gateway.clone();
                let guard = counted.begin();
                async move {
                    Ok::<_, Infallible>(
                        admin::handle(&gateway, req)
                            .await
                            .map(|b| TrackedBody::new(b, guard)),
                    )
                }
            });
            conn::serve(
                io,
                conn::Protocol::Sniff,
                &builder,
                service,
                activity,
                limits,
                stop,
            )
            .await;
        }
    }
}

/// Where the connection's tunnels run: they keep its slot and end with the drain.
fn tunnels(gateway: &Gateway, place: Place) -> crate::proxy::tunnel::Tunnels {
    crate::proxy::tunnel::Tunnels::new(
        place.slot,
        place.stop,
        place.tracker,
        gateway.config.server.idle_timeout,
    )
}

fn public_service(
    gateway: Arc<Gateway>,
    info: ConnInfo,
    activity: Arc<conn::Activity>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<TrackedBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<TrackedBody>, Infallible>> + Send,
> + Send {
    let info = Arc::new(info);
    service_fn(move |req| {
        let (gateway, info) = (gateway.clone(), info.clone());
        let guard = activity.begin_request(&req);
        // Boxed: hyper keeps and moves the service future, and this one is a few KiB.
        Box::pin(async move {
            let response = dispatch::handle(&gateway, &info, req).await;
            Ok::<_, Infallible>(response.map(|b| TrackedBody::new(b, guard)))
        })
    })
}
