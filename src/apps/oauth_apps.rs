//! `/v1/oauthApps` (SPEC §3.3): create, list (stable (createTime, id) order, opaque page
//! tokens), get, PATCH, delete and `:rotateSecret`. Client ids and secrets come from the OS
//! CSPRNG (RFC 6749 §10.10, secrets 256 bits); a secret is returned once and stored as its
//! SHA-256. Apps declared in the config are read-only here (409). A caller never gives an app
//! more than it holds, nor changes one that already has more (403, `validate::within_caller`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;

use super::http::{ApiError, json_body, json_response, no_content};
use super::model::{AppInput, AppResource, Fields};
use super::validate::{self, Rules, Violations};
use crate::auth::Principal;
use crate::auth::context::Ctx;
use crate::auth::scope::{ScopeSet, Scopes};
use crate::auth::secret::{Secret, new_client_id, new_client_secret};
use crate::body::Body;
use crate::config::duration::parse_duration;
use crate::store::{
    App, AppCursor, ClientType, ManagedBy, new_app_id, secret_hash, truncate_to_micros,
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;
/// The longest `gracePeriod` a rotation may leave the old secret working.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 86_400);

type Answer = Result<Response<Body>, ApiError>;

pub fn rules<'a>(ctx: &'a Ctx<'_>) -> Rules<'a> {
    Rules {
        scopes: &ctx.directory.scopes,
        allow_insecure: ctx.config.oauth.allow_insecure_redirect_uris,
    }
}

/// The scopes an app gets when the create body names none: the set's lowest (those that
/// imply nothing) that `cap` (the caller's expanded scopes) holds, so an app never starts
/// with more than the least, nor with more than its creator.
pub fn default_scopes(scopes: &ScopeSet, cap: Scopes) -> Vec<String> {
    scopes
        .defs()
        .iter()
        .filter(|d| d.implies.is_empty())
        .filter(|d| scopes.lookup(&d.name).is_some_and(|s| cap.contains(s)))
        .map(|d| d.name.clone())
        .collect()
}

/// Refuses (403) an app that goes beyond what `who` holds: scopes beyond the caller's, or
/// `skipConsent` without SYSTEM_ADMIN. Checked on the app as it would be stored, so a PATCH
/// cannot redirect, and `:rotateSecret` cannot take over, an app that holds more than the
/// caller; turning such an app off (`{"active": false}` alone) or deleting it stays allowed.
fn within_caller(ctx: &Ctx<'_>, who: &Principal, app: &App) -> Result<(), ApiError> {
    let mut v = Violations::default();
    let scopes = &ctx.directory.scopes;
    validate::within_caller(&mut v, scopes, who.scopes, &app.scopes, app.skip_consent);
    if v.is_empty() {
        Ok(())
    } else {
        Err(ApiError::denied(v))
    }
}

fn caller(who: &Principal) -> String {
    format!("users/{}", who.user())
}

fn now(ctx: &Ctx<'_>) -> SystemTime {
    truncate_to_micros(ctx.clock.now())
}

fn rng_failed(ctx: &Ctx<'_>) -> ApiError {
    tracing::error!(
        request_id = ctx.request_id(),
        "the OS random number generator failed"
    );
    ApiError::internal()
}

pub async fn create(ctx: &Ctx<'_>, who: &Principal, req: Request<Incoming>) -> Answer {
    let bytes = json_body(req, false, ctx.config.server.request_body_timeout).await?;
    let input = AppInput::from_json(&bytes, true, rules(ctx)).map_err(ApiError::invalid)?;
    let client_type = input.client_type.unwrap_or(ClientType::Confidential);
    let secret: Option<Secret> = match client_type {
        ClientType::Confidential => Some(new_client_secret().map_err(|_| rng_failed(ctx))?),
        ClientType::Public => None,
    };
    let client_id = new_client_id().map_err(|_| rng_failed(ctx))?;
    let (now, by) = (now(ctx), caller(who));
    let mut app = App {
        id: new_app_id(),
        client_id,
        display_name: String::new(),
        description: String::new(),
        logo_uri: String::new(),
        allowed_callback_urls: Vec::new(),
        allowed_logout_urls: Vec::new(),
        allowed_web_origins: Vec::new(),
        client_type,
        secret_hash: secret.as_ref().map(|s| secret_hash(s.expose())),
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        scopes: default_scopes(&ctx.directory.scopes, who.scopes),
        skip_consent: false,
        active: true,
        labels: Default::default(),
        created_by: by.clone(),
        updated_by: by,
        create_time: now,
        update_time: now,
        managed_by: ManagedBy::Api,
    };
    input.apply(&mut app);
    within_caller(ctx, who, &app)?;
    ctx.store
        .create_app(&app)
        .await
        .map_err(|e| ApiError::store(&e, ctx.request_id()))?;
    tracing::info!(
        request_id = ctx.request_id(),
        app = %app.id,
        client_id = %app.client_id,
        by = %app.created_by,
        "oauth app created"
    );
    let resource = AppResource::new(&app, secret.as_ref().map(Secret::expose));
    Ok(json_response(StatusCode::CREATED, &resource))
}

pub async fn get(ctx: &Ctx<'_>, id: &str) -> Answer {
    let app = load(ctx, id).await?;
    Ok(json_response(StatusCode::OK, &AppResource::new(&app, None)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse<'a> {
    oauth_apps: Vec<AppResource<'a>>,
    next_page_token: String,
}

pub async fn list(ctx: &Ctx<'_>, query: Option<&str>) -> Answer {
    let (size, after) = page_params(query)?;
    let mut apps = ctx
        .store
        .list_apps(after.as_ref(), size + 1)
        .await
        .map_err(|e| ApiError::store(&e, ctx.request_id()))?;
    let more = apps.len() > size as usize;
    apps.truncate(size as usize);
    let next_page_token = match apps.last() {
        Some(last) if more => page_token(&AppCursor::after(last)),
        _ => String::new(),
    };
    let body = ListResponse {
        oauth_apps: apps.iter().map(|a| AppResource::new(a, None)).collect(),
        next_page_token,
    };
    Ok(json_response(StatusCode::OK, &body))
}

pub async fn patch(ctx: &Ctx<'_>, who: &Principal, id: &str, req: Request<Incoming>) -> Answer {
    let bytes = json_body(req, false, ctx.config.server.request_body_timeout).await?;
    let input = AppInput::from_json(&bytes, false, rules(ctx)).map_err(ApiError::invalid)?;
    let mut app = load_writable(ctx, id).await?;
    if input.client_type.is_some_and(|t| t != app.client_type) {
        return Err(ApiError::field(
            "clientType",
            "cannot be changed after the app is created",
        ));
    }
    let was_active = app.active;
    let deactivation = input.only_deactivates();
    input.apply(&mut app);
    if !deactivation {
        within_caller(ctx, who, &app)?;
    }
    app.updated_by = caller(who);
    app.update_time = now(ctx);
    // Deactivation revokes every grant and token of the app in the same transaction.
    ctx.store
        .update_app(&app)
        .await
        .map_err(|e| map_missing(e, ctx, id))?;
    if was_active && !app.active {
        tracing::info!(request_id = ctx.request_id(), app = %app.id, by = %app.updated_by, "oauth app deactivated: its grants and tokens are revoked");
    }
    Ok(json_response(StatusCode::OK, &AppResource::new(&app, None)))
}

pub async fn delete(ctx: &Ctx<'_>, who: &Principal, id: &str) -> Answer {
    let app = load_writable(ctx, id).await?;
    ctx.store
        .delete_app(&app.id)
        .await
        .map_err(|e| map_missing(e, ctx, id))?;
    tracing::info!(request_id = ctx.request_id(), app = %app.id, client_id = %app.client_id, by = %caller(who), "oauth app deleted: its grants and tokens are revoked");
    Ok(no_content())
}

pub async fn rotate_secret(
    ctx: &Ctx<'_>,
    who: &Principal,
    id: &str,
    req: Request<Incoming>,
) -> Answer {
    let bytes = json_body(req, true, ctx.config.server.request_body_timeout).await?;
    let mut fields = Fields::parse(&bytes).map_err(ApiError::invalid)?;
    let grace = fields.string("gracePeriod");
    let violations = fields.finish(&[]);
    if !violations.is_empty() {
        return Err(ApiError::invalid(violations));
    }
    let grace = match grace {
        None => Duration::ZERO,
        Some(text) => match parse_duration(&text) {
            Ok(d) if d <= MAX_GRACE => d,
            Ok(_) => return Err(ApiError::field("gracePeriod", "must be at most 30d")),
            Err(why) => {
                return Err(ApiError::field(
                    "gracePeriod",
                    &format!("must be a duration such as \"1h\" ({why})"),
                ));
            }
        },
    };
    let app = load_writable(ctx, id).await?;
    within_caller(ctx, who, &app)?;
    if app.client_type == ClientType::Public {
        return Err(ApiError::field(
            "clientType",
            "a public app has no client secret to rotate",
        ));
    }
    let secret = new_client_secret().map_err(|_| rng_failed(ctx))?;
    let now = now(ctx);
    let previous_valid_until = (!grace.is_zero()).then(|| now + grace);
    let app = ctx
        .store
        .rotate_app_secret(
            &app.id,
            secret_hash(secret.expose()),
            previous_valid_until,
            &caller(who),
            now,
        )
        .await
        .map_err(|e| map_missing(e, ctx, id))?;
    tracing::info!(request_id = ctx.request_id(), app = %app.id, grace = ?grace, by = %app.updated_by, "oauth app client secret rotated");
    let resource = AppResource::new(&app, Some(secret.expose()));
    Ok(json_response(StatusCode::OK, &resource))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("oauth app 'oauthApps/{id}' not found"))
}

fn map_missing(e: crate::store::StoreError, ctx: &Ctx<'_>, id: &str) -> ApiError {
    if e.kind() == crate::store::StoreErrorKind::NotFound {
        not_found(id)
    } else {
        ApiError::store(&e, ctx.request_id())
    }
}

async fn load(ctx: &Ctx<'_>, id: &str) -> Result<App, ApiError> {
    ctx.store
        .get_app(id)
        .await
        .map_err(|e| ApiError::store(&e, ctx.request_id()))?
        .ok_or_else(|| not_found(id))
}

async fn load_writable(ctx: &Ctx<'_>, id: &str) -> Result<App, ApiError> {
    let app = load(ctx, id).await?;
    if app.managed_by == ManagedBy::Config {
        return Err(ApiError::conflict(format!(
            "oauth app 'oauthApps/{id}' is managed by the config file ([[apps]]) and cannot be changed through the API"
        )));
    }
    Ok(app)
}

fn page_params(query: Option<&str>) -> Result<(u32, Option<AppCursor>), ApiError> {
    let (mut size, mut after) = (DEFAULT_PAGE_SIZE, None);
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "pageSize" => {
                size = match value.parse::<u64>() {
                    Ok(0) => DEFAULT_PAGE_SIZE,
                    // AIP-158: a size over the maximum is served as the maximum.
                    Ok(n) => {
                        u32::try_from(n.min(u64::from(MAX_PAGE_SIZE))).unwrap_or(MAX_PAGE_SIZE)
                    }
                    Err(_) => {
                        return Err(ApiError::field(
                            "pageSize",
                            "must be a whole number from 0 to 500",
                        ));
                    }
                }
            }
            "pageToken" if value.is_empty() => after = None,
            "pageToken" => {
                after = Some(parse_page_token(&value).ok_or_else(|| {
                    ApiError::field("pageToken", "is not a page token this API returned")
                })?);
            }
            _ => {}
        }
    }
    Ok((size, after))
}

/// The cursor as `base64url("<createTime µs>.<id>")`: opaque to clients, and a forged one
/// only moves where a listing the caller may read in full anyway resumes.
fn page_token(cursor: &AppCursor) -> String {
    let micros = cursor
        .create_time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    URL_SAFE_NO_PAD.encode(format!("{micros}.{}", cursor.id))
}

fn parse_page_token(token: &str) -> Option<AppCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (micros, id) = text.split_once('.')?;
    let micros: u64 = micros.parse().ok()?;
    if !super::api::is_resource_id(id) {
        return None;
    }
    Some(AppCursor {
        create_time: UNIX_EPOCH + Duration::from_micros(micros),
        id: id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_junk() {
        let cursor = AppCursor {
            create_time: UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456),
            id: "3f9k2m7q8x".into(),
        };
        let token = page_token(&cursor);
        assert!(!token.contains("3f9k2m7q8x"));
        assert_eq!(parse_page_token(&token), Some(cursor));
        for junk in ["", "!!", "bm9wZQ", &URL_SAFE_NO_PAD.encode("x.y")] {
            assert_eq!(parse_page_token(junk), None, "{junk}");
        }
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_params(None).unwrap().0, 50);
        assert_eq!(page_params(Some("pageSize=0")).unwrap().0, 50);
        assert_eq!(page_params(Some("pageSize=7")).unwrap().0, 7);
        assert_eq!(page_params(Some("pageSize=9999")).unwrap().0, 500);
        assert!(page_params(Some("pageSize=-1")).is_err());
        assert!(page_params(Some("pageToken=%%%")).is_err());
    }

    #[test]
    fn default_scopes_are_the_lowest() {
        let set = ScopeSet::default_confluence();
        assert_eq!(default_scopes(&set, set.all()), ["READ"]);
        assert!(default_scopes(&set, Scopes::EMPTY).is_empty());
    }
}
