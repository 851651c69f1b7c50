//! Validation of an authorization request (RFC 6749 §4.1.1, §4.1.2.1; RFC 7636 §4.3;
//! SPEC §3.1) in the order that decides how errors are answered: until the client and the
//! redirect URI are known good, an error is an HTML page that never redirects; after that,
//! it goes back to the client with `error`, `state` and `iss`.

use http::StatusCode;

use crate::auth::context::Ctx;
use crate::auth::scope::Scopes;
use crate::config::RequirePkce;
use crate::oauth::error::{OAuthError, OAuthErrorCode};
use crate::oauth::params::Params;
use crate::oauth::pkce::{CodeChallenge, CodeChallengeMethod};
use crate::oauth::redirect;
use crate::store::{App, ClientType, StoreError};

/// Where answers to a known-good request go.
#[derive(Clone, Debug)]
pub struct Target {
    pub redirect_uri: String,
    pub state: Option<String>,
}

/// A request whose every parameter is acceptable; the user is not known yet.
pub struct Valid {
    pub app: App,
    pub target: Target,
    /// The requested scopes, not yet capped.
    pub requested: Scopes,
    pub challenge: Option<CodeChallenge>,
}

/// Why a request is refused, and how to say it.
pub enum Rejected {
    /// The client or redirect URI is not known good: an error page, never a redirect. The
    /// code is what RFC 6749 would call it (shown on the page, for the app's developer).
    Page(StatusCode, &'static str, &'static str),
    /// A known-good client gets the error at its redirect URI.
    Redirect(Target, OAuthError),
    Store(StoreError),
}

fn err(code: OAuthErrorCode, description: &str) -> OAuthError {
    OAuthError::new(code, description)
}

/// Validates the query of `GET /oauth2/authorize`.
pub async fn validate(ctx: &Ctx<'_>, query: &str) -> Result<Valid, Rejected> {
    let bad = |m| Rejected::Page(StatusCode::BAD_REQUEST, "invalid_request", m);
    let params = Params::parse(query)
        .map_err(|_| bad("The request has a repeated or malformed parameter."))?;
    let client_id = params.get("client_id").ok_or(bad(
        "The request does not name a client (client_id is missing).",
    ))?;
    let unknown = Rejected::Page(
        StatusCode::BAD_REQUEST,
        "invalid_client",
        "The client is unknown or not active.",
    );
    let app = ctx
        .store
        .get_app_by_client_id(client_id)
        .await
        .map_err(Rejected::Store)?
        .filter(|a| a.active)
        .ok_or(unknown)?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or(bad("The request has no redirect_uri."))?;
    let allow_insecure = ctx.config.oauth.allow_insecure_redirect_uris;
    if !redirect::is_registered(redirect_uri, &app.allowed_callback_urls)
        || !redirect::is_acceptable(redirect_uri, allow_insecure)
    {
        return Err(bad("The redirect_uri is not registered for this client."));
    }
    let target = Target {
        redirect_uri: redirect_uri.to_owned(),
        state: params.get("state").map(str::to_owned),
    };
    match check(ctx, &params, &app) {
        Ok((requested, challenge)) => Ok(Valid {
            app,
            target,
            requested,
            challenge,
        }),
        Err(e) => Err(Rejected::Redirect(target, e)),
    }
}

/// Everything after the client is known: response type, PKCE, scope syntax.
fn check(
    ctx: &Ctx<'_>,
    params: &Params,
    app: &App,
) -> Result<(Scopes, Option<CodeChallenge>), OAuthError> {
    match params.get("response_type") {
        None => {
            return Err(err(
                OAuthErrorCode::InvalidRequest,
                "response_type is required",
            ));
        }
        Some("code") => {}
        Some(_) => {
            return Err(err(
                OAuthErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
    }
    let challenge = pkce(ctx, params, app)?;
    let scope = params
        .get("scope")
        .ok_or_else(|| err(OAuthErrorCode::InvalidScope, "scope is required"))?;
    let requested = ctx.directory.scopes.parse(scope).map_err(|e| {
        // Fixed wording: error_description may not carry arbitrary input (RFC 6749 §4.1.2.1).
        let why = match e {
            crate::auth::scope::InvalidScope::Unknown(_) => {
                "the scope parameter names an unknown scope"
            }
            _ => "the scope parameter is empty",
        };
        err(OAuthErrorCode::InvalidScope, why)
    })?;
    Ok((requested, challenge))
}

fn pkce(ctx: &Ctx<'_>, params: &Params, app: &App) -> Result<Option<CodeChallenge>, OAuthError> {
    let oauth = &ctx.config.oauth;
    let invalid = |m: &str| err(OAuthErrorCode::InvalidRequest, m);
    let method = params.get("code_challenge_method");
    let Some(value) = params.get("code_challenge") else {
        if method.is_some() {
            return Err(invalid("code_challenge_method without code_challenge"));
        }
        let required = match oauth.require_pkce {
            RequirePkce::All => true,
            RequirePkce::Public => app.client_type == ClientType::Public,
            RequirePkce::None => false,
        };
        if required {
            return Err(invalid("PKCE is required: send code_challenge (S256)"));
        }
        return Ok(None);
    };
    // RFC 7636 §4.3: an absent method means plain.
    let method = CodeChallengeMethod::parse(method.unwrap_or("plain"))
        .map_err(|e| invalid(&e.to_string()))?;
    if method == CodeChallengeMethod::Plain && !oauth.allow_plain_pkce {
        return Err(invalid(
            "code_challenge_method=plain is not allowed: use S256",
        ));
    }
    CodeChallenge::parse(value, method)
        .map(Some)
        .map_err(|e| invalid(&e.to_string()))
}
