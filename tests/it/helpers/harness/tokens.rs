//! Real credentials for tests, made the way the authorization server makes them: an app and a
//! grant in the store (app → code → redemption), access tokens signed with the gateway's key,
//! PATs and sessions stored by hash.

use std::time::{Duration, SystemTime};

use gatehouse::auth::jwt::AccessClaims;
use gatehouse::auth::secret::{new_id, new_personal_access_token};
use gatehouse::server::Gateway;
use gatehouse::store::{
    NewAuthCode, NewRefreshToken, PersonalToken, RedeemOutcome, Session, secret_hash,
};

/// An access token and the handles that revoke it.
pub struct Minted {
    pub token: String,
    pub jti: String,
    pub grant_id: String,
    pub app_id: String,
    /// The refresh token issued with the grant (its rotation revokes `token`).
    pub refresh: String,
}

/// Creates an app for `client_id` (if missing) and a grant for `user` with `scope`, then signs
/// an access token for it valid `ttl` from now.
pub async fn access_token(
    gw: &Gateway,
    client_id: &str,
    user: &str,
    scope: &str,
    ttl: Duration,
) -> Minted {
    let store = &gw.store;
    let now = gw.clock.now();
    let app = match store.get_app_by_client_id(client_id).await.unwrap() {
        Some(app) => app,
        None => {
            let mut app =
                crate::store::lifecycle::app(client_id, "a-client-secret-of-enough-length");
            app.scopes = vec![
                "READ".into(),
                "WRITE".into(),
                "ADMIN".into(),
                "SYSTEM_ADMIN".into(),
            ];
            store.create_app(&app).await.unwrap();
            app
        }
    };
    let code = new_id().unwrap();
    store
        .create_code(&NewAuthCode {
            hash: secret_hash(&code),
            client_id: client_id.into(),
            user: user.into(),
            redirect_uri: app.allowed_callback_urls[0].clone(),
            scope: scope.into(),
            code_challenge: None,
            code_challenge_method: None,
            create_time: now,
            expire_time: now + Duration::from_secs(60),
        })
        .await
        .unwrap();
    let jti = new_id().unwrap();
    let refresh = format!("gh_rt_{}", new_id().unwrap());
    let exp = now + ttl;
    let first = NewRefreshToken {
        hash: secret_hash(&refresh),
        expire_time: now + Duration::from_secs(86_400),
        access_jti: Some(jti.clone()),
        access_expire_time: Some(exp),
    };
    let RedeemOutcome::Redeemed { grant, .. } = store
        .redeem_code(&secret_hash(&code), &first, now)
        .await
        .unwrap()
    else {
        panic!("redemption failed")
    };
    let claims = claims(gw, user, scope, Some(client_id), &jti, Some(&grant.id), ttl);
    let token = gw.keys.sign_access_token(&claims).unwrap();
    Minted {
        token,
        jti,
        grant_id: grant.id,
        app_id: app.id,
        refresh,
    }
}

/// Access-token claims as the gateway issues them.
pub fn claims(
    gw: &Gateway,
    user: &str,
    scope: &str,
    client_id: Option<&str>,
    jti: &str,
    gid: Option<&str>,
    ttl: Duration,
) -> AccessClaims {
    let now = gw.clock.unix_seconds();
    AccessClaims {
        iss: gw.config.server.public_url.clone(),
        sub: user.into(),
        aud: gw.config.audience().into(),
        client_id: client_id.map(Into::into),
        scope: scope.into(),
        iat: now,
        exp: now + i64::try_from(ttl.as_secs()).unwrap(),
        nbf: None,
        jti: jti.into(),
        gid: gid.map(Into::into),
    }
}

/// Stores a PAT for `user` and returns (token, id).
pub async fn pat(gw: &Gateway, user: &str, scope: &str) -> (String, String) {
    let token = new_personal_access_token().unwrap().expose().to_string();
    let id = new_id().unwrap();
    let now = gw.clock.now();
    gw.store
        .create_pat(&PersonalToken {
            id: id.clone(),
            user: user.into(),
            display_name: "test".into(),
            scope: scope.into(),
            token_hash: secret_hash(&token),
            create_time: now,
            expire_time: now + Duration::from_secs(3600),
            last_used_time: None,
        })
        .await
        .unwrap();
    (token, id)
}

/// Stores a login session for `user` and returns the cookie value.
pub async fn session(gw: &Gateway, user: &str) -> String {
    let value = new_id().unwrap();
    let now: SystemTime = gw.clock.now();
    gw.store
        .create_session(&Session {
            id_hash: secret_hash(&value),
            user: user.into(),
            create_time: now,
            expire_time: now + Duration::from_secs(3600),
        })
        .await
        .unwrap();
    value
}
