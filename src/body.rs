//! The one response-body type every handler returns: either a streamed body from the upstream
//! or a small body the gateway made itself, boxed once.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Errors a body stream can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type of the gateway.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body with these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Any other body, boxed.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Why a request body could not be read whole.
#[derive(Debug)]
pub enum ReadError {
    /// Longer than the limit (413).
    TooLarge,
    /// Not all there within `server.request_body_timeout` (408).
    TimedOut,
    /// The connection broke or the framing was bad (400).
    Unreadable(hyper::Error),
}

/// Reads a request body of at most `limit` bytes within `timeout` (SPEC §5
/// `server.request_body_timeout`): a client that announces a body and sends it slowly, or not
/// at all, must not hold a connection slot for ever. A declared `Content-Length` over the limit
/// is refused before anything is read.
pub async fn read_to_limit(
    body: hyper::body::Incoming,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ReadError> {
    use http_body::Body as _;
    if body.size_hint().lower() > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let collect = http_body_util::Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(ReadError::TimedOut),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => match e.downcast::<hyper::Error>() {
            Ok(hyper_error) => Err(ReadError::Unreadable(*hyper_error)),
            Err(_) => Err(ReadError::TooLarge),
        },
    }
}
