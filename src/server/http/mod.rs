//! HTTP routes. Each handler parses and checks its input, calls one piece
//! of the log, and shapes the answer; errors map to status codes here, in
//! `ApiError`, and nowhere else.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::events::json;
use crate::events::records;
use crate::events::{self, Committed};
use crate::log::sequencer::{self, AppendError, Head, MemoHashes, Sequencer};
use crate::query::index::{Index, IndexError, View};
use crate::query::{self, Cursor, Query};
use crate::server::auth::{self, AuthError, Scope, TokenRecord, Tokens};
use crate::store::{EventRow, LogStore, Outcome, Refusal, StoreError, Write};
use crate::sys::clock;
use crate::sys::follow::{Follower, Follows, Role};
use crate::witness::witnessing::Witnessing;
use sealog_verify::note::LogSigner;
use sealog_verify::receipt::{self, ConsistencyProof, InclusionProof};
use sealog_verify::tiles::TileRef;
use sealog_verify::tree;

/// Limits on what one request may carry.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_events: usize,
    /// Time a client has to send a request body.
    pub body_timeout: std::time::Duration,
    /// Bytes of request target and headers at most (431 beyond).
    pub max_header_bytes: usize,
    /// Open streams at once (503 beyond).
    pub max_streams: usize,
    /// Open streams per token (429 beyond).
    pub max_streams_per_token: usize,
    /// A stream whose client reads nothing this long is closed.
    pub stream_idle_timeout: std::time::Duration,
    /// How far past the log's clock an event's `time` may lie (422 beyond).
    pub max_future_skew_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 << 20,
            max_events: 1000,
            body_timeout: std::time::Duration::from_secs(30),
            max_header_bytes: 64 << 10,
            max_streams: 128,
            max_streams_per_token: 8,
            stream_idle_timeout: std::time::Duration::from_secs(60),
            max_future_skew_ms: crate::detect::engine::DEFAULT_MAX_FUTURE_SKEW_MS,
        }
    }
}

/// What the handlers share.
pub struct AppState {
    /// The detection rules' state.
    pub engine: Arc<std::sync::Mutex<crate::detect::engine::Engine>>,
    /// Where the detections start reading at startup.
    pub replay_from: u64,
    /// Serve `POST /v1/bench/noop` (benchmarks' floor): a test hook, only
    /// honoured in a build with the `test-hooks` feature.
    pub bench_floor: bool,
    /// The data directory (backups are written under it).
    pub data: std::path::PathBuf,
    pub store: Arc<dyn LogStore>,
    /// The lookup indexes, kept by a follower of the log.
    pub index: Arc<Index>,
    /// Full tiles already read.
    pub tile_cache: crate::log::tile_cache::TileCache,
    pub sequencer: Arc<Sequencer>,
    /// Set when witnesses are configured.
    pub witnessing: Option<Arc<Witnessing>>,
    pub tokens: Tokens,
    pub limits: Limits,
    /// Open streams, for their caps.
    pub streams: std::sync::Mutex<StreamCounts>,
    /// For checkpoints at past sizes (receipts against a checkpoint a
    /// client holds). Signing a past size's true root cannot fork the
    /// log: that root is fixed by hashes that are never rewritten.
    pub signer: Arc<LogSigner>,
}

/// The routes.
pub fn router(state: Arc<AppState>) -> Router {
    #[allow(unused_mut)]
    let mut r = Router::new();
    // A release build has no such route, whatever `bench_floor` says: it
    // skips authentication.
    #[cfg(feature = "test-hooks")]
    if state.bench_floor {
        r = r.route("/v1/bench/noop", post(bench_noop));
    }
    r.route("/v1/events", post(append).get(query_events))
        .route("/v1/events/{index}", get(read_event))
        .route("/v1/events/{index}/receipt", get(event_receipt))
        .route("/v1/events/{index}/redact", post(redact))
        .route("/v1/events/{index}/assurance", get(assurance))
        .route("/v1/stream", get(stream))
        .route("/v1/tokens", post(create_token).get(list_tokens))
        .route("/v1/tokens/{name}/revoke", post(revoke_token))
        .route("/v1/admin/backup", post(admin_backup))
        .route("/checkpoint", get(checkpoint))
        .route("/checkpoint/latest", get(latest_checkpoint))
        .route("/tile/{*path}", get(tile))
        .route("/v1/proof/inclusion", get(inclusion_proof))
        .route("/v1/proof/consistency", get(consistency_proof))
        .route("/healthz", get(healthz))
        .route("/v1/risk", get(risk))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            header_limit,
        ))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(state)
}

/// Gives every error answer the JSON error body, including those the
/// routes do not write themselves (axum's extractor rejections, such as a
/// path segment that does not percent-decode). The bare errors hyper
/// writes for requests it cannot parse are rewritten in `listener`.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Rejections are short texts; a longer body is not shown.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        413 => "too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        431 => "headers_too_large",
        500..=599 => "internal",
        _ => "client_error",
    };
    let message = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("error").to_string(),
        false => text,
    };
    let mut error = json!({"code": code, "message": message});
    if message.starts_with("Invalid URL") {
        error["field"] = json!("path");
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(json!({ "error": error }).to_string()))
}

/// Refuses requests whose target and headers exceed the limit: hyper's
/// own bound is its read buffer (about 400 KB), too loose to rely on.
async fn header_limit(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let size = req.uri().to_string().len()
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > s.limits.max_header_bytes {
        return ApiError::HeadersTooLarge(size).into_response();
    }
    next.run(req).await
}

/// An error answer: a status and a JSON body
/// `{"error": {"code", "message", "field"?, "index"?}}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { field: String, message: String },
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("the request body did not arrive in time")]
    Timeout,
    #[error("request target and headers are {0} bytes, over the limit")]
    HeadersTooLarge(usize),
    #[error("{0}")]
    TooLarge(String),
    #[error("{error}")]
    InvalidEvent {
        index: Option<usize>,
        error: events::EventError,
    },
    #[error("event {index} was redacted by event {record}")]
    Gone { index: u64, record: u64 },
    #[error("{0}")]
    Conflict(String),
    /// A write no token may make (redacting the log's own records).
    #[error("{0}")]
    Protected(String),
    #[error("{0}")]
    TooManyStreams(String),
    #[error("{0}")]
    StreamsFull(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    Append(#[from] AppendError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Index(#[from] IndexError),
}

impl ApiError {
    fn bad(field: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Auth(AuthError::Forbidden(_)) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Auth(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Timeout => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
            ),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::InvalidEvent { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_event"),
            ApiError::Gone { .. } => (StatusCode::GONE, "redacted"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Protected(_) => (StatusCode::FORBIDDEN, "protected_record"),
            ApiError::TooManyStreams(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_streams"),
            ApiError::StreamsFull(_) => (StatusCode::SERVICE_UNAVAILABLE, "too_many_streams"),
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "not_acceptable"),
            ApiError::Append(AppendError::QueueFull) => {
                (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
            }
            ApiError::Append(AppendError::Stopped) => (StatusCode::SERVICE_UNAVAILABLE, "stopping"),
            ApiError::Append(AppendError::Refused(Refusal::UidRedacted { .. })) => {
                (StatusCode::GONE, "redacted")
            }
            ApiError::Append(AppendError::Refused(_)) => (StatusCode::CONFLICT, "uid_conflict"),
            ApiError::Append(AppendError::ReadOnly(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "read_only")
            }
            ApiError::Append(AppendError::IndexBehind(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "index_catching_up")
            }
            ApiError::Append(AppendError::Unwitnessed) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unwitnessed")
            }
            ApiError::Append(AppendError::Storage(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage")
            }
            ApiError::Store(_)
            | ApiError::Index(IndexError::Store(_))
            | ApiError::Index(IndexError::Log(_)) => (StatusCode::SERVICE_UNAVAILABLE, "storage"),
            ApiError::Index(IndexError::Lagging { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "index_catching_up")
            }
        };
        let mut body = json!({"code": code, "message": self.to_string()});
        match &self {
            ApiError::BadRequest { field, .. } => body["field"] = json!(field),
            ApiError::InvalidEvent { index, error } => {
                body["field"] = json!(error.field);
                if let Some(i) = index {
                    body["index"] = json!(i);
                }
            }
            ApiError::Gone { record, .. }
            | ApiError::Append(AppendError::Refused(Refusal::UidRedacted { record, .. })) => {
                body["redacted_by"] = json!(record)
            }
            ApiError::Store(e)
            | ApiError::Index(IndexError::Store(e))
            | ApiError::Index(IndexError::Log(e)) => {
                tracing::error!(error = %e, "storage error on a request")
            }
            _ => {}
        }
        let mut response = (status, Json(json!({ "error": body }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// What one event may cost in memory once parsed (`json::for_each_event`):
/// enough for an event of `events::MAX_EVENT_BYTES` of ordinary JSON (about
/// 6x its text), not for one of dense one-digit arrays (about 32x). With
/// it a request's memory stays near 3x its body (spec/security.md).
pub const EVENT_PARSE_BUDGET: usize = 8 * events::MAX_EVENT_BYTES;

/// How long a read waits for the index to cover the size it answers for
/// (normally milliseconds; longer only while it catches up after a restart).
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A view of the index covering the leaves below `size`.
async fn index_view(s: &AppState, size: u64) -> Result<View, ApiError> {
    let deadline = tokio::time::Instant::now() + INDEX_WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        s.index.wait_for(size, left).await?;
        let view = s.index.view()?;
        // An index reopened after an I/O error may have gone back to its
        // last durable round since the wait said yes.
        if view.indexed()? >= size {
            return Ok(view);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn authorize(s: &AppState, headers: &HeaderMap, scope: Scope) -> Result<TokenRecord, ApiError> {
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(s.tokens.authorize(h, scope)?)
}

/// `POST /v1/events`: one event object, or an array of them.
async fn append(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut events = 0;
    let r = append_inner(&s, &headers, body, &mut events).await;
    let outcome = match &r {
        Ok(_) => "ok",
        Err(ApiError::BadRequest { .. }) => "bad_request",
        Err(ApiError::Auth(_)) => "unauthorized",
        Err(ApiError::InvalidEvent { .. }) => "invalid_event",
        Err(ApiError::TooLarge(_)) => "too_large",
        Err(ApiError::Append(AppendError::QueueFull | AppendError::IndexBehind(_))) => "overloaded",
        // A uid already logged with other content is the client's conflict
        // (409), not a fault of the log's storage.
        Err(ApiError::Append(AppendError::Refused(_)) | ApiError::Conflict(_)) => "conflict",
        Err(ApiError::Append(_)) | Err(ApiError::Store(_)) => "storage",
        Err(_) => "other",
    };
    crate::sys::metrics::append(outcome, events);
    r
}

async fn append_inner(
    s: &AppState,
    headers: &HeaderMap,
    body: Body,
    events: &mut usize,
) -> Result<Response, ApiError> {
    let token = authorize(s, headers, Scope::Append)?;
    let by = events::Appender::Token(&token.name);
    // Refuse on the declared length, before the client sends it all.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.limits.max_body_bytes as u64) {
        return Err(ApiError::TooLarge(format!(
            "request body over {} bytes",
            s.limits.max_body_bytes
        )));
    }
    let body = read_body(body, &s.limits).await?;
    let logged_time = clock::now_ms();
    let single = body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[');
    let mut committed: Vec<Committed> = Vec::new();
    // Each event is prepared as soon as it is parsed, and its `Value`
    // dropped: a request holds its body, one parsed event, and the
    // canonical and stored forms of the events before it.
    let parsed = json::for_each_event(&body, EVENT_PARSE_BUDGET, s.limits.max_events, |i, v| {
        let invalid = |error| ApiError::InvalidEvent {
            index: (!single).then_some(i),
            error,
        };
        let mut e = events::prepare(v, logged_time, by).map_err(invalid)?;
        events::not_after(&e, logged_time, s.limits.max_future_skew_ms).map_err(invalid)?;
        s.store.encode_ahead(&mut e);
        committed.push(e);
        Ok(())
    });
    drop(body);
    match parsed {
        Ok(_) => {}
        Err(json::EventsError::Json(e)) => {
            return Err(ApiError::bad("body", format!("malformed JSON: {e}")))
        }
        Err(e @ (json::EventsError::TooComplex { .. } | json::EventsError::TooMany { .. })) => {
            return Err(ApiError::TooLarge(e.to_string()))
        }
        Err(json::EventsError::Refused(e)) => return Err(e),
    }
    *events = committed.len();
    if committed.is_empty() {
        return Err(ApiError::bad("body", "an empty array appends nothing"));
    }
    let receipts = s.sequencer.append(committed).await?;
    let dups = receipts.iter().filter(|r| r.duplicate).count() as u64;
    crate::sys::metrics::METRICS
        .duplicates
        .fetch_add(dups, std::sync::atomic::Ordering::Relaxed);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        sealog_verify::receipt_json::write(&receipts, single),
    )
        .into_response())
}

async fn read_body(body: Body, limits: &Limits) -> Result<Bytes, ApiError> {
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

fn note_response(note: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        note,
    )
        .into_response()
}

/// `GET /checkpoint`: with witnesses configured, the newest checkpoint
/// whose cosignatures meet the quorum; else the latest signed one.
async fn checkpoint(State(s): State<Arc<AppState>>) -> Result<Response, ApiError> {
    match &s.witnessing {
        None => Ok(note_response(s.sequencer.head().checkpoint.clone())),
        Some(w) => match w.latest() {
            Some(c) => Ok(note_response(c.note.clone())),
            None => Err(ApiError::Append(AppendError::Unwitnessed)),
        },
    }
}

/// `GET /checkpoint/latest`: the latest checkpoint the log signed, before
/// witnesses cosign it (what receipts of new appends carry).
async fn latest_checkpoint(State(s): State<Arc<AppState>>) -> Response {
    note_response(s.sequencer.head().checkpoint.clone())
}

/// `GET /tile/<L>/<N>[.p/<W>]` and `GET /tile/entries/<N>[.p/<W>]`.
/// The raw path is parsed, not a percent-decoded one: a tile has exactly
/// one canonical path, and `%2F` is not part of it.
async fn tile(State(s): State<Arc<AppState>>, uri: Uri) -> Result<Response, ApiError> {
    let path = uri.path().strip_prefix("/tile/").unwrap_or_default();
    let t = TileRef::parse(path).map_err(|e| ApiError::bad("path", e.to_string()))?;
    let size = s.sequencer.head().size;
    if !t.exists_in(size) {
        return Err(ApiError::NotFound(format!(
            "{t} does not exist in the tree of size {size}"
        )));
    }
    crate::sys::metrics::METRICS
        .tiles
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(data) = s.tile_cache.get(&t) {
        return Ok(tile_response(data));
    }
    let data = s.store.snapshot()?.tile(&t)?;
    let data = Bytes::from(data);
    s.tile_cache.put(&t, data.clone());
    Ok(tile_response(data))
}

fn tile_response(data: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        data,
    )
        .into_response()
}

/// Query parameters, parsed strictly: each at most once.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(q: Option<String>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad("query", e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for (k, _) in &pairs {
            if !seen.insert(k.as_str()) {
                return Err(ApiError::bad(k, "parameter given more than once"));
            }
        }
        Ok(Params(pairs))
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.str(name)
            .map(|v| {
                v.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| v.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| {
                        ApiError::bad(name, format!("{v:?} is not a non-negative integer"))
                    })
            })
            .transpose()
    }

    fn required_u64(&self, name: &str) -> Result<u64, ApiError> {
        self.u64(name)?
            .ok_or_else(|| ApiError::bad(name, "required parameter is missing"))
    }

    fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(ApiError::bad(
                k,
                format!("unknown parameter; expected {allowed:?}"),
            )),
            None => Ok(()),
        }
    }
}

/// `GET /v1/proof/inclusion?index=I&size=N` or `?leaf_hash=H&size=N`.
/// `size` defaults to the latest checkpoint's.
async fn inclusion_proof(
    State(s): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<InclusionProof>, ApiError> {
    let p = Params::parse(q)?;
    p.only(&["index", "leaf_hash", "size"])?;
    let current = s.sequencer.head().size;
    let size = p.u64("size")?.unwrap_or(current);
    if size == 0 || size > current {
        return Err(ApiError::bad(
            "size",
            format!("size must be in 1..={current}, the latest checkpoint's size"),
        ));
    }
    let index = match (p.u64("index")?, p.str("leaf_hash")) {
        (Some(i), None) => {
            if i >= size {
                return Err(ApiError::bad(
                    "index",
                    format!("index must be below size {size}"),
                ));
            }
            i
        }
        (None, Some(h)) => {
            // A '+' in an unencoded query reads as a space; base64 has no
            // spaces, so putting it back is unambiguous.
            let h = receipt::parse_hash(&h.replace(' ', "+"))
                .ok_or_else(|| ApiError::bad("leaf_hash", "not a base64 32-byte hash"))?;
            let view = index_view(&s, size).await?;
            match view.leaf_index(h, &s.store.snapshot()?)? {
                Some(i) if i < size => i,
                _ => {
                    return Err(ApiError::NotFound(format!(
                        "no leaf with that hash in the tree of size {size}"
                    )))
                }
            }
        }
        _ => {
            return Err(ApiError::bad(
                "index",
                "give exactly one of index and leaf_hash",
            ))
        }
    };
    // After any wait for the index: a snapshot held while waiting would
    // pin pages the log could otherwise reuse.
    let snap = s.store.snapshot()?;
    crate::sys::metrics::METRICS
        .inclusion_proofs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let hashes = tree::prove_inclusion(size, index, &snap)
        .map_err(|e| StoreError::Corrupt(format!("inclusion {index} in {size}: {e}")))?;
    Ok(Json(InclusionProof {
        index,
        size,
        hashes,
    }))
}

/// `GET /v1/proof/consistency?from=M&to=N`.
async fn consistency_proof(
    State(s): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let p = Params::parse(q)?;
    p.only(&["from", "to"])?;
    let current = s.sequencer.head().size;
    let from = p.required_u64("from")?;
    let to = p.required_u64("to")?;
    if to > current {
        return Err(ApiError::bad(
            "to",
            format!("to must be at most {current}, the latest checkpoint's size"),
        ));
    }
    if from == 0 || from > to {
        return Err(ApiError::bad("from", format!("from must be in 1..={to}")));
    }
    let snap = s.store.snapshot()?;
    crate::sys::metrics::METRICS
        .consistency_proofs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let hashes = tree::prove_consistency(from, to, &snap)
        .map_err(|e| StoreError::Corrupt(format!("consistency {from}..{to}: {e}")))?;
    Ok(Json(ConsistencyProof { from, to, hashes }))
}

/// `s` as a canonical decimal u64: digits only (no sign, no spaces), no
/// leading zero unless it is `0`, and in range; else None. One number has
/// exactly one spelling, so a cache or an audit trail never sees two names
/// for one index.
fn canonical_u64(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse::<u64>().ok()).flatten()
}

/// A leaf index from a path segment.
fn path_index(s: &str) -> Result<u64, ApiError> {
    canonical_u64(s).ok_or_else(|| {
        ApiError::bad(
            "index",
            format!("{s:?} is not a canonical decimal index (digits, no leading zero, below 2^64)"),
        )
    })
}

/// The stored event at `index` below the latest checkpoint, or 404/410.
fn stored_event(
    snap: &dyn crate::store::Snapshot,
    index: u64,
    size: u64,
) -> Result<crate::store::StoredEvent, ApiError> {
    if index >= size {
        return Err(ApiError::NotFound(format!(
            "no event at index {index}; the log has {size}"
        )));
    }
    match snap.event(index)? {
        EventRow::Present(e) => Ok(e),
        EventRow::Redacted(record) => Err(ApiError::Gone { index, record }),
        EventRow::Absent => Err(StoreError::Corrupt(format!("event {index} missing")).into()),
    }
}

/// An event as the read routes show it.
fn event_json(
    index: u64,
    e: &crate::store::StoredEvent,
    commitment: tree::Hash,
) -> Result<Value, ApiError> {
    let event: Value = serde_json::from_slice(&e.jcs)
        .map_err(|err| StoreError::Corrupt(format!("event {index}: {err}")))?;
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::prelude::BASE64_STANDARD, b);
    Ok(json!({
        "index": index,
        "event": event,
        "salt": b64(&e.salt),
        "commitment": b64(&commitment.0),
        "leaf_hash": b64(&tree::leaf_hash(&commitment.0).0),
    }))
}

/// `GET /v1/events/<index>` (scope `read`).
async fn read_event(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(index): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers, Scope::Read)?;
    let index = path_index(&index)?;
    let size = s.sequencer.head().size;
    let snap = s.store.snapshot()?;
    let e = stored_event(&snap, index, size)?;
    let commitment = snap.commitments(index, 1)?[0];
    Ok(Json(event_json(index, &e, commitment)?))
}

/// `GET /v1/events/<index>/receipt[?size=N][&format=json|tlog-proof]`
/// (scope `read`): a receipt whose proof reaches the latest checkpoint, or
/// the checkpoint of size N. `Accept: text/x.tlog.proof` asks for the
/// C2SP tlog-proof form.
async fn event_receipt(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(index): axum::extract::Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&s, &headers, Scope::Read)?;
    let index = path_index(&index)?;
    let p = Params::parse(q)?;
    p.only(&["size", "format"])?;
    let latest = s.sequencer.head();
    let snap = s.store.snapshot()?;
    stored_event(&snap, index, latest.size)?;
    let cosigned = s
        .witnessing
        .as_ref()
        .and_then(|w| w.latest())
        .filter(|c| c.size > index);
    let head = match p.u64("size")? {
        // The newest witnessed checkpoint that covers the event, if any.
        None => match cosigned {
            Some(c) => Arc::new(Head {
                size: c.size,
                root: c.root,
                checkpoint: c.note.clone(),
            }),
            None => latest,
        },
        Some(n) if n > index && n <= latest.size => {
            let root = tree::root(n, &snap)
                .map_err(|e| StoreError::Corrupt(format!("root at {n}: {e}")))?;
            Arc::new(Head {
                size: n,
                root,
                checkpoint: s.signer.sign(n, root),
            })
        }
        Some(_) => {
            return Err(ApiError::bad(
                "size",
                format!("size must be in {}..={}", index + 1, latest.size),
            ))
        }
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let tlog_proof = match p.str("format") {
        Some("tlog-proof") => true,
        Some("json") | None => accept.contains("text/x.tlog.proof"),
        Some(other) => {
            return Err(ApiError::bad(
                "format",
                format!("{other:?} is not json or tlog-proof"),
            ))
        }
    };
    let r = sequencer::stored_receipt(&snap, &MemoHashes::new(&snap), index, &head)?;
    if tlog_proof {
        let text = r
            .to_tlog_proof()
            .ok_or(ApiError::NotAcceptable("the event was redacted".into()))?;
        return Ok(([(header::CONTENT_TYPE, "text/x.tlog.proof")], text).into_response());
    }
    Ok(Json(r).into_response())
}

/// `GET /v1/events?user=&actor=&src_ip=&class_uid=&activity_id=&status_id=
/// &since=&until=&order=newest|oldest&limit=&cursor=` (scope `read`).
async fn query_events(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers, Scope::Read)?;
    let p = Params::parse(q)?;
    p.only(&[
        "user",
        "actor",
        "src_ip",
        "class_uid",
        "activity_id",
        "status_id",
        "since",
        "until",
        "order",
        "limit",
        "cursor",
    ])?;
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        match p.str(name) {
            Some(v) if v.is_empty() || v.len() > 256 => {
                Err(ApiError::bad(name, "must be 1 to 256 bytes"))
            }
            v => Ok(v.map(String::from)),
        }
    };
    let newest_first = match p.str("order") {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(other) => {
            return Err(ApiError::bad(
                "order",
                format!("{other:?} is not newest or oldest"),
            ))
        }
    };
    let small = |name: &str| -> Result<Option<i64>, ApiError> {
        p.u64(name)?
            .map(|v| i64::try_from(v).map_err(|_| ApiError::bad(name, "too large")))
            .transpose()
    };
    let limit = p.u64("limit")?.unwrap_or(query::DEFAULT_LIMIT as u64);
    if limit == 0 || limit > query::MAX_LIMIT as u64 {
        return Err(ApiError::bad(
            "limit",
            format!("must be in 1..={}", query::MAX_LIMIT),
        ));
    }
    let q = Query {
        user: text("user")?,
        actor: text("actor")?,
        src_ip: text("src_ip")?,
        class_uid: p
            .u64("class_uid")?
            .map(|c| u32::try_from(c).map_err(|_| ApiError::bad("class_uid", "too large")))
            .transpose()?,
        activity_id: small("activity_id")?,
        status_id: small("status_id")?,
        since: p.u64("since")?,
        until: p.u64("until")?,
        newest_first,
        limit: limit as usize,
        cursor: p
            .str("cursor")
            .map(|c| {
                Cursor::decode(c, newest_first).map_err(|e| ApiError::bad("cursor", e.to_string()))
            })
            .transpose()?,
    };
    if let (Some(a), Some(b)) = (q.since, q.until) {
        if a > b {
            return Err(ApiError::bad("since", "since is after until"));
        }
    }
    let size = s.sequencer.head().size;
    let view = index_view(&s, size).await?;
    let snap = s.store.snapshot()?;
    crate::sys::metrics::METRICS
        .queries
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let page = q.run(&view, &snap, size)?;
    let mut events = Vec::with_capacity(page.events.len());
    for (index, e) in &page.events {
        events.push(event_json(*index, e, snap.commitments(*index, 1)?[0])?);
    }
    Ok(Json(json!({
        "events": events,
        "next_cursor": page.next.map(|c| c.encode()),
    })))
}

/// Parses a small JSON request body.
async fn json_body(body: Body, limit: usize) -> Result<Value, ApiError> {
    let limits = Limits {
        max_body_bytes: limit,
        ..Limits::default()
    };
    let bytes = read_body(body, &limits).await?;
    crate::events::json::parse(&bytes)
        .map_err(|e| ApiError::bad("body", format!("malformed JSON: {e}")))
}

/// `POST /v1/events/<index>/redact` with `{"reason": "…"}` (scope `admin`).
async fn redact(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(index): axum::extract::Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&s, &headers, Scope::Admin)?;
    let index = path_index(&index)?;
    let body = json_body(body, 64 << 10).await?;
    let reason = body["reason"]
        .as_str()
        .filter(|r| !r.trim().is_empty() && r.len() <= 4096)
        .ok_or_else(|| {
            ApiError::bad(
                "reason",
                "a non-empty string of at most 4096 bytes is required",
            )
        })?;
    let size = s.sequencer.head().size;
    if index >= size {
        return Err(ApiError::NotFound(format!("no event at index {index}")));
    }
    // The log's own records (token changes, redactions, findings) are the
    // record of what admins did: an admin may not erase them.
    if let EventRow::Present(e) = s.store.snapshot()?.event(index)? {
        let v: Value = serde_json::from_slice(&e.jcs)
            .map_err(|err| StoreError::Corrupt(format!("event {index}: {err}")))?;
        if records::is_own_record(&v) {
            return Err(ApiError::Protected(format!(
                "event {index} is the log's own record; it cannot be redacted"
            )));
        }
    }
    let now = clock::now_ms();
    let record = events::prepare(
        records::redaction(index, reason, &by.name, now),
        now,
        events::Appender::Log,
    )
    .map_err(|error| ApiError::InvalidEvent { index: None, error })?;
    let done = s.sequencer.submit(Write::Redact { index, record }).await?;
    match done.outcome {
        Outcome::Redacted { record } => {
            tracing::info!(index, record, by = %by.name, "event redacted");
            Ok(Json(
                json!({"index": index, "redacted_by": record, "checkpoint": done.head.checkpoint}),
            ))
        }
        Outcome::Refused(crate::store::Refusal::AlreadyRedacted { index, record }) => {
            Err(ApiError::Gone { index, record })
        }
        Outcome::Refused(r) => Err(ApiError::NotFound(r.to_string())),
        other => unreachable!("a redaction answers Redacted or Refused, not {other:?}"),
    }
}

/// `POST /v1/tokens` with `{"name", "scopes"}` (scope `admin`): creates a
/// token and shows it this once.
async fn create_token(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let by = authorize(&s, &headers, Scope::Admin)?;
    let body = json_body(body, 64 << 10).await?;
    let name = body["name"]
        .as_str()
        .filter(|n| auth::valid_name(n))
        .ok_or_else(|| ApiError::bad("name", "1 to 128 of A-Z a-z 0-9 . _ - @"))?
        .to_string();
    let scopes: Vec<Scope> = serde_json::from_value(body["scopes"].clone())
        .ok()
        .filter(|v: &Vec<Scope>| !v.is_empty())
        .ok_or_else(|| {
            ApiError::bad(
                "scopes",
                "a non-empty array of \"append\", \"read\", \"admin\", \"risk\"",
            )
        })?;
    let now = clock::now_ms();
    let audit = events::prepare(
        records::token_created(&name, &scopes, &by.name, now),
        now,
        events::Appender::Log,
    )
    .map_err(|error| ApiError::InvalidEvent { index: None, error })?;
    let (token, hash) = Tokens::mint();
    let record = TokenRecord::new(&name, scopes.clone());
    let bytes = serde_json::to_vec(&record).expect("records serialize");
    let done = s
        .sequencer
        .submit(Write::CreateToken {
            hash,
            record: bytes,
            name: name.clone(),
            audit,
        })
        .await?;
    match done.outcome {
        Outcome::Token { audit } => {
            s.tokens.insert(hash, record);
            tracing::info!(token = %name, by = %by.name, "token created");
            Ok((
                StatusCode::CREATED,
                Json(json!({"name": name, "scopes": scopes, "token": token, "audit_index": audit})),
            )
                .into_response())
        }
        Outcome::Refused(r) => Err(ApiError::Conflict(r.to_string())),
        other => unreachable!("a token write answers Token or Refused, not {other:?}"),
    }
}

/// `GET /v1/tokens` (scope `admin`): names, scopes and states, never tokens.
async fn list_tokens(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers, Scope::Admin)?;
    Ok(Json(json!({ "tokens": s.tokens.list() })))
}

/// `POST /v1/tokens/<name>/revoke` (scope `admin`).
async fn revoke_token(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&s, &headers, Scope::Admin)?;
    if !auth::valid_name(&name) {
        return Err(ApiError::bad("name", "1 to 128 of A-Z a-z 0-9 . _ - @"));
    }
    if !s.tokens.is_active(&name) {
        return Err(ApiError::NotFound(format!(
            "no active token is named {name:?}"
        )));
    }
    let now = clock::now_ms();
    let audit = events::prepare(
        records::token_revoked(&name, &by.name, now),
        now,
        events::Appender::Log,
    )
    .map_err(|error| ApiError::InvalidEvent { index: None, error })?;
    // Refuse the token at once. Put it back only if the revocation surely
    // did not commit (never queued); after a storage error it stays
    // refused, the safe side, until a restart reads the store.
    let Some(hash) = s.tokens.revoke(&name) else {
        return Err(ApiError::NotFound(format!(
            "no active token is named {name:?}"
        )));
    };
    let done = match s
        .sequencer
        .submit(Write::RevokeToken {
            name: name.clone(),
            audit,
        })
        .await
    {
        Ok(done) => done,
        Err(e) => {
            if matches!(e, AppendError::QueueFull | AppendError::Stopped) {
                s.tokens.unrevoke(&hash);
            }
            return Err(e.into());
        }
    };
    match done.outcome {
        Outcome::Token { audit } => {
            tracing::info!(token = %name, by = %by.name, "token revoked");
            Ok(Json(
                json!({"name": name, "revoked": true, "audit_index": audit}),
            ))
        }
        Outcome::Refused(r) => Err(ApiError::NotFound(r.to_string())),
        other => unreachable!("a token write answers Token or Refused, not {other:?}"),
    }
}

/// `POST /v1/admin/backup` (scope `admin`): writes a consistent snapshot
/// to `DIR/backups/backup-<ms>.redb` (0600) while appends go on, and
/// answers its file name and tree state. `sealog backup` calls this.
async fn admin_backup(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&s, &headers, Scope::Admin)?;
    let dir = s.data.join("backups");
    let file = format!("backup-{}.redb", clock::now_ms());
    let path = dir.join(&file);
    let store = s.store.clone();
    let state = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        crate::sys::datadir::DataDir(dir)
            .create()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let state = store.backup_to(&path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(state)
    })
    .await
    .map_err(|e| StoreError::Corrupt(e.to_string()))??;
    tracing::info!(file = %file, size = state.size, by = %by.name, "backup written");
    Ok(Json(
        json!({"file": file, "size": state.size, "root": state.root.to_string()}),
    ))
}

/// `POST /v1/bench/noop` (only with `--bench-floor`, test builds only): reads and parses
/// the body as an append would, and answers 200 with nothing appended. The
/// load generator's floor: what HTTP and JSON alone cost on this machine.
#[cfg(feature = "test-hooks")]
async fn bench_noop(State(s): State<Arc<AppState>>, body: Body) -> Result<Json<Value>, ApiError> {
    let body = read_body(body, &s.limits).await?;
    let v = crate::events::json::parse(&body).map_err(|e| ApiError::bad("body", e.to_string()))?;
    Ok(Json(json!({"ok": v.is_object() || v.is_array()})))
}

/// `GET /v1/risk?user=<uid or name>` (scope `risk` or `read`): the user's
/// current risk level and score, the active reasons with their evidence
/// indices, and the last successful MFA authentication.
async fn risk(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers, Scope::Risk)?;
    let p = Params::parse(q)?;
    p.only(&["user"])?;
    let user = p
        .str("user")
        .filter(|u| !u.is_empty() && u.len() <= 256)
        .ok_or_else(|| ApiError::bad("user", "a user uid or name of 1 to 256 bytes is required"))?;
    let r = s.engine.lock().expect("not poisoned").risk(user);
    Ok(Json(serde_json::to_value(r).expect("JSON")))
}

/// `GET /v1/events/<index>/assurance[?window_ms=N]` (scope `read`): the
/// step-up authentication covering a sensitive action (same user, and
/// session when the action names one; a successful MFA logon within the
/// window before it, default 15 min), as two receipts proven against the
/// same checkpoint; or `"step_up": null` with the window searched.
async fn assurance(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(index): axum::extract::Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers, Scope::Read)?;
    let index = path_index(&index)?;
    let p = Params::parse(q)?;
    p.only(&["window_ms"])?;
    let window = p.u64("window_ms")?.unwrap_or(15 * 60_000);
    if window == 0 || window > 24 * 3_600_000 {
        return Err(ApiError::bad("window_ms", "must be in 1..=86400000"));
    }
    let head = s.sequencer.head();
    let view = index_view(&s, head.size).await?;
    let snap = s.store.snapshot()?;
    let action = stored_event(&snap, index, head.size)?;
    let v: Value =
        serde_json::from_slice(&action.jcs).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let (user, session) = crate::detect::assurance::subject(&v);
    let user =
        user.ok_or_else(|| ApiError::bad("index", "the event names no user or actor.user"))?;
    let time = v["time"].as_u64().unwrap_or(0);
    let searched = json!({"user": user.as_str(), "user_by": user.member(), "session": session, "from": time.saturating_sub(window), "to": time, "window_ms": window});
    let reader = MemoHashes::new(&snap);
    let action_receipt = sequencer::stored_receipt(&snap, &reader, index, &head)?;
    match crate::detect::assurance::find(
        &view,
        &snap,
        index,
        &user,
        session.as_deref(),
        time,
        window,
    )? {
        Some(i) => Ok(Json(json!({
            "action": action_receipt,
            "step_up": sequencer::stored_receipt(&snap, &reader, i, &head)?,
            "searched": searched,
        }))),
        None => Ok(Json(json!({
            "action": action_receipt,
            "step_up": null,
            "message": "no step-up found",
            "searched": searched,
        }))),
    }
}

/// `GET /v1/stream?from=<index>&class_uid=&user=` (scope `read`):
/// server-sent events, one per committed event in index order, from `from`
/// (or after the `Last-Event-ID` a reconnecting client sends), then live.
/// Each SSE id is the event's index. The stream reads the store at the
/// consumer's pace: nothing is buffered per consumer, so a slow one never
/// holds up appends, and any consumer resumes exactly where it stopped.
///
/// What must stay true: a stream ends within about a second once its token
/// is revoked (or loses `read`), once the server stops, or once its client
/// has read nothing for `stream_idle_timeout`; streams are capped per token
/// and overall, so they never hold all connection slots; and it never ends
/// or skips without a trace: an event it cannot read is sent as an
/// `unreadable` SSE event with its id, a store it cannot read ends it with
/// an `error` event, both logged and counted in
/// `sealog_stream_errors_total`.
async fn stream(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    use axum::response::sse::{KeepAlive, Sse};
    let who = authorize(&s, &headers, Scope::Read)?;
    let p = Params::parse(q)?;
    p.only(&["from", "class_uid", "user"])?;
    let resume = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(canonical_u64)
                .and_then(|id| id.checked_add(1))
                .ok_or_else(|| {
                    ApiError::bad(
                        "Last-Event-ID",
                        "not a canonical decimal index below 2^64 - 1",
                    )
                })
        })
        .transpose()?;
    let from = match resume {
        Some(next) => next,
        None => p.u64("from")?.unwrap_or(0),
    };
    let class = p.u64("class_uid")?;
    let user = p.str("user").map(String::from);
    let slot = StreamSlot::take(&s, &who.name)?;
    let auth_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let conn = extensions
        .get::<crate::net::listener::ConnHandle>()
        .cloned();
    let (end_tx, end_rx) = tokio::sync::watch::channel(None::<&'static str>);
    let polled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = tokio::time::Instant::now();
    tokio::spawn(stream_watchdog(
        s.clone(),
        auth_header,
        conn,
        end_tx,
        polled.clone(),
        started,
    ));
    let follows = Follows::Leaves {
        chunk: STREAM_CHUNK,
    };
    let follower = Follower::new(Role::Stream, follows, from, s.sequencer.watch_size());
    let state = StreamState {
        s: s.clone(),
        follower: follower.stop_on(end_rx),
        buf: Vec::new(),
        done: false,
        _slot: slot,
    };
    let events = futures_util::stream::unfold(state, move |mut st| {
        let user = user.clone();
        let polled = polled.clone();
        async move {
            polled.store(
                started.elapsed().as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let ev = st.next_event(class, user.as_deref()).await?;
            Some((Ok::<_, std::convert::Infallible>(ev), st))
        }
    });
    let keep_alive = s.limits.stream_idle_timeout.div_f64(4.0).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(15),
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response())
}

/// Counts open streams, per token name and overall.
#[derive(Default)]
pub struct StreamCounts {
    total: usize,
    by_token: std::collections::HashMap<String, usize>,
}

/// One open stream's place in the caps, given back when dropped.
struct StreamSlot {
    s: Arc<AppState>,
    token: String,
}

impl StreamSlot {
    fn take(s: &Arc<AppState>, token: &str) -> Result<Self, ApiError> {
        let mut c = s.streams.lock().expect("not poisoned");
        let mine = c.by_token.get(token).copied().unwrap_or(0);
        if mine >= s.limits.max_streams_per_token {
            return Err(ApiError::TooManyStreams(format!(
                "this token has {mine} open streams, the most one token may hold"
            )));
        }
        if c.total >= s.limits.max_streams {
            return Err(ApiError::StreamsFull(format!(
                "{} streams are open, the most the server holds",
                c.total
            )));
        }
        c.total += 1;
        *c.by_token.entry(token.to_string()).or_default() += 1;
        Ok(StreamSlot {
            s: s.clone(),
            token: token.to_string(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut c = self.s.streams.lock().expect("not poisoned");
        c.total -= 1;
        if let Some(n) = c.by_token.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                c.by_token.remove(&self.token);
            }
        }
    }
}

/// Ends a stream when it must (see `stream`): tells it why, and if its
/// body does not end soon (a client that reads nothing never polls it),
/// closes its connection.
async fn stream_watchdog(
    s: Arc<AppState>,
    auth_header: String,
    conn: Option<crate::net::listener::ConnHandle>,
    end: tokio::sync::watch::Sender<Option<&'static str>>,
    polled: Arc<std::sync::atomic::AtomicU64>,
    started: tokio::time::Instant,
) {
    const TICK: std::time::Duration = std::time::Duration::from_millis(250);
    let idle_ms = s.limits.stream_idle_timeout.as_millis() as u64;
    let why = loop {
        tokio::select! {
            _ = end.closed() => return, // the stream is gone
            _ = tokio::time::sleep(TICK) => {}
        }
        if s.tokens.authorize(Some(&auth_header), Scope::Read).is_err() {
            break "token revoked";
        }
        if conn.as_ref().is_some_and(|c| c.closing()) {
            break "server closing the connection";
        }
        let since = polled.load(std::sync::atomic::Ordering::Relaxed);
        if (started.elapsed().as_millis() as u64).saturating_sub(since) > idle_ms {
            break "client read nothing";
        }
    };
    tracing::info!(reason = why, "ending a stream");
    let _ = end.send(Some(why));
    let ended = tokio::time::timeout(std::time::Duration::from_secs(1), end.closed()).await;
    if ended.is_err() {
        if let Some(c) = conn {
            c.close();
        }
    }
}

/// Events a stream reads from one snapshot, ahead of its client.
const STREAM_CHUNK: u64 = 256;

/// A stream's position (its follower, which also ends it when the
/// watchdog says so) and what it has read ahead.
struct StreamState {
    s: Arc<AppState>,
    follower: Follower,
    /// Read events not yet sent, last first.
    buf: Vec<(u64, Result<Value, String>)>,
    done: bool,
    _slot: StreamSlot,
}

fn stream_error(what: &str, error: &dyn std::fmt::Display) {
    tracing::error!(error = %error, "stream: {what}");
    crate::sys::metrics::METRICS
        .stream_errors
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

impl StreamState {
    /// The next SSE event to send, waiting for new ones; None to end.
    ///
    /// The follower hands out the next leaves once the log has signed
    /// them. A store that cannot be read ends the stream rather than
    /// retrying: its client resumes with `Last-Event-ID`. An event that
    /// cannot be read is sent as `unreadable`.
    async fn next_event(
        &mut self,
        class: Option<u64>,
        user: Option<&str>,
    ) -> Option<axum::response::sse::Event> {
        use axum::response::sse::Event;
        loop {
            // What was read goes out unless the watchdog ends the stream;
            // once it is sent, a log that stopped ends it (`next`).
            if self.done || self.follower.stop_signalled() {
                return None;
            }
            if let Some((i, v)) = self.buf.pop() {
                let ev = Event::default().id(i.to_string());
                return Some(match v {
                    Ok(v) => ev.data(json!({"index": i, "event": v}).to_string()),
                    Err(e) => ev
                        .event("unreadable")
                        .data(json!({"index": i, "error": e}).to_string()),
                });
            }
            let range = self.follower.next().await?;
            let snap = match self.s.store.snapshot() {
                Ok(snap) => snap,
                Err(e) => {
                    // The client resumes from its last id.
                    stream_error("cannot read the store; ending the stream", &e);
                    self.done = true;
                    let body = json!({"error": {"code": "storage", "message": "the log cannot read its store; reconnect with Last-Event-ID"}});
                    return Some(Event::default().event("error").data(body.to_string()));
                }
            };
            for i in range.clone() {
                let e = match snap.event(i) {
                    Ok(EventRow::Present(e)) => e,
                    // Redacted events are not streamed.
                    Ok(EventRow::Redacted(_)) => continue,
                    Ok(EventRow::Absent) => {
                        stream_error("an event is missing from the store", &i);
                        self.buf.push((i, Err("missing from the store".into())));
                        continue;
                    }
                    Err(e) => {
                        stream_error("cannot read an event", &e);
                        self.buf.push((i, Err("cannot be read".into())));
                        continue;
                    }
                };
                let v = match serde_json::from_slice::<Value>(&e.jcs) {
                    Ok(v) => v,
                    Err(e) => {
                        stream_error("cannot parse a stored event", &e);
                        self.buf.push((i, Err("cannot be parsed".into())));
                        continue;
                    }
                };
                let class_ok = class.is_none_or(|c| v["class_uid"].as_u64() == Some(c));
                let user_ok = user.is_none_or(|u| match snap.facets(i) {
                    Ok(f) => f.is_some_and(|f| {
                        f.users.iter().any(|x| x == u) || f.actors.iter().any(|x| x == u)
                    }),
                    Err(e) => {
                        stream_error("cannot read an event's users", &e);
                        false
                    }
                });
                if class_ok && user_ok {
                    self.buf.push((i, Ok(v)));
                }
            }
            self.buf.reverse();
            self.follower.advance_to(range.end);
        }
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics_text(State(s): State<Arc<AppState>>) -> Response {
    let head = s.sequencer.head();
    let g = crate::sys::metrics::Gauges {
        tree_size: head.size,
        queue_depth: s.sequencer.queue_depth() as u64,
        indexed: s.index.indexed(),
        witness_lag: s
            .witnessing
            .as_ref()
            .map(|w| head.size - w.latest().map_or(0, |c| c.size.min(head.size))),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::sys::metrics::render(&g, crate::detect::runner::render),
    )
        .into_response()
}

async fn healthz(State(s): State<Arc<AppState>>) -> Json<Value> {
    let head = s.sequencer.head();
    Json(json!({"status": "ok", "size": head.size, "queued": s.sequencer.queue_depth()}))
}
