//! The cheapest reverse proxy hyper allows (RFC 9112 on both sides, RFC 8446 via gatehouse's
//! own rustls config when asked, nothing else): a reference point for `benches/instructions.sh`
//! and `benches/ab.sh`, not part of gatehouse. Each client connection gets one upstream
//! connection, driven in the same task; requests go through unchanged (no header policy, no
//! routing, no timeouts, no metrics, no logs). What this costs per request is the floor under
//! any hyper-based gateway, gatehouse included; see benches/README.md.
//!
//! `cargo build --release --example hyper_floor`, then
//! `target/release/examples/hyper_floor LISTEN_ADDR UPSTREAM_ADDR [TLS_LISTEN_ADDR CERT KEY]`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: hyper_floor LISTEN_ADDR UPSTREAM_ADDR [TLS_LISTEN_ADDR CERT KEY]";

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, tls) = match args.as_slice() {
        [listen, upstream] => (listen, upstream, None),
        [listen, upstream, tls_listen, cert, key] => {
            let config = gatehouse::server::tls::server_config(Path::new(cert), Path::new(key))?;
            // HTTP/1.1 only: this proxy serves no HTTP/2.
            let mut config = Arc::unwrap_or_clone(config);
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let tls_listen: SocketAddr = tls_listen.parse()?;
            (listen, upstream, Some((tls_listen, Arc::new(config))))
        }
        _ => return Err(USAGE.into()),
    };
    let (listen, upstream): (SocketAddr, SocketAddr) = (listen.parse()?, upstream.parse()?);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            if let Some((tls_listen, config)) = tls {
                let listener = TcpListener::bind(tls_listen).await?;
                tokio::spawn(accept_loop(
                    listener,
                    upstream,
                    Some(TlsAcceptor::from(config)),
                ));
            }
            accept_loop(TcpListener::bind(listen).await?, upstream, None).await
        })
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    tls: Option<TlsAcceptor>,
) -> Result<(), BoxError> {
    loop {
        let (client, _) = listener.accept().await?;
        client.set_nodelay(true)?;
        let tls = tls.clone();
        tokio::spawn(async move {
            let proxied = match tls {
                Some(acceptor) => match acceptor.accept(client).await {
                    Ok(client) => proxy_connection(client, upstream).await,
                    Err(e) => Err(e.into()),
                },
                None => proxy_connection(client, upstream).await,
            };
            if let Err(e) = proxied {
                eprintln!("hyper_floor: {e}");
            }
        });
    }
}

async fn proxy_connection<C>(client: C, upstream: SocketAddr) -> Result<(), BoxError>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upstream = TcpStream::connect(upstream).await?;
    upstream.set_nodelay(true)?;
    let (sender, upstream_conn) =
        hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(upstream)).await?;
    // HTTP/1.1 serves one request at a time per connection, so the lock is never contended;
    // it only makes the sender shareable with the service.
    let sender: Arc<Mutex<SendRequest<Incoming>>> = Arc::new(Mutex::new(sender));
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let mut sender = sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sender.send_request(request)
    });
    let client_conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(client), service);
    tokio::select! {
        served = client_conn => served?,
        forwarded = upstream_conn => forwarded?,
    }
    Ok(())
}
