//! `POST /oauth2/token` and its Confluence aliases (RFC 6749 §3.2, §4.1.3, §5, §6; SPEC §3.1):
//! reads the form, authenticates the client, runs the grant, and answers with the no-store
//! token response or an RFC 6749 §5.2 error, with CORS for the app's web origins and the
//! `gatehouse_tokens_issued_total` / `gatehouse_token_errors_total` metrics.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;

use super::caches::OAuthCaches;
use super::client_auth;
use super::error::{OAuthError, OAuthErrorCode};
use super::grant::exchange_code;
use super::grant_refresh::{Refreshed, refresh};
use super::{cors, reply, request};
use crate::auth::context::Ctx;
use crate::body::Body;
use crate::store::App;

pub async fn handle(ctx: &Ctx<'_>, oauth: &OAuthCaches, req: Request<Incoming>) -> Response<Body> {
    cors::serve(ctx, oauth, req, async |req| token(ctx, oauth, req).await).await
}

async fn token(
    ctx: &Ctx<'_>,
    oauth: &OAuthCaches,
    req: Request<Incoming>,
) -> (Response<Body>, Option<Arc<App>>) {
    let metrics = &ctx.metrics;
    let failed = |e: &OAuthError, basic: bool| {
        metrics
            .token_errors
            .with_label_values(&[e.code.as_str()])
            .inc();
        reply::error(e, basic)
    };
    let request = match request::read(ctx, req).await {
        Ok(r) => r,
        Err(response) => {
            if response.status() != StatusCode::METHOD_NOT_ALLOWED {
                let label = OAuthErrorCode::InvalidRequest.as_str();
                metrics.token_errors.with_label_values(&[label]).inc();
            }
            return (response, None);
        }
    };
    let now = ctx.clock.now();
    let (app, shared) = match client_auth::authenticate_for_grant(ctx, oauth, &request, now).await {
        Ok(authenticated) => authenticated,
        Err(refused) => {
            let label = refused.error.code.as_str();
            metrics.token_errors.with_label_values(&[label]).inc();
            return (refused.response(), None);
        }
    };
    let params = &request.params;
    let outcome = match params.get("grant_type") {
        Some("authorization_code") => exchange_code(ctx, &app, &shared, params, now)
            .await
            .map(Refreshed::New),
        Some("refresh_token") => refresh(ctx, oauth, &app, &shared, params, now).await,
        Some(_) => Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            "grant_type must be authorization_code or refresh_token",
        )),
        None => Err(reply::invalid_request("grant_type is required")),
    };
    // Whatever the grant answered, the client's throttle was judged against the other
    // replicas' failures before the answer leaves (SPEC §3.2): by the grant's first store
    // read, or here when the grant ended before reading (a bad parameter).
    let outcome = match shared.settle(ctx.store, now).await {
        Some(refused) => Err(refused),
        None => outcome,
    };
    let response = match outcome {
        Ok(Refreshed::New(body)) => {
            let grant_type = params.get("grant_type").unwrap_or_default();
            metrics.tokens_issued.with_label_values(&[grant_type]).inc();
            match serde_json::to_string(&body) {
                Ok(json) => reply::json(StatusCode::OK, json),
                Err(_) => failed(&reply::server_error("serializing a token response"), false),
            }
        }
        Ok(Refreshed::Rotated(json)) => {
            metrics
                .tokens_issued
                .with_label_values(&["refresh_token"])
                .inc();
            reply::json(StatusCode::OK, json)
        }
        Ok(Refreshed::Repeat(json)) => reply::json(StatusCode::OK, json),
        Err(e) => match e.retry_after {
            Some(secs) => {
                metrics
                    .token_errors
                    .with_label_values(&[e.code.as_str()])
                    .inc();
                reply::throttled(&e, false, secs)
            }
            None => failed(&e, false),
        },
    };
    (response, Some(app))
}
