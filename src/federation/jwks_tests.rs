//! Unit tests of the key set: JWKS parsing rules and the verification of tokens signed here
//! (EC P-256 and Ed25519 keys made by rcgen). Fetching, rotation and refresh limits are tested
//! against a real provider in tests/it/federation.

use super::*;
use jsonwebtoken::{EncodingKey, encode};
use serde_json::json;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Signer {
    encoding: EncodingKey,
    jwk: Value,
    alg: Algorithm,
}

fn es256(kid: &str) -> Signer {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    assert_eq!(point[0], 4);
    Signer {
        encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
        alg: Algorithm::ES256,
    }
}

fn eddsa(kid: &str) -> Signer {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    Signer {
        encoding: EncodingKey::from_ed_der(&pair.serialize_der()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(pair.public_key_raw())}),
        alg: Algorithm::EdDSA,
    }
}

const ISSUER: &str = "https://idp.example.com";
const NOW: i64 = 1_800_000_000;

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": "gatehouse", "sub": "alice", "exp": NOW + 300, "iat": NOW})
}

fn sign(signer: &Signer, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(signer.alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, &signer.encoding).unwrap()
}

fn key_set(jwks: Value) -> Arc<KeySet> {
    let client = Outbound::new(&super::super::Trust::System, Duration::from_secs(1)).unwrap();
    let family =
        IntCounterVec::new(prometheus::Opts::new("t", "t"), &["issuer", "result"]).unwrap();
    // A jwks_uri nobody answers: a forced refresh fails fast and keeps what was loaded.
    let set = KeySet::new(
        "t",
        ISSUER,
        KeySource::Uri("https://127.0.0.1:1/jwks".into()),
        client,
        family,
    );
    set.load_document(&jwks).unwrap();
    set
}

fn expect(audiences: &[String]) -> Expectations<'_> {
    Expectations {
        issuer: ISSUER,
        audiences,
        algorithms: &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        leeway: 5,
        now_unix: NOW,
    }
}

fn aud() -> Vec<String> {
    vec!["gatehouse".to_string()]
}

#[tokio::test]
async fn ec_and_ed25519_tokens_verify_and_return_their_claims() {
    let (a, b) = (es256("a"), eddsa("b"));
    let set = key_set(json!({"keys": [a.jwk, b.jwk]}));
    for (signer, kid) in [(&a, "a"), (&b, "b")] {
        let mut c = claims();
        // jsonwebtoken checks exp against the system clock too: keep it valid there.
        c["exp"] = json!(jsonwebtoken::get_current_timestamp() + 300);
        let audiences = aud();
        let mut e = expect(&audiences);
        e.now_unix = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap();
        let verified = set.verify(&sign(signer, Some(kid), &c), &e).await.unwrap();
        assert_eq!(verified.claims["sub"], "alice");
        assert_eq!(verified.kid.as_deref(), Some(kid));
    }
}

fn live_claims() -> (Value, i64) {
    let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap();
    let mut c = claims();
    c["exp"] = json!(now + 300);
    (c, now)
}

async fn check(set: &KeySet, token: &str, now: i64) -> Result<Verified, VerifyError> {
    let audiences = aud();
    let mut e = expect(&audiences);
    e.now_unix = now;
    set.verify(token, &e).await
}

#[tokio::test]
async fn the_registered_claims_are_checked() {
    let a = es256("a");
    let set = key_set(json!({"keys": [a.jwk]}));
    let (good, now) = live_claims();
    for (member, value) in [
        ("iss", json!("https://other.example.com")),
        ("iss", json!("https://idp.example.com/")),
        ("aud", json!("someone-else")),
        ("aud", json!(["x", "y"])),
        ("exp", json!(now - 60)),
        ("nbf", json!(now + 60)),
    ] {
        let mut c = good.clone();
        c[member] = value.clone();
        let err = check(&set, &sign(&a, Some("a"), &c), now)
            .await
            .unwrap_err();
        assert!(!err.is_unavailable(), "{member}={value}: {err}");
    }
    for missing in ["exp", "iss", "aud", "sub"] {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(missing);
        assert!(
            check(&set, &sign(&a, Some("a"), &c), now).await.is_err(),
            "without {missing}"
        );
    }
    let mut c = good.clone();
    c["aud"] = json!(["x", "gatehouse"]);
    check(&set, &sign(&a, Some("a"), &c), now).await.unwrap();
    // The gateway's clock counts too: an hour later the token is expired though the system
    // clock says otherwise.
    assert_eq!(
        check(&set, &sign(&a, Some("a"), &good), now + 3600)
            .await
            .unwrap_err(),
        VerifyError::Expired
    );
}

#[tokio::test]
async fn none_and_hmac_are_refused_even_with_the_public_key_as_secret() {
    let a = es256("a");
    let set = key_set(json!({"keys": [a.jwk.clone()]}));
    let (c, now) = live_claims();
    let body = b64(serde_json::to_vec(&c).unwrap().as_slice());
    let none = format!("{}.{body}.", b64(br#"{"alg":"none","kid":"a"}"#));
    assert_eq!(
        check(&set, &none, now).await.unwrap_err(),
        VerifyError::Malformed
    );
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("a".into());
    let public = serde_json::to_vec(&a.jwk).unwrap();
    let hs = encode(&header, &c, &EncodingKey::from_secret(&public)).unwrap();
    assert_eq!(
        check(&set, &hs, now).await.unwrap_err(),
        VerifyError::Algorithm(Algorithm::HS256)
    );
}

#[tokio::test]
async fn kty_and_alg_must_agree() {
    let (a, b) = (es256("a"), eddsa("b"));
    let set = key_set(json!({"keys": [a.jwk, b.jwk]}));
    let (c, now) = live_claims();
    // An EdDSA token naming the EC key's kid.
    let err = check(&set, &sign(&b, Some("a"), &c), now)
        .await
        .unwrap_err();
    assert_eq!(err, VerifyError::KeyMismatch("a".into()));
    // A key whose own alg contradicts its type is left out of the set.
    let mut odd = es256("c").jwk;
    odd["alg"] = json!("RS256");
    assert!(parse_jwk(&odd).is_err());
    let mut pinned = es256("d");
    pinned.jwk["alg"] = json!("ES256");
    assert!(parse_jwk(&pinned.jwk).is_ok());
}

#[tokio::test]
async fn kid_is_required_when_there_are_several_keys() {
    let (a, b) = (es256("a"), eddsa("b"));
    let (c, now) = live_claims();
    let two = key_set(json!({"keys": [a.jwk.clone(), b.jwk]}));
    assert_eq!(
        check(&two, &sign(&a, None, &c), now).await.unwrap_err(),
        VerifyError::KidRequired
    );
    let one = key_set(json!({"keys": [a.jwk]}));
    check(&one, &sign(&a, None, &c), now).await.unwrap();
}

#[tokio::test]
async fn an_unknown_kid_is_a_bad_token_and_the_failed_refresh_keeps_the_keys() {
    let a = es256("a");
    let set = key_set(json!({"keys": [a.jwk]}));
    let (c, now) = live_claims();
    let err = check(&set, &sign(&a, Some("zzz"), &c), now)
        .await
        .unwrap_err();
    assert_eq!(err, VerifyError::UnknownKid("zzz".into()));
    assert!(!err.is_unavailable());
    check(&set, &sign(&a, Some("a"), &c), now).await.unwrap();
}

#[tokio::test]
async fn an_issuer_without_keys_is_unavailable() {
    let client = Outbound::new(&super::super::Trust::System, Duration::from_secs(1)).unwrap();
    let family =
        IntCounterVec::new(prometheus::Opts::new("t", "t"), &["issuer", "result"]).unwrap();
    let set = KeySet::new(
        "t",
        ISSUER,
        KeySource::Uri("https://127.0.0.1:1/jwks".into()),
        client,
        family.clone(),
    );
    let a = es256("a");
    let (c, now) = live_claims();
    let err = check(&set, &sign(&a, Some("a"), &c), now)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    // One fetch was tried; the next token within 10 s does not try again.
    assert_eq!(family.with_label_values(&["t", "error"]).get(), 1);
    let _ = check(&set, &sign(&a, Some("b"), &c), now).await;
    assert_eq!(family.with_label_values(&["t", "error"]).get(), 1);
}

#[test]
fn jwks_parsing_leaves_out_what_it_cannot_trust() {
    let small_rsa = json!({"kty": "RSA", "kid": "r", "n": b64(&[0xc5; 128]), "e": "AQAB"});
    let enc = {
        let mut k = es256("e").jwk;
        k["use"] = json!("enc");
        k
    };
    let oct = json!({"kty": "oct", "kid": "h", "k": b64(b"secret")});
    let p521 = json!({"kty": "EC", "crv": "P-521", "kid": "p", "x": "AA", "y": "AA"});
    assert!(parse_jwks(&json!({"keys": [small_rsa, enc, oct, p521]})).is_err());
    assert!(parse_jwks(&json!({"keys": []})).is_err());
    assert!(parse_jwks(&json!({})).is_err());
    let big_rsa = json!({"kty": "RSA", "kid": "r", "n": b64(&[0xc5; 256]), "e": "AQAB"});
    assert_eq!(
        parse_jwks(&json!({"keys": [big_rsa, oct]}))
            .unwrap()
            .keys
            .len(),
        1
    );
}
