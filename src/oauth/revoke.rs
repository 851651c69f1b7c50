//! `revoke` endpoint of the authorization server (SPEC §3.1): not served by this build yet.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::server::own::Ctx;

pub async fn handle(ctx: &Ctx<'_>, _req: Request<Incoming>) -> Response<Body> {
    super::endpoints::not_yet(ctx)
}
