//! The management API's router (SPEC §3.3): `/v1/oauthApps[/{id}[:rotateSecret]]` for
//! callers holding `ADMIN` (SYSTEM_ADMIN implies it), `/v1/personalTokens[/{id}]` for any
//! authenticated user. Order of checks: path (404), method (405), bearer (401), scope (403),
//! then the body (415, 413, 400).

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::http::{ApiError, authenticate, require_scope};
use super::{oauth_apps, pats};
use crate::auth::context::Ctx;
use crate::body::Body;

/// The scope every `/v1/oauthApps` call needs.
pub const ADMIN_SCOPE: &str = "ADMIN";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target<'p> {
    Apps,
    App(&'p str),
    Rotate(&'p str),
    Pats,
    Pat(&'p str),
}

impl Target<'_> {
    fn allow(self) -> &'static str {
        match self {
            Self::Apps | Self::Pats => "GET, POST",
            Self::App(_) => "GET, PATCH, DELETE",
            Self::Rotate(_) => "POST",
            Self::Pat(_) => "DELETE",
        }
    }
}

/// Ids the store makes (app ids, PAT ids): short and URL-unreserved. Anything else cannot
/// exist, so it is "not found" without a lookup and never echoed.
pub fn is_resource_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn target(path: &str) -> Option<Target<'_>> {
    let rest = path.strip_prefix("/v1/")?;
    if rest == "oauthApps" {
        return Some(Target::Apps);
    }
    if rest == "personalTokens" {
        return Some(Target::Pats);
    }
    if let Some(tail) = rest.strip_prefix("oauthApps/") {
        return match tail.strip_suffix(":rotateSecret") {
            Some(id) => is_resource_id(id).then_some(Target::Rotate(id)),
            None => is_resource_id(tail).then_some(Target::App(tail)),
        };
    }
    let id = rest.strip_prefix("personalTokens/")?;
    is_resource_id(id).then_some(Target::Pat(id))
}

/// Answers a request under `/v1/`.
pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    match route(ctx, req).await {
        Ok(response) => response,
        Err(e) => e.into_response(ctx.request_id()),
    }
}

async fn route(ctx: &Ctx<'_>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    let Some(target) = target(&path) else {
        return Err(ApiError::not_found("no such resource"));
    };
    let method = req.method().clone();
    let known = matches!(
        (target, &method),
        (Target::Apps | Target::Pats, &Method::GET | &Method::POST)
            | (
                Target::App(_),
                &Method::GET | &Method::PATCH | &Method::DELETE
            )
            | (Target::Rotate(_), &Method::POST)
            | (Target::Pat(_), &Method::DELETE)
    );
    if !known {
        return Err(ApiError::method_not_allowed(target.allow()));
    }
    let who = authenticate(ctx, &req).await?;
    if matches!(target, Target::Apps | Target::App(_) | Target::Rotate(_)) {
        require_scope(ctx, &who, ADMIN_SCOPE)?;
    }
    match (target, method) {
        (Target::Apps, Method::GET) => oauth_apps::list(ctx, req.uri().query()).await,
        (Target::Apps, _) => oauth_apps::create(ctx, &who, req).await,
        (Target::App(id), Method::GET) => oauth_apps::get(ctx, id).await,
        (Target::App(id), Method::PATCH) => oauth_apps::patch(ctx, &who, id, req).await,
        (Target::App(id), _) => oauth_apps::delete(ctx, &who, id).await,
        (Target::Rotate(id), _) => oauth_apps::rotate_secret(ctx, &who, id, req).await,
        (Target::Pats, Method::GET) => pats::list(ctx, &who).await,
        (Target::Pats, _) => pats::create(ctx, &who, req).await,
        (Target::Pat(id), _) => pats::delete(ctx, &who, id).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(target("/v1/oauthApps"), Some(Target::Apps));
        assert_eq!(target("/v1/oauthApps/abc"), Some(Target::App("abc")));
        assert_eq!(
            target("/v1/oauthApps/abc:rotateSecret"),
            Some(Target::Rotate("abc"))
        );
        assert_eq!(target("/v1/personalTokens"), Some(Target::Pats));
        assert_eq!(target("/v1/personalTokens/x-_1"), Some(Target::Pat("x-_1")));
        for none in [
            "/v1",
            "/v1/",
            "/v1/oauthApps/",
            "/v1/oauthApps/a/b",
            "/v1/oauthApps/a:other",
            "/v1/oauthApps/:rotateSecret",
            "/v1/personalTokens/",
            "/v1/other",
        ] {
            assert_eq!(target(none), None, "{none}");
        }
    }
}
