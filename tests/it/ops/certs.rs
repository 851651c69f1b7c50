//! The listener's certificates (SPEC §7.5): several chosen by SNI (`server.tls.extra`,
//! wildcards included, the default for an unknown name or none), replaced under a running
//! gateway (`server.tls.watch`: new handshakes get the new one within 5 s, an open connection
//! goes on, a half-written file is ignored), and a reload that adds one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::harness::{ConfigDir, TestGateway};

/// Accepts whatever certificate the server presents: these tests look at which one it is.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection (HTTP/1.1) to the gateway sending `sni` (none when `None`).
async fn connect(
    gw: &TestGateway,
    sni: Option<&str>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.enable_sni = sni.is_some();
    let name = ServerName::try_from(sni.unwrap_or("localhost").to_string()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, TcpStream::connect(gw.public).await.unwrap())
        .await
        .unwrap()
}

/// The end-entity certificate a handshake with `sni` is given.
async fn presented(gw: &TestGateway, sni: Option<&str>) -> CertificateDer<'static> {
    let stream = connect(gw, sni).await;
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// One request on an open connection: the status line of the answer.
async fn request(stream: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
    stream
        .write_all(b"GET /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "the connection closed");
        answer.extend_from_slice(&buf[..n]);
    }
    // Read the rest of the body too (Content-Length), so the next answer starts clean.
    let text = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut have = body.len();
    while have < length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        have += n;
    }
    head.lines().next().unwrap().to_string()
}

/// Writes the config with `tls_extra` lines in `[server.tls]`.
fn config_with_tls(dir: &ConfigDir, tls_extra: &str) -> std::path::PathBuf {
    let path = dir.write("", "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "key = \"key.pem\"\n",
        &format!("key = \"key.pem\"\n{tls_extra}\n"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn sni_chooses_among_certificates_and_unknown_names_get_the_default() {
    let dir = ConfigDir::new();
    let (api_cert, api_key) = dir.pki.issue(&["api.example.test"]);
    let (wild_cert, wild_key) = dir.pki.issue(&["*.apps.example.test"]);
    for (name, text) in [
        ("api.pem", &api_cert),
        ("api.key", &api_key),
        ("wild.pem", &wild_cert),
        ("wild.key", &wild_key),
    ] {
        std::fs::write(dir.dir.path().join(name), text).unwrap();
    }
    let path = config_with_tls(
        &dir,
        r#"extra = [ { cert = "api.pem", key = "api.key" }, { cert = "wild.pem", key = "wild.key" } ]"#,
    );
    let default = der(&dir.pki.server_cert_pem);
    let gw = TestGateway::start_written(dir).await;

    assert_eq!(
        presented(&gw, Some("api.example.test")).await,
        der(&api_cert)
    );
    assert_eq!(
        presented(&gw, Some("API.Example.Test")).await,
        der(&api_cert),
        "names compare without case"
    );
    assert_eq!(
        presented(&gw, Some("billing.apps.example.test")).await,
        der(&wild_cert),
        "a wildcard covers one label"
    );
    assert_eq!(presented(&gw, Some("a.b.apps.example.test")).await, default);
    assert_eq!(presented(&gw, Some("unknown.example.test")).await, default);
    assert_eq!(presented(&gw, Some("localhost")).await, default);
    assert_eq!(presented(&gw, None).await, default, "no SNI: the default");

    // A client that checks the certificate against the test CA and the name is satisfied.
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(gw.dir.pki.ca_pem.as_bytes()).unwrap())
        .resolve("api.example.test", gw.public)
        .build()
        .unwrap();
    let r = client
        .get(format!(
            "https://api.example.test:{}/oauth2/jwks",
            gw.public.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A reload that adds a certificate serves it from the next handshake.
    let (new_cert, new_key) = gw.dir.pki.issue(&["new.example.test"]);
    std::fs::write(gw.dir.dir.path().join("new.pem"), &new_cert).unwrap();
    std::fs::write(gw.dir.dir.path().join("new.key"), &new_key).unwrap();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "extra = [ ",
        r#"extra = [ { cert = "new.pem", key = "new.key" }, "#,
    );
    std::fs::write(&path, text).unwrap();
    gw.gateway.reload(&path).unwrap();
    assert_eq!(
        presented(&gw, Some("new.example.test")).await,
        der(&new_cert)
    );
    assert_eq!(
        presented(&gw, Some("api.example.test")).await,
        der(&api_cert)
    );
}

/// Polls new handshakes until one is given `want`, for at most `limit`.
async fn served_within(
    gw: &TestGateway,
    sni: Option<&str>,
    want: &CertificateDer<'_>,
    limit: Duration,
) {
    let start = Instant::now();
    while presented(gw, sni).await != *want {
        assert!(
            start.elapsed() < limit,
            "new handshakes did not get the new certificate within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn replaced_files_are_served_to_new_handshakes_while_open_connections_go_on() {
    let dir = ConfigDir::new();
    let (extra_cert, extra_key) = dir.pki.issue(&["*.example.test"]);
    std::fs::write(dir.dir.path().join("extra.pem"), &extra_cert).unwrap();
    std::fs::write(dir.dir.path().join("extra.key"), &extra_key).unwrap();
    config_with_tls(
        &dir,
        r#"extra = [ { cert = "extra.pem", key = "extra.key" } ]"#,
    );
    let first = der(&dir.pki.server_cert_pem);
    let gw = TestGateway::start_written(dir).await;
    let folder = gw.dir.dir.path().to_path_buf();
    assert_eq!(presented(&gw, None).await, first);

    let mut open = connect(&gw, Some("localhost")).await;
    assert_eq!(request(&mut open).await, "HTTP/1.1 200 OK");

    // A renewal: a new certificate and a new key for the same name.
    let (second_cert, second_key) = gw.dir.pki.issue(&["localhost", "127.0.0.1"]);
    std::fs::write(folder.join("cert.pem"), &second_cert).unwrap();
    std::fs::write(folder.join("key.pem"), &second_key).unwrap();
    served_within(&gw, None, &der(&second_cert), Duration::from_secs(5)).await;
    assert_eq!(
        request(&mut open).await,
        "HTTP/1.1 200 OK",
        "the connection opened before goes on"
    );
    assert_eq!(
        open.get_ref().1.peer_certificates().unwrap()[0],
        first,
        "with the certificate it began with"
    );
    // The extra certificate, whose files did not change, is still served.
    assert_eq!(
        presented(&gw, Some("a.example.test")).await,
        der(&extra_cert)
    );

    // Half-written: the new certificate cut in the middle, then a key that is not its own.
    // Neither is served, whatever the wait; the pair in use stays.
    let (third_cert, third_key) = gw.dir.pki.issue(&["localhost"]);
    std::fs::write(folder.join("cert.pem"), &third_cert[..third_cert.len() / 2]).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(presented(&gw, None).await, der(&second_cert));
    std::fs::write(folder.join("cert.pem"), &third_cert).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        presented(&gw, None).await,
        der(&second_cert),
        "a certificate whose key is not there yet is not served"
    );
    // The key arrives: the pair is complete and served.
    std::fs::write(folder.join("key.pem"), &third_key).unwrap();
    served_within(&gw, None, &der(&third_cert), Duration::from_secs(5)).await;

    // The extra pair is watched too.
    let (extra2_cert, extra2_key) = gw.dir.pki.issue(&["*.example.test"]);
    std::fs::write(folder.join("extra.key"), &extra2_key).unwrap();
    std::fs::write(folder.join("extra.pem"), &extra2_cert).unwrap();
    served_within(
        &gw,
        Some("b.example.test"),
        &der(&extra2_cert),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(request(&mut open).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn with_watch_off_changed_files_wait_for_a_reload() {
    let dir = ConfigDir::new();
    let path = config_with_tls(&dir, "watch = false");
    let first = der(&dir.pki.server_cert_pem);
    let gw = TestGateway::start_written(dir).await;
    let (cert, key) = gw.dir.pki.issue(&["localhost"]);
    std::fs::write(gw.dir.dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(gw.dir.dir.path().join("key.pem"), &key).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(presented(&gw, None).await, first);
    gw.gateway.reload(&path).unwrap();
    assert_eq!(presented(&gw, None).await, der(&cert));
}
