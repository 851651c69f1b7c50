//! Sign in through an OpenID Connect provider (SPEC §7.1): `GET /login/NAME` sends the browser
//! to the provider with the authorization-code flow (OpenID Connect Core §3.1.2, PKCE S256 per
//! RFC 7636, `state` and `nonce` bound to the browser by [`provider_flow`]); `GET
//! /login/NAME/callback` checks the answer — RFC 9207 `iss`, `state` (single-use), the
//! provider's `error` — exchanges the code, validates the ID token as OpenID Connect Core
//! §3.1.3.7 asks (signature through the provider's JWKS with an allowed `alg`, `iss`, `aud`,
//! `azp`, `exp`, `iat`, `nonce`), optionally merges the userinfo claims (§5.3.2: same `sub`),
//! maps the name, groups and scope, refuses a name that is also a `[[users]]` entry or another
//! identity's, and starts a normal session. The log says why a login failed; the browser sees
//! one generic message. Every outcome is counted in `gatehouse_idp_logins_total`.

use std::time::SystemTime;

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::provider_flow::{self, Flow};
use super::{login, page, return_to};
use crate::auth::context::Ctx;
use crate::auth::cookies::{self, SESSION_COOKIE};
use crate::auth::providers::Ready;
use crate::auth::secret::constant_time_eq;
use crate::auth::session;
use crate::body::Body;
use crate::clock::unix_seconds;
use crate::config::{ClientAuth, IdentityProviderEntry};
use crate::federation::{Expectations, Outbound};
use crate::oauth::params::Params;
use crate::store::{FederatedLogin, FederatedUser, secret_hash};

/// The one message for every failed sign-in through a provider.
pub const FAILED: &str =
    "Signing in through your identity provider did not work. Please try again.";
/// While the provider's metadata is unknown (it has not answered since the start).
pub const UNAVAILABLE: &str =
    "Your identity provider cannot be reached right now. Please try again in a moment.";
/// For someone the provider signs in but `allowed_groups` keeps out.
const DENIED: &str = "Your account may not sign in here. Ask an administrator for access.";

/// The most groups kept from one login, and the longest group name: a provider's claim is
/// input like any other.
const MAX_GROUPS: usize = 256;
const MAX_GROUP_LEN: usize = 256;

/// Answers `/login/NAME` and `/login/NAME/callback` (`rest` is what follows `/login/`).
pub async fn handle(ctx: &Ctx<'_>, rest: &str, req: Request<Incoming>) -> Response<Body> {
    let (name, callback) = match rest.split_once('/') {
        None => (rest, false),
        Some((name, "callback")) => (name, true),
        Some(_) => return page::not_found(ctx.request_id()),
    };
    let Some(entry) = ctx
        .config
        .identity_providers
        .iter()
        .find(|p| p.name == name)
    else {
        return page::not_found(ctx.request_id());
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return page::method_not_allowed("GET, HEAD", ctx.request_id());
    }
    if callback {
        callback_response(ctx, entry, req.headers(), req.uri().query()).await
    } else {
        start(ctx, entry, req.headers(), req.uri().query())
    }
}

/// `GET /login/NAME?return_to=PATH`: a new attempt, and a 303 to the provider.
fn start(
    ctx: &Ctx<'_>,
    entry: &IdentityProviderEntry,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response<Body> {
    let params = Params::parse(query.unwrap_or_default()).unwrap_or_default();
    let to = return_to::sanitize_for(params.get("return_to"), &ctx.config.forward_auth);
    let provider = ctx.providers.get(&entry.name);
    let Some(ready) = provider.and_then(|p| p.ready()) else {
        if let Some(p) = provider {
            p.nudge();
        }
        count(ctx, entry, "unavailable");
        tracing::warn!(request_id = ctx.request_id(), provider = %entry.name, "sign-in through a provider whose metadata is not known yet");
        return login::form(
            ctx,
            headers,
            StatusCode::SERVICE_UNAVAILABLE,
            to,
            "",
            Some(UNAVAILABLE),
        );
    };
    let Ok(flow) = Flow::new(&entry.name, to, ctx.clock.now()) else {
        return page::internal("the random number generator failed", ctx.request_id());
    };
    let Some(sealed) = flow.seal(ctx.keys) else {
        return page::internal("sealing the login cookie failed", ctx.request_id());
    };
    let Ok(mut location) = url::Url::parse(&ready.authorization_endpoint) else {
        return page::internal("the provider's authorization endpoint", ctx.request_id());
    };
    let redirect_uri = redirect_uri(ctx, entry);
    location
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &entry.client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", &entry.scopes.join(" "))
        .append_pair("state", &flow.state)
        .append_pair("nonce", &flow.nonce)
        .append_pair("code_challenge", &flow.challenge())
        .append_pair("code_challenge_method", "S256");
    let mut response = page::see_other(location.as_str());
    response.headers_mut().append(
        header::SET_COOKIE,
        provider_flow::set_cookie(&entry.name, &sealed),
    );
    response
}

/// `{public_url}/login/NAME/callback`, registered at the provider.
pub fn redirect_uri(ctx: &Ctx<'_>, entry: &IdentityProviderEntry) -> String {
    format!(
        "{}{}",
        ctx.config.server.public_url.trim_end_matches('/'),
        provider_flow::callback_path(&entry.name)
    )
}

/// Why a callback does not sign anyone in: the metrics label, and what the log says.
struct Failure {
    result: &'static str,
    reason: String,
}

fn fail(result: &'static str, reason: impl Into<String>) -> Failure {
    Failure {
        result,
        reason: reason.into(),
    }
}

/// The callback's answer; the flow cookie is cleared whatever happens (a callback is answered
/// once).
async fn callback_response(
    ctx: &Ctx<'_>,
    entry: &IdentityProviderEntry,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response<Body> {
    let mut response = match callback(ctx, entry, headers, query).await {
        Ok(Outcome::SignedIn {
            user,
            return_to,
            cookie,
        }) => {
            count(ctx, entry, "success");
            tracing::info!(request_id = ctx.request_id(), provider = %entry.name, user = %user, "login through identity provider");
            let mut r = page::see_other(&return_to);
            r.headers_mut().append(header::SET_COOKIE, cookie);
            r
        }
        Ok(Outcome::Denied { user }) => {
            count(ctx, entry, "denied");
            tracing::warn!(request_id = ctx.request_id(), provider = %entry.name, user = %user, "login through identity provider refused: not in allowed_groups");
            page::error(
                StatusCode::FORBIDDEN,
                "Access denied",
                DENIED,
                None,
                ctx.request_id(),
            )
        }
        Ok(Outcome::Store(e)) => {
            count(ctx, entry, "unavailable");
            page::store_failure(&e, ctx.request_id())
        }
        Err(Failure { result, reason }) => {
            count(ctx, entry, result);
            tracing::warn!(request_id = ctx.request_id(), provider = %entry.name, result, reason = %reason, "login through identity provider failed");
            let (status, message) = if result == "unavailable" {
                (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
            } else {
                (StatusCode::UNAUTHORIZED, FAILED)
            };
            login::form(ctx, headers, status, "/", "", Some(message))
        }
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, provider_flow::clear_cookie(&entry.name));
    response
}

enum Outcome {
    SignedIn {
        user: String,
        return_to: String,
        cookie: http::HeaderValue,
    },
    Denied {
        user: String,
    },
    Store(crate::store::StoreError),
}

async fn callback(
    ctx: &Ctx<'_>,
    entry: &IdentityProviderEntry,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Outcome, Failure> {
    let now = ctx.clock.now();
    let params = Params::parse(query.unwrap_or_default())
        .map_err(|e| fail("invalid_state", format!("callback parameters: {e}")))?;
    // The browser's own attempt first: nothing in the callback is looked at before it.
    let flow = Flow::open(headers, ctx.keys, &entry.name, now)
        .map_err(|e| fail("invalid_state", e.reason()))?;
    let state = params.get("state").unwrap_or_default();
    if !flow.state_matches(state) {
        return Err(fail(
            "invalid_state",
            "the state parameter is not the one of this browser's login",
        ));
    }
    let provider = ctx
        .providers
        .get(&entry.name)
        .ok_or_else(|| fail("unavailable", "the provider is not running"))?;
    let (Some(ready), Some(client)) = (provider.ready(), provider.client.clone()) else {
        return Err(fail("unavailable", "the provider's metadata is not known"));
    };
    // RFC 9207 §2.4: the answer must come from the provider the browser was sent to.
    match params.get("iss") {
        Some(iss) if iss != entry.issuer => {
            return Err(fail(
                "mixup",
                format!("the callback's iss {iss:?} is not the provider's issuer"),
            ));
        }
        None if iss_parameter_promised(&ready) => {
            return Err(fail(
                "mixup",
                "the provider announces RFC 9207 but the callback has no iss",
            ));
        }
        _ => {}
    }
    // Single use: a second callback with the same state (a replay, or a reload of the page)
    // is refused even while its cookie is still in some browser.
    let expires = SystemTime::UNIX_EPOCH
        + std::time::Duration::from_secs(u64::try_from(flow.expires).unwrap_or(0));
    let first_use = ctx
        .store
        .use_login_state(&secret_hash(&flow.state), expires, now)
        .await;
    match first_use {
        Ok(true) => {}
        Ok(false) => return Err(fail("replayed", "this login's state was already used")),
        Err(e) => return Ok(Outcome::Store(e)),
    }
    if let Some(error) = params.get("error") {
        return Err(fail(
            "provider_error",
            format!(
                "the provider answered error={error:?} ({})",
                params.get("error_description").unwrap_or("no description")
            ),
        ));
    }
    let code = params
        .get("code")
        .ok_or_else(|| fail("provider_error", "the callback has neither code nor error"))?;
    let tokens = exchange(ctx, entry, &client, &ready, code, &flow.verifier).await?;
    let id_token = tokens
        .get("id_token")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("exchange_failed", "the token response has no id_token"))?;
    let mut claims = verify_id_token(ctx, entry, &ready, id_token, &flow.nonce).await?;
    if entry.use_userinfo {
        let access_token = tokens
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("exchange_failed", "the token response has no access_token"))?;
        merge_userinfo(&client, &ready, access_token, &mut claims).await?;
    }
    let identity = identity(entry, &claims)?;
    let rules = ctx.directory.provider(&entry.name).ok_or_else(|| {
        fail(
            "unavailable",
            "the provider's rules are not in the directory",
        )
    })?;
    if !rules.allows(&identity.groups) {
        return Ok(Outcome::Denied {
            user: identity.name,
        });
    }
    // Identities from different places never merge silently (SECURITY.md).
    if ctx.directory.user(&identity.name).is_some() {
        tracing::error!(request_id = ctx.request_id(), provider = %entry.name, user = %identity.name, "login through identity provider refused: the name clashes with a [[users]] entry (set username_prefix to keep them apart)");
        return Err(fail("clash", "the name is a [[users]] entry"));
    }
    let max_scope = rules.max_scope(&identity.groups);
    let record = FederatedUser {
        name: identity.name.clone(),
        provider: entry.name.clone(),
        subject: identity.subject,
        max_scope: ctx.directory.scopes.to_highest_string(max_scope),
        groups: identity.groups,
        create_time: now,
        last_login_time: now,
    };
    match ctx.store.record_federated_login(&record).await {
        Ok(FederatedLogin::Recorded) => {}
        Ok(FederatedLogin::NameTaken { provider }) => {
            tracing::error!(request_id = ctx.request_id(), provider = %entry.name, user = %identity.name, owner = %provider, "login through identity provider refused: the name already belongs to another identity (another provider or another sub)");
            return Err(fail("clash", "the name belongs to another identity"));
        }
        Err(e) => return Ok(Outcome::Store(e)),
    }
    match session::start(ctx, &identity.name, cookies::get(headers, SESSION_COOKIE)).await {
        Ok(cookie) => Ok(Outcome::SignedIn {
            user: identity.name,
            return_to: flow.return_to,
            cookie,
        }),
        Err(e) => Ok(Outcome::Store(e)),
    }
}

/// Whether the provider's metadata says its callbacks carry `iss` (RFC 9207 §3).
fn iss_parameter_promised(ready: &Ready) -> bool {
    ready
        .metadata
        .raw
        .get("authorization_response_iss_parameter_supported")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The code for tokens at the provider's token endpoint (OpenID Connect Core §3.1.3.1), with
/// the configured client authentication and the PKCE verifier.
async fn exchange(
    ctx: &Ctx<'_>,
    entry: &IdentityProviderEntry,
    client: &Outbound,
    ready: &Ready,
    code: &str,
    verifier: &str,
) -> Result<Map<String, Value>, Failure> {
    let redirect_uri = redirect_uri(ctx, entry);
    let secret = entry
        .client_secret
        .as_ref()
        .map(|s| s.expose())
        .unwrap_or_default();
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier),
    ];
    let basic = match entry.client_auth {
        ClientAuth::ClientSecretBasic => Some((entry.client_id.as_str(), secret)),
        ClientAuth::ClientSecretPost => {
            form.push(("client_id", &entry.client_id));
            form.push(("client_secret", secret));
            None
        }
        ClientAuth::None => {
            form.push(("client_id", &entry.client_id));
            None
        }
    };
    let reply = client
        .post_form(&ready.token_endpoint, &form, basic)
        .await
        .map_err(|e| fail("exchange_failed", format!("token endpoint: {e}")))?;
    if !reply.status.is_success() {
        let error = reply
            .json
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error code");
        return Err(fail(
            "exchange_failed",
            format!("the token endpoint answered {} ({error})", reply.status),
        ));
    }
    match reply.json {
        Value::Object(map) => Ok(map),
        _ => Err(fail(
            "exchange_failed",
            "the token response is not a JSON object",
        )),
    }
}

/// OpenID Connect Core §3.1.3.7: the signature (with an `alg` of `algorithms`, never `none` or
/// an HMAC) and `iss`, `aud`, `exp` through the provider's key set; then `iat`, `azp`,
/// `nonce` and `sub` here.
async fn verify_id_token(
    ctx: &Ctx<'_>,
    entry: &IdentityProviderEntry,
    ready: &Ready,
    id_token: &str,
    nonce: &str,
) -> Result<Map<String, Value>, Failure> {
    let algorithms: Vec<Algorithm> = entry
        .algorithms
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let audiences = [entry.client_id.clone()];
    let now = unix_seconds(ctx.clock.now());
    let leeway = ctx.config.auth.leeway.as_secs();
    let expect = Expectations {
        issuer: &entry.issuer,
        audiences: &audiences,
        algorithms: &algorithms,
        leeway,
        now_unix: now,
    };
    let verified = ready.keys.verify(id_token, &expect).await.map_err(|e| {
        if e.is_unavailable() {
            fail("unavailable", format!("ID token: {e}"))
        } else {
            fail("invalid_token", format!("ID token: {e}"))
        }
    })?;
    let claims = verified.claims;
    let invalid = |why: &str| fail("invalid_token", format!("ID token: {why}"));
    // `iat` must be there and not in the future (step 10).
    let leeway = i64::try_from(leeway).unwrap_or(i64::MAX);
    match claims.get("iat").and_then(Value::as_i64) {
        Some(iat) if iat <= now.saturating_add(leeway) => {}
        Some(_) => return Err(invalid("iat is in the future")),
        None => return Err(invalid("no iat")),
    }
    // Steps 4 and 5: with several audiences `azp` names the gateway; when present it must.
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != entry.client_id => {
            return Err(invalid("azp is another client"));
        }
        None if several => return Err(invalid("several audiences and no azp")),
        _ => {}
    }
    // Step 11: the nonce of this browser's attempt.
    let presented = claims
        .get("nonce")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), nonce.as_bytes()) {
        return Err(invalid("nonce is not the one of this browser's login"));
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() => Ok(claims),
        _ => Err(invalid("no sub")),
    }
}

/// The claims an ID token alone decides; userinfo may add to the others.
const ID_TOKEN_ONLY: &[&str] = &[
    "iss",
    "aud",
    "sub",
    "exp",
    "iat",
    "nbf",
    "nonce",
    "azp",
    "auth_time",
    "acr",
    "amr",
    "jti",
];

/// OpenID Connect Core §5.3: the userinfo claims, whose `sub` must be the ID token's
/// (§5.3.2), merged over the ID token's other claims.
async fn merge_userinfo(
    client: &Outbound,
    ready: &Ready,
    access_token: &str,
    claims: &mut Map<String, Value>,
) -> Result<(), Failure> {
    let endpoint = ready.metadata.userinfo_endpoint.as_deref().ok_or_else(|| {
        fail(
            "invalid_claims",
            "use_userinfo, but the metadata has no userinfo_endpoint",
        )
    })?;
    let info = client
        .get_json(endpoint, Some(access_token))
        .await
        .map_err(|e| fail("exchange_failed", format!("userinfo: {e}")))?;
    let Value::Object(info) = info else {
        return Err(fail("invalid_claims", "userinfo is not a JSON object"));
    };
    let sub = claims.get("sub").and_then(Value::as_str);
    if info.get("sub").and_then(Value::as_str) != sub {
        return Err(fail(
            "invalid_claims",
            "userinfo's sub is not the ID token's",
        ));
    }
    for (key, value) in info {
        if !ID_TOKEN_ONLY.contains(&key.as_str()) {
            claims.insert(key, value);
        }
    }
    Ok(())
}

/// Who the claims name.
struct Identity {
    name: String,
    subject: String,
    groups: Vec<String>,
}

/// `username_prefix` + the `username_claim` (`preferred_username` falls back to `sub`), and
/// the groups of `groups_claim` (a JSON array of strings; absent means none).
fn identity(
    entry: &IdentityProviderEntry,
    claims: &Map<String, Value>,
) -> Result<Identity, Failure> {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let claimed = match claims.get(&entry.username_claim) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None if entry.username_claim == "preferred_username" => subject.clone(),
        _ => {
            return Err(fail(
                "invalid_claims",
                format!(
                    "no string claim {:?} to name the user",
                    entry.username_claim
                ),
            ));
        }
    };
    let name = format!("{}{claimed}", entry.username_prefix);
    let valid = name.len() <= 64 && name.bytes().all(crate::config::is_user_name_byte);
    if !valid {
        return Err(fail(
            "invalid_claims",
            format!("the user name {name:?} is not 1-64 characters of A-Z a-z 0-9 . _ @ - :"),
        ));
    }
    let groups = match claims.get(&entry.groups_claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut groups = Vec::with_capacity(items.len().min(MAX_GROUPS));
            for item in items {
                match item.as_str() {
                    Some(g) if !g.is_empty() && g.len() <= MAX_GROUP_LEN => {
                        if !groups.iter().any(|known: &String| known == g) {
                            groups.push(g.to_owned());
                        }
                    }
                    _ => {
                        return Err(fail(
                            "invalid_claims",
                            format!(
                                "{:?} holds something other than group names",
                                entry.groups_claim
                            ),
                        ));
                    }
                }
            }
            if groups.len() > MAX_GROUPS {
                return Err(fail("invalid_claims", "more than 256 groups"));
            }
            groups
        }
        Some(_) => {
            return Err(fail(
                "invalid_claims",
                format!("{:?} is not a JSON array of strings", entry.groups_claim),
            ));
        }
    };
    Ok(Identity {
        name,
        subject,
        groups,
    })
}

fn count(ctx: &Ctx<'_>, entry: &IdentityProviderEntry, result: &str) {
    ctx.metrics
        .idp_logins
        .with_label_values(&[entry.name.as_str(), result])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(extra: &str) -> IdentityProviderEntry {
        let src = format!(
            "[server]\npublic_url = \"https://gw.example.com\"\n[server.tls]\ncert = \"c\"\nkey = \"k\"\n\
             [oauth]\nsigning_keys = [\"s\"]\n[[identity_providers]]\nname = \"corp\"\n\
             issuer = \"https://sso.example.com\"\nclient_id = \"g\"\nclient_auth = \"none\"\n{extra}\n"
        );
        let config =
            crate::config::Config::parse(&src, std::path::Path::new("g.toml"), &|_| None).unwrap();
        config.identity_providers[0].clone()
    }

    fn claims(value: serde_json::Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn names_and_groups_come_from_the_configured_claims() {
        let plain = entry("");
        let who = identity(
            &plain,
            &claims(json!({"sub": "u-1", "preferred_username": "jane", "groups": ["a", "b", "a"]})),
        )
        .unwrap_or_else(|f| panic!("{}", f.reason));
        assert_eq!((who.name.as_str(), who.subject.as_str()), ("jane", "u-1"));
        assert_eq!(who.groups, ["a", "b"], "duplicates dropped");
        // No preferred_username: the subject; no groups claim: none.
        let who = identity(&plain, &claims(json!({"sub": "u-1"})))
            .unwrap_or_else(|f| panic!("{}", f.reason));
        assert_eq!(who.name, "u-1");
        assert!(who.groups.is_empty());
        // A configured claim with a prefix; that claim is then required.
        let mail = entry(
            "username_claim = \"email\"\nusername_prefix = \"corp:\"\ngroups_claim = \"roles\"",
        );
        let who = identity(
            &mail,
            &claims(json!({"sub": "u-1", "email": "jane@example.com", "roles": ["x"]})),
        )
        .unwrap_or_else(|f| panic!("{}", f.reason));
        assert_eq!(who.name, "corp:jane@example.com");
        assert_eq!(who.groups, ["x"]);
        let refused = [
            (&mail, json!({"sub": "u-1"})),
            (
                &plain,
                json!({"sub": "u-1", "preferred_username": "Jane Doe"}),
            ),
            (
                &plain,
                json!({"sub": "u-1", "preferred_username": "a".repeat(65)}),
            ),
            (&plain, json!({"sub": "u-1", "preferred_username": 7})),
            (&plain, json!({"sub": "u-1", "groups": "admins"})),
            (&plain, json!({"sub": "u-1", "groups": ["ok", 3]})),
            (&plain, json!({"sub": "u-1", "groups": [""]})),
        ];
        for (e, c) in refused {
            let Err(f) = identity(e, &claims(c.clone())) else {
                panic!("accepted {c}");
            };
            assert_eq!(f.result, "invalid_claims", "{c}: {}", f.reason);
        }
    }
}
