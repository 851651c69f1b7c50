//! The attacker of the ID-token tests: a provider of the test's own (TLS on port 0, its own
//! discovery document, JWKS, authorization and token endpoints) that answers a login with
//! exactly the ID token a test tells it to — one with another audience, another nonce, an
//! `exp` in the past, `alg: none`, or HS256 keyed with its own public key — and whose
//! authorization endpoint may name another issuer in the callback (a mix-up). A real
//! provider never produces these; this one exists to show that gatehouse refuses them. With
//! [`Forge::Honest`] it answers as a correct provider would, which the tests use to show that
//! each refusal is about the one defect.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The ID token the token endpoint returns.
#[derive(Clone, Debug)]
pub enum Forge {
    /// A correct one: signed with the JWKS key, right issuer, audience, nonce and times.
    Honest,
    /// `aud` is another client.
    OtherAudience,
    /// `nonce` is not the one of the browser's attempt.
    WrongNonce,
    /// `iss` is another issuer.
    OtherIssuer,
    /// `exp` an hour ago.
    Expired,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256 with the provider's public key (its JWK's JSON) as the HMAC secret.
    HmacWithPublicKey,
}

#[derive(Default)]
struct Seen {
    /// The `nonce` of each `state` the authorization endpoint was sent.
    nonces: HashMap<String, String>,
}

/// The hostile provider.
pub struct Hostile {
    pub issuer: String,
    forge: Arc<Mutex<Forge>>,
    /// `iss` for the callback, when it should not be this provider's.
    callback_iss: Arc<Mutex<Option<String>>>,
}

struct Shared {
    issuer: String,
    client_id: String,
    key: EncodingKey,
    jwk: Value,
    forge: Arc<Mutex<Forge>>,
    callback_iss: Arc<Mutex<Option<String>>>,
    seen: Mutex<Seen>,
}

impl Hostile {
    /// Starts on 127.0.0.1 with `tls` (a certificate for 127.0.0.1), issuing ID tokens to
    /// `client_id`.
    pub async fn start(tls: Arc<rustls::ServerConfig>, client_id: &str) -> Self {
        Self::start_on(tls, client_id, 0).await
    }

    /// [`Hostile::start`] on a chosen port (0: any).
    pub async fn start_on(tls: Arc<rustls::ServerConfig>, client_id: &str, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("https://127.0.0.1:{}", addr.port());
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = EncodingKey::from_ec_der(&pair.serialize_der());
        let raw = pair.public_key_raw();
        assert_eq!(raw.len(), 65, "an uncompressed P-256 point");
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "evil-1",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        });
        let forge = Arc::new(Mutex::new(Forge::Honest));
        let callback_iss = Arc::new(Mutex::new(None));
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            client_id: client_id.to_owned(),
            key,
            jwk,
            forge: forge.clone(),
            callback_iss: callback_iss.clone(),
            seen: Mutex::new(Seen::default()),
        });
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await
                    else {
                        return;
                    };
                    let service = service_fn(move |req| answer(req, shared.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            issuer,
            forge,
            callback_iss,
        }
    }

    /// What the next token response holds.
    pub fn forge(&self, forge: Forge) {
        *self.forge.lock().unwrap() = forge;
    }

    /// Makes the authorization endpoint's callback carry `iss` (None: its own issuer).
    pub fn callback_iss(&self, iss: Option<&str>) {
        *self.callback_iss.lock().unwrap() = iss.map(str::to_owned);
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn answer(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let issuer = shared.issuer.clone();
    let response = match req.uri().path() {
        "/.well-known/openid-configuration" => reply(
            StatusCode::OK,
            json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "authorization_response_iss_parameter_supported": true,
            }),
        ),
        "/jwks" => reply(StatusCode::OK, json!({ "keys": [shared.jwk.clone()] })),
        "/authorize" => {
            // The browser arrives here: remember the attempt's nonce, answer with a code.
            let q = query(&req);
            let state = q.get("state").cloned().unwrap_or_default();
            let nonce = q.get("nonce").cloned().unwrap_or_default();
            shared
                .seen
                .lock()
                .unwrap()
                .nonces
                .insert(state.clone(), nonce);
            let iss = shared
                .callback_iss
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| issuer.clone());
            let mut location = url::Url::parse(q.get("redirect_uri").unwrap()).unwrap();
            location
                .query_pairs_mut()
                .append_pair("code", &format!("code-for-{state}"))
                .append_pair("state", &state)
                .append_pair("iss", &iss);
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::SEE_OTHER;
            r.headers_mut()
                .insert(header::LOCATION, location.as_str().parse().unwrap());
            r
        }
        "/token" => {
            use http_body_util::BodyExt as _;
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let form: HashMap<String, String> =
                form_urlencoded::parse(&body).into_owned().collect();
            let state = form
                .get("code")
                .and_then(|c| c.strip_prefix("code-for-"))
                .unwrap_or_default()
                .to_owned();
            let nonce = shared
                .seen
                .lock()
                .unwrap()
                .nonces
                .get(&state)
                .cloned()
                .unwrap_or_default();
            let forge = shared.forge.lock().unwrap().clone();
            let id_token = forge_token(&shared, &forge, &nonce);
            reply(
                StatusCode::OK,
                json!({
                    "access_token": "an-opaque-access-token",
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "id_token": id_token,
                }),
            )
        }
        _ => reply(StatusCode::NOT_FOUND, json!({ "error": "not_found" })),
    };
    Ok(response)
}

fn forge_token(shared: &Shared, forge: &Forge, nonce: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut claims = json!({
        "iss": shared.issuer,
        "sub": "mallory-sub",
        "aud": shared.client_id,
        "iat": now,
        "exp": now + 300,
        "nonce": nonce,
        "preferred_username": "mallory",
        "groups": ["wiki-admins"],
    });
    match forge {
        Forge::Honest => {}
        Forge::OtherAudience => claims["aud"] = json!("another-client"),
        Forge::WrongNonce => claims["nonce"] = json!("a-nonce-of-another-login"),
        Forge::OtherIssuer => claims["iss"] = json!("https://sso.example.com"),
        Forge::Expired => {
            claims["iat"] = json!(now - 3600);
            claims["exp"] = json!(now - 1800);
        }
        Forge::AlgNone => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
            return format!("{header}.{payload}.");
        }
        Forge::HmacWithPublicKey => {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("evil-1".into());
            let secret = EncodingKey::from_secret(shared.jwk.to_string().as_bytes());
            return jsonwebtoken::encode(&header, &claims, &secret).unwrap();
        }
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("evil-1".into());
    jsonwebtoken::encode(&header, &claims, &shared.key).unwrap()
}
