//! ui: the login and logout pages (SPEC §3.2): not served by this build yet.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::server::own::Ctx;

pub async fn handle(ctx: &Ctx<'_>, _req: Request<Incoming>) -> Response<Body> {
    crate::oauth::endpoints::not_yet(ctx)
}
