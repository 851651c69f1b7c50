//! The consent step of the authorization endpoint (SPEC §3.1, SECURITY.md "Browser pages"):
//! the request waits in the store as a pending consent; the page names the app, the user and
//! each scope, and its form carries the consent id and a single-use CSRF token bound to that
//! one request and to the credential (session or PAT) that made it. `POST /oauth2/authorize`
//! takes the decision: approve issues the code, deny answers `access_denied`.

use std::time::Duration;

use askama::Template;
use http::{Response, StatusCode};
use hyper::body::Incoming;

use super::authorize::{self, Authenticated, Target};
use super::{csrf, page};
use crate::auth::context::Ctx;
use crate::auth::scope::Scopes;
use crate::body::Body;
use crate::oauth::error::{OAuthError, OAuthErrorCode};
use crate::oauth::redirect;
use crate::store::{App, PendingConsent};

/// How long a consent page may stay open before its decision is refused.
pub const CONSENT_TTL: Duration = Duration::from_secs(600);

/// A validated authorization request waiting for consent.
pub struct Request {
    pub app: App,
    pub target: Target,
    /// `(challenge, method)` as RFC 7636 names the method.
    pub challenge: Option<(String, String)>,
}

struct ScopeLine<'a> {
    name: &'a str,
    description: &'a str,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    app_name: &'a str,
    description: &'a str,
    logo_uri: Option<&'a str>,
    user: &'a str,
    scopes: Vec<ScopeLine<'a>>,
    redirect_origin: &'a str,
    action: &'a str,
    consent_id: &'a str,
    csrf_token: &'a str,
}

/// Stores the pending consent and shows the page. `path` is the path the request came to
/// (the standard one or a Confluence alias), where the form posts back.
pub async fn show(
    ctx: &Ctx<'_>,
    path: &str,
    request: &Request,
    who: &Authenticated,
    granted: Scopes,
) -> Response<Body> {
    let (Ok(id), Ok(token)) = (
        crate::auth::secret::new_id(),
        crate::auth::secret::random_token::<32>(),
    ) else {
        return page::internal("the random number generator failed", ctx.request_id());
    };
    let Some(csrf_hash) = csrf::bound_hash(&token, &who.binding) else {
        return page::internal("deriving a CSRF hash failed", ctx.request_id());
    };
    let scopes = &ctx.directory.scopes;
    let now = ctx.clock.now();
    let (code_challenge, code_challenge_method) = request.challenge.clone().unzip();
    let pending = PendingConsent {
        id: id.clone(),
        csrf_hash,
        user: who.user.clone(),
        client_id: request.app.client_id.clone(),
        redirect_uri: request.target.redirect_uri.clone(),
        scope: scopes.to_highest_string(granted),
        state: request.target.state.clone(),
        code_challenge,
        code_challenge_method,
        create_time: now,
        expire_time: now + CONSENT_TTL,
    };
    if let Err(e) = ctx.store.create_consent(&pending).await {
        return page::store_failure(&e, ctx.request_id());
    }
    let app = &request.app;
    let logo = app.logo_uri.as_str();
    let logo_ok = logo.starts_with("https://") || logo.starts_with("data:image/");
    let origin = redirect::origin(&request.target.redirect_uri);
    let view = ConsentPage {
        app_name: &app.display_name,
        description: &app.description,
        logo_uri: logo_ok.then_some(logo),
        user: &who.user,
        scopes: scopes
            .iter(scopes.expand(granted))
            .map(|d| ScopeLine {
                name: &d.name,
                description: &d.description,
            })
            .collect(),
        redirect_origin: origin.unwrap_or(&request.target.redirect_uri),
        action: path,
        consent_id: &id,
        csrf_token: &token,
    };
    page::render(StatusCode::OK, &view, origin, ctx.request_id())
}

fn refused(ctx: &Ctx<'_>, status: StatusCode, message: &str) -> Response<Body> {
    page::error(
        status,
        "Authorization failed",
        message,
        None,
        ctx.request_id(),
    )
}

/// `POST /oauth2/authorize`: the decision on a pending consent.
pub async fn decide(ctx: &Ctx<'_>, req: http::Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let who = match authorize::authenticate(ctx, &parts.headers).await {
        Ok(Some(who)) => who,
        Ok(None) => return refused(ctx, StatusCode::UNAUTHORIZED, "You are not signed in."),
        Err(response) => return response,
    };
    let timeout = ctx.config.server.request_body_timeout;
    let params = match super::login::read_form(body, timeout).await {
        Ok(p) => p,
        Err(status) => return refused(ctx, status, "The form could not be read."),
    };
    let approve = match params.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => return refused(ctx, StatusCode::BAD_REQUEST, "The form has no decision."),
    };
    let (Some(id), Some(token)) = (params.get("consent_id"), params.get("csrf_token")) else {
        return refused(ctx, StatusCode::BAD_REQUEST, "The form is incomplete.");
    };
    let Some(hash) = csrf::bound_hash(token, &who.binding) else {
        return page::internal("deriving a CSRF hash failed", ctx.request_id());
    };
    let now = ctx.clock.now();
    let consent = match ctx.store.take_consent(id, &hash, &who.user, now).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            tracing::warn!(request_id = ctx.request_id(), user = %who.user, "consent decision refused: unknown, used, expired or forged");
            return refused(
                ctx,
                StatusCode::BAD_REQUEST,
                "This authorization request is no longer valid. Start again from the application.",
            );
        }
        Err(e) => return page::store_failure(&e, ctx.request_id()),
    };
    // The app may have been deactivated or changed while the page was open.
    let app = match ctx.store.get_app_by_client_id(&consent.client_id).await {
        Ok(app) => app.filter(|a| {
            a.active && redirect::is_registered(&consent.redirect_uri, &a.allowed_callback_urls)
        }),
        Err(e) => return page::store_failure(&e, ctx.request_id()),
    };
    if app.is_none() {
        return refused(
            ctx,
            StatusCode::BAD_REQUEST,
            "The client is unknown or not active.",
        );
    }
    let target = Target {
        redirect_uri: consent.redirect_uri.clone(),
        state: consent.state.clone(),
    };
    if !approve {
        tracing::info!(request_id = ctx.request_id(), client_id = %consent.client_id, user = %who.user, "consent denied");
        let e = OAuthError::new(OAuthErrorCode::AccessDenied, "the user denied the request");
        return authorize::error_redirect(ctx, &target, &e);
    }
    let challenge = consent
        .code_challenge
        .clone()
        .zip(consent.code_challenge_method.clone());
    authorize::issue_code(
        ctx,
        &target,
        &consent.client_id,
        &who.user,
        &consent.scope,
        challenge,
    )
    .await
}
