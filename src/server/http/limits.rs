//! What one request may carry and cost: the limits, the header bound (a
//! middleware), reading a body within its size and time, and the count
//! of open streams.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::ApiError;
use crate::events;

/// Limits on what one request may carry.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Bytes of request body at most (413 beyond).
    pub max_body_bytes: usize,
    /// Events in one append request at most (413 beyond).
    pub max_events: usize,
    /// Time a client has to send a request body.
    pub body_timeout: Duration,
    /// Bytes of request target and headers at most (431 beyond).
    pub max_header_bytes: usize,
    /// Open streams at once (503 beyond).
    pub max_streams: usize,
    /// Open streams per token (429 beyond).
    pub max_streams_per_token: usize,
    /// A stream whose client reads nothing this long is closed.
    pub stream_idle_timeout: Duration,
    /// How far past the log's clock an event's `time` may lie (422 beyond).
    pub max_future_skew_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 << 20,
            max_events: 1000,
            body_timeout: Duration::from_secs(30),
            max_header_bytes: 64 << 10,
            max_streams: 128,
            max_streams_per_token: 8,
            stream_idle_timeout: Duration::from_secs(60),
            max_future_skew_ms: crate::detect::engine::DEFAULT_MAX_FUTURE_SKEW_MS,
        }
    }
}

/// Open streams, per token name and overall, for their caps
/// (`max_streams`, `max_streams_per_token`).
#[derive(Default)]
pub struct StreamCounts {
    pub(super) total: usize,
    pub(super) by_token: std::collections::HashMap<String, usize>,
}

/// What one event may cost in memory once parsed (`json::for_each_event`):
/// enough for an event of `events::MAX_EVENT_BYTES` of ordinary JSON (about
/// 6x its text), not for one of dense one-digit arrays (about 32x). With
/// it a request's memory stays near 3x its body (spec/security.md).
pub const EVENT_PARSE_BUDGET: usize = 8 * events::MAX_EVENT_BYTES;

/// Refuses requests whose target and headers exceed the limit: hyper's
/// own bound is its read buffer (about 400 KB), too loose to rely on.
pub(super) async fn header_limit(
    State(max_header_bytes): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let size = req.uri().to_string().len()
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > max_header_bytes {
        return ApiError::HeadersTooLarge(size).into_response();
    }
    next.run(req).await
}

/// The body, refused beyond `limits.max_body_bytes` (413) or when it does
/// not arrive within `limits.body_timeout` (408).
pub(super) async fn read_body(body: Body, limits: &Limits) -> Result<Bytes, ApiError> {
    let limit = limits.max_body_bytes;
    let read = tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, limit));
    let Ok(read) = read.await else {
        return Err(ApiError::Timeout);
    };
    read.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::TooLarge(format!("request body over {limit} bytes"))
        } else {
            ApiError::bad("body", format!("cannot read body: {e}"))
        }
    })
}

/// Parses a small JSON request body of at most `limit` bytes.
pub(super) async fn json_body(body: Body, limit: usize) -> Result<Value, ApiError> {
    let limits = Limits {
        max_body_bytes: limit,
        ..Limits::default()
    };
    let bytes = read_body(body, &limits).await?;
    events::json::parse(&bytes).map_err(|e| ApiError::bad("body", format!("malformed JSON: {e}")))
}
