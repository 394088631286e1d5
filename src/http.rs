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

use crate::auth::{AuthError, Scope, Tokens};
use crate::event::{self, Committed};
use crate::receipt::{self, ConsistencyProof, InclusionProof};
use crate::sequencer::{AppendError, Sequencer};
use crate::store::{Store, StoreError};
use crate::tiles::{self, TileRef};
use crate::tree;

/// Limits on what one request may carry.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 << 20,
            max_events: 1000,
        }
    }
}

/// What the handlers share.
pub struct AppState {
    pub store: Arc<Store>,
    pub sequencer: Sequencer,
    pub tokens: Tokens,
    pub limits: Limits,
}

/// The routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/events", post(append))
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        .route("/v1/proof/inclusion", get(inclusion_proof))
        .route("/v1/proof/consistency", get(consistency_proof))
        .route("/healthz", get(healthz))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
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
    #[error("{0}")]
    TooLarge(String),
    #[error("{error}")]
    InvalidEvent {
        index: Option<usize>,
        error: event::EventError,
    },
    #[error("{0}")]
    Append(#[from] AppendError),
    #[error("{0}")]
    Store(#[from] StoreError),
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
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::InvalidEvent { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_event"),
            ApiError::Append(AppendError::QueueFull) => {
                (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
            }
            ApiError::Append(AppendError::Stopped) => (StatusCode::SERVICE_UNAVAILABLE, "stopping"),
            ApiError::Append(AppendError::Storage(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage")
            }
            ApiError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage"),
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
            ApiError::Store(e) => tracing::error!(error = %e, "storage error on a request"),
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

fn authorize(s: &AppState, headers: &HeaderMap, scope: Scope) -> Result<(), ApiError> {
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    s.tokens.authorize(h, scope)?;
    Ok(())
}

/// `POST /v1/events`: one event object, or an array of them.
async fn append(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&s, &headers, Scope::Append)?;
    let body = read_body(body, s.limits.max_body_bytes).await?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("body", format!("malformed JSON: {e}")))?;
    let (values, single) = match value {
        Value::Array(a) => (a, false),
        v => (vec![v], true),
    };
    if values.is_empty() {
        return Err(ApiError::bad("body", "an empty array appends nothing"));
    }
    if values.len() > s.limits.max_events {
        return Err(ApiError::TooLarge(format!(
            "{} events in one request; the limit is {}",
            values.len(),
            s.limits.max_events
        )));
    }
    let committed = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            event::canonical(v)
                .map(Committed::new)
                .map_err(|error| ApiError::InvalidEvent {
                    index: (!single).then_some(i),
                    error,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let receipts = s.sequencer.append(committed).await?;
    Ok(if single {
        Json(&receipts[0]).into_response()
    } else {
        Json(receipts).into_response()
    })
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::TooLarge(format!("request body over {limit} bytes"))
        } else {
            ApiError::bad("body", format!("cannot read body: {e}"))
        }
    })
}

/// `GET /checkpoint`: the latest signed checkpoint.
async fn checkpoint(State(s): State<Arc<AppState>>) -> Response {
    let head = s.sequencer.head();
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        head.checkpoint.clone(),
    )
        .into_response()
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
    let snap = s.store.snapshot()?;
    let data = match t.level {
        None => {
            let commitments = snap.commitments(t.first_entry(), u64::from(t.width))?;
            tiles::entry_bundle(commitments.iter().map(|c| &c.0[..]))
        }
        Some(level) => tlog_tiles::Tile::new(tiles::HEIGHT, level, t.index, t.width, false)
            .read_data(&snap)
            .map_err(|e| StoreError::Corrupt(format!("{t}: {e}")))?,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        data,
    )
        .into_response())
}

/// Query parameters, parsed strictly: each at most once.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(q: Option<String>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad("query", e.to_string()))?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(k2, _)| k2 == k) {
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
    let snap = s.store.snapshot()?;
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
            match snap.leaf_index(h)? {
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
    let hashes = tree::prove_consistency(from, to, &snap)
        .map_err(|e| StoreError::Corrupt(format!("consistency {from}..{to}: {e}")))?;
    Ok(Json(ConsistencyProof { from, to, hashes }))
}

async fn healthz(State(s): State<Arc<AppState>>) -> Json<Value> {
    let head = s.sequencer.head();
    Json(json!({"status": "ok", "size": head.size, "queued": s.sequencer.queue_depth()}))
}
