//! Interoperability with an independent OAuth 2.0 client, the `oauth2` crate (v5): RFC 8414
//! discovery, the authorization-code exchange with its own PKCE pair (RFC 7636), refresh,
//! introspection and revocation against the running gateway over real HTTPS.
//!
//! The authorize step goes through the real `/oauth2/authorize`: the crate's authorization URL
//! is opened by alice (with a personal access token as her credential), the consent page is
//! approved, and the code and `state` come back on the redirect, with `iss` (RFC 9207).

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl,
    PkceCodeChallenge, RedirectUrl, RefreshToken, RequestTokenError, RevocationUrl, Scope,
    StandardRevocableToken, TokenIntrospectionResponse, TokenResponse, TokenUrl,
};

use crate::helpers::login_support::{hidden, location, query};
use crate::helpers::oauth_fixture::{CALLBACK, CONF, CONF_SECRET, Fx};

#[tokio::test]
async fn the_oauth2_crate_runs_the_whole_flow() {
    let fx = Fx::start("").await;
    // HTTP/2 by ALPN here; the other tests use HTTP/1.1.
    let http = fx.gw.client(false);
    // Discovery. The issuer is the configured public URL; the test listener has its own port.
    let meta: serde_json::Value = http
        .get(fx.gw.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], "https://localhost");
    let here = fx.gw.url("");
    let endpoint = |name: &str| {
        meta[name]
            .as_str()
            .unwrap()
            .replacen("https://localhost", &here, 1)
    };
    let methods = meta["code_challenge_methods_supported"].as_array().unwrap();
    assert!(methods.iter().any(|m| m == "S256"));
    let client = BasicClient::new(ClientId::new(CONF.into()))
        .set_client_secret(ClientSecret::new(CONF_SECRET.into()))
        .set_auth_uri(AuthUrl::new(endpoint("authorization_endpoint")).unwrap())
        .set_token_uri(TokenUrl::new(endpoint("token_endpoint")).unwrap())
        .set_revocation_url(RevocationUrl::new(endpoint("revocation_endpoint")).unwrap())
        .set_introspection_url(IntrospectionUrl::new(endpoint("introspection_endpoint")).unwrap())
        .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap());

    // The authorization request the crate builds, with its own PKCE pair and state.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("WRITE".into()))
        .set_pkce_challenge(challenge)
        .url();
    let (pat, _) = crate::helpers::harness::tokens::pat(fx.gateway(), "alice", "WRITE").await;
    let page = http
        .get(url.as_str())
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "the consent page");
    let html = page.text().await.unwrap();
    let decision = http
        .post(fx.gw.url("/oauth2/authorize"))
        .bearer_auth(&pat)
        .form(&[
            ("consent_id", hidden(&html, "consent_id").as_str()),
            ("csrf_token", hidden(&html, "csrf_token").as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(decision.status(), 303);
    let back = location(&decision);
    assert!(back.starts_with(CALLBACK), "{back}");
    let params = query(&back);
    assert_eq!(&params["state"], state.secret(), "state comes back");
    assert_eq!(params["iss"], "https://localhost", "RFC 9207 iss");
    let code = params["code"].clone();

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(tokens.token_type().as_ref(), "bearer");
    assert_eq!(tokens.expires_in().unwrap().as_secs(), 7200);
    let scopes: Vec<String> = tokens
        .scopes()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(scopes, ["WRITE"]);
    let access = tokens.access_token().secret().clone();
    assert_eq!(fx.proxied(&access).await, 200);

    let refreshed = client
        .exchange_refresh_token(&RefreshToken::new(
            tokens.refresh_token().unwrap().secret().clone(),
        ))
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(fx.proxied(&access).await, 401, "rotated away");
    let new_access = refreshed.access_token();
    assert_eq!(fx.proxied(new_access.secret()).await, 200);

    let info = client
        .introspect(new_access)
        .request_async(&http)
        .await
        .unwrap();
    assert!(info.active());
    assert_eq!(info.username(), Some("alice"));
    assert_eq!(info.client_id().map(|c| c.as_str()), Some(CONF));

    let new_refresh = refreshed.refresh_token().unwrap().clone();
    client
        .revoke_token(StandardRevocableToken::RefreshToken(new_refresh.clone()))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(fx.proxied(new_access.secret()).await, 401, "grant ended");
    let err = client
        .exchange_refresh_token(&new_refresh)
        .request_async(&http)
        .await
        .unwrap_err();
    match err {
        RequestTokenError::ServerResponse(e) => {
            assert_eq!(*e.error(), BasicErrorResponseType::InvalidGrant);
        }
        other => panic!("expected invalid_grant, got {other:?}"),
    }
    let info = client
        .introspect(new_access)
        .request_async(&http)
        .await
        .unwrap();
    assert!(!info.active());
}
