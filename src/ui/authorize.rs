//! `GET/POST /oauth2/authorize` and its Confluence aliases (RFC 6749 §4.1, RFC 7636, RFC 9207,
//! SPEC §3.1): validates the request, authenticates the user (login session or a PAT in
//! `Authorization: Bearer`; otherwise a 303 to `/login` that comes back here), caps the scope,
//! then asks for consent (`oauth::consent`) or, for `skipConsent` apps, issues the code at once.

mod request;

use std::time::SystemTime;

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

pub use request::Target;
use request::{Rejected, Valid};

use super::page;
use super::return_to::percent_encode;
use crate::auth::context::Ctx;
use crate::auth::scope::Scopes;
use crate::auth::session;
use crate::body::Body;
use crate::oauth::error::{OAuthError, OAuthErrorCode};
use crate::oauth::redirect;
use crate::store::{App, NewAuthCode, secret_hash};

pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    match *req.method() {
        Method::GET => start(ctx, req).await,
        Method::POST => super::consent::decide(ctx, req).await,
        _ => page::method_not_allowed("GET, POST", ctx.request_id()),
    }
}

/// The user an authorization request is made for.
pub struct Authenticated {
    pub user: String,
    /// The most this credential may grant: the user's `max_scope`, or a PAT's scope.
    pub max_scope: Scopes,
    /// The secret (session cookie or PAT) this request's CSRF token is bound to.
    pub binding: String,
}

/// Who is asking: `Ok(None)` when the request carries no credentials at all.
pub async fn authenticate(
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
) -> Result<Option<Authenticated>, Response<Body>> {
    let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
    if let Some(authorization) = authorizations.next() {
        let principal = ctx.bearer(headers).await;
        return match principal {
            Ok(p) if p.is_personal_token() => {
                let token = crate::auth::authenticator::bearer_token(Some(authorization))
                    .map_err(|_| unauthenticated(ctx, crate::auth::AuthFailure::Malformed))?;
                Ok(Some(Authenticated {
                    user: p.user().to_owned(),
                    max_scope: p.scopes,
                    binding: token.to_owned(),
                }))
            }
            // An app's access token must not act for its user at the authorize endpoint.
            Ok(_) => Err(unauthenticated(
                ctx,
                crate::auth::AuthFailure::Invalid("not_a_pat"),
            )),
            Err(f) => Err(unauthenticated(ctx, f)),
        };
    }
    match session::current(ctx, headers).await {
        Ok(Some(s)) => {
            let user = s.account;
            Ok(Some(Authenticated {
                user: user.name,
                max_scope: user.max_scope,
                binding: s.secret,
            }))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(page::store_failure(&e, ctx.request_id())),
    }
}

fn unauthenticated(ctx: &Ctx<'_>, failure: crate::auth::AuthFailure) -> Response<Body> {
    if failure == crate::auth::AuthFailure::Unavailable {
        return page::auth_unavailable(ctx.request_id());
    }
    let mut r = page::error(
        StatusCode::UNAUTHORIZED,
        "Not signed in",
        "The bearer credentials are not a valid personal access token.",
        None,
        ctx.request_id(),
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, failure.www_authenticate());
    r
}

async fn start(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    let query = req.uri().query().unwrap_or_default();
    let valid = match request::validate(ctx, query).await {
        Ok(v) => v,
        Err(Rejected::Page(status, code, message)) => {
            return page::error(
                status,
                "Authorization failed",
                message,
                Some(code),
                ctx.request_id(),
            );
        }
        Err(Rejected::Store(e)) => return page::store_failure(&e, ctx.request_id()),
        Err(Rejected::Redirect(target, e)) => return error_redirect(ctx, &target, &e),
    };
    let who = match authenticate(ctx, req.headers()).await {
        Ok(Some(who)) => who,
        Ok(None) => {
            let here = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
            return page::see_other(&format!("/login?return_to={}", percent_encode(here)));
        }
        Err(response) => return response,
    };
    let scopes = &ctx.directory.scopes;
    let app_scopes = app_scopes(ctx, &valid.app);
    let granted = match scopes.grant(valid.requested, who.max_scope, app_scopes) {
        Ok(g) => g,
        Err(_) => {
            let e = OAuthError::new(
                OAuthErrorCode::InvalidScope,
                "none of the requested scopes may be granted to this user and client",
            );
            return error_redirect(ctx, &valid.target, &e);
        }
    };
    if valid.app.skip_consent {
        let challenge = valid
            .challenge
            .as_ref()
            .map(|c| (c.value().to_owned(), c.method().as_str().to_owned()));
        let scope = scopes.to_highest_string(granted);
        return issue_code(
            ctx,
            &valid.target,
            &valid.app.client_id,
            &who.user,
            &scope,
            challenge,
        )
        .await;
    }
    super::consent::show(ctx, req.uri().path(), &valid_parts(valid), &who, granted).await
}

fn valid_parts(v: Valid) -> super::consent::Request {
    super::consent::Request {
        challenge: v
            .challenge
            .as_ref()
            .map(|c| (c.value().to_owned(), c.method().as_str().to_owned())),
        app: v.app,
        target: v.target,
    }
}

/// The scopes an app may ask for; names the scope set no longer knows are ignored.
pub fn app_scopes(ctx: &Ctx<'_>, app: &App) -> Scopes {
    let set = &ctx.directory.scopes;
    app.scopes
        .iter()
        .filter_map(|name| set.lookup(name))
        .fold(Scopes::EMPTY, Scopes::union)
}

/// Creates a code bound to client, redirect URI, user, scope and PKCE challenge, and sends
/// the browser back with it (RFC 6749 §4.1.2).
pub async fn issue_code(
    ctx: &Ctx<'_>,
    target: &Target,
    client_id: &str,
    user: &str,
    scope: &str,
    challenge: Option<(String, String)>,
) -> Response<Body> {
    let Ok(code) = crate::auth::secret::new_authorization_code() else {
        let e = OAuthError::new(OAuthErrorCode::ServerError, "the code could not be made");
        return error_redirect(ctx, target, &e);
    };
    let now: SystemTime = ctx.clock.now();
    let (code_challenge, code_challenge_method) = challenge.unzip();
    let record = NewAuthCode {
        hash: secret_hash(code.expose()),
        client_id: client_id.to_owned(),
        user: user.to_owned(),
        redirect_uri: target.redirect_uri.clone(),
        scope: scope.to_owned(),
        code_challenge,
        code_challenge_method,
        create_time: now,
        expire_time: now + ctx.config.oauth.code_ttl,
    };
    if let Err(e) = ctx.store.create_code(&record).await {
        tracing::error!(request_id = ctx.request_id(), error = %e, "storing an authorization code failed");
        let e = OAuthError::new(
            OAuthErrorCode::TemporarilyUnavailable,
            "the authorization server cannot issue a code right now",
        );
        return error_redirect(ctx, target, &e);
    }
    tracing::info!(
        request_id = ctx.request_id(),
        client_id,
        user,
        scope,
        "authorization code issued"
    );
    back_to_client(ctx, target, &[("code", code.expose())])
}

/// The error answer at the client's redirect URI (RFC 6749 §4.1.2.1).
pub fn error_redirect(ctx: &Ctx<'_>, target: &Target, e: &OAuthError) -> Response<Body> {
    back_to_client(
        ctx,
        target,
        &[
            ("error", e.code.as_str()),
            ("error_description", &e.description),
        ],
    )
}

/// A 303 to the redirect URI with `params`, then `state` (when sent) and `iss` (RFC 9207).
fn back_to_client(ctx: &Ctx<'_>, target: &Target, params: &[(&str, &str)]) -> Response<Body> {
    let mut all: Vec<(&str, &str)> = params.to_vec();
    if let Some(state) = &target.state {
        all.push(("state", state));
    }
    all.push(("iss", &ctx.config.server.public_url));
    page::see_other(&redirect::with_params(&target.redirect_uri, &all))
}
