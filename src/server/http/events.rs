//! Events: `POST /v1/events` (append), `GET /v1/events/<index>` and its
//! receipt, `POST /v1/events/<index>/redact`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::limits::{json_body, read_body, EVENT_PARSE_BUDGET};
use super::params::{path_index, Params};
use super::state::{authorize, AppState};
use crate::events::json::{self, EventsError};
use crate::events::Appender;
use crate::log::sequencer::Head;
use crate::log::{LoggedEvent, ReceiptAt};
use crate::server::auth::Scope;
use crate::store::StoreError;
use sealog_verify::tree;

/// `POST /v1/events`: one event object, or an array of them. Requests
/// refused before they reach the log (authorization, size, parsing) are
/// counted here by their outcome; those the log answers, by the log.
pub(super) async fn append(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let r = append_inner(&s, &headers, body).await;
    let outcome = match &r {
        // Counted by `Log::append`.
        Ok(_) | Err(ApiError::Append(_)) => return r,
        Err(ApiError::BadRequest { .. }) => "bad_request",
        Err(ApiError::Auth(_)) => "unauthorized",
        Err(ApiError::InvalidEvent { .. }) => "invalid_event",
        Err(ApiError::TooLarge(_)) => "too_large",
        Err(ApiError::Conflict(_)) => "conflict",
        Err(ApiError::Store(_)) => "storage",
        Err(_) => "other",
    };
    crate::sys::metrics::append(outcome, 0);
    r
}

async fn append_inner(s: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let token = authorize(s, headers, Scope::Append)?;
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
    let mut batch = s.log.batch(Appender::Token(&token.name));
    let single = body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[');
    // Each event is prepared as soon as it is parsed, and its `Value`
    // dropped: a request holds its body, one parsed event, and the
    // canonical and stored forms of the events before it.
    let parsed = json::for_each_event(&body, EVENT_PARSE_BUDGET, s.limits.max_events, |i, v| {
        batch.push(v).map_err(|error| ApiError::InvalidEvent {
            index: (!single).then_some(i),
            error,
        })
    });
    drop(body);
    match parsed {
        Ok(_) => {}
        Err(EventsError::Json(e)) => {
            return Err(ApiError::bad("body", format!("malformed JSON: {e}")))
        }
        Err(e @ (EventsError::TooComplex { .. } | EventsError::TooMany { .. })) => {
            return Err(ApiError::TooLarge(e.to_string()))
        }
        Err(EventsError::Refused(e)) => return Err(e),
    }
    if batch.is_empty() {
        return Err(ApiError::bad("body", "an empty array appends nothing"));
    }
    let receipts = s.log.append(batch).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        sealog_verify::receipt_json::write(&receipts, single),
    )
        .into_response())
}

/// An event as the read routes show it.
pub(super) fn event_json(e: &LoggedEvent) -> Result<Value, ApiError> {
    let index = e.index;
    let event: Value = serde_json::from_slice(&e.event.jcs)
        .map_err(|err| StoreError::Corrupt(format!("event {index}: {err}")))?;
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::prelude::BASE64_STANDARD, b);
    Ok(json!({
        "index": index,
        "event": event,
        "salt": b64(&e.event.salt),
        "commitment": b64(&e.commitment.0),
        "leaf_hash": b64(&tree::leaf_hash(&e.commitment.0).0),
    }))
}

/// `GET /v1/events/<index>` (scope `read`).
pub(super) async fn read_event(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(index): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers, Scope::Read)?;
    let index = path_index(&index)?;
    Ok(Json(event_json(&s.log.event(index)?)?))
}

/// `GET /v1/events/<index>/receipt[?size=N][&format=json|tlog-proof]`
/// (scope `read`): a receipt whose proof reaches the latest checkpoint
/// (the newest witnessed one that covers the event, when witnesses are
/// configured), or the checkpoint of size N. `Accept: text/x.tlog.proof`
/// asks for the C2SP tlog-proof form.
pub(super) async fn event_receipt(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(index): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&s, &headers, Scope::Read)?;
    let index = path_index(&index)?;
    let p = Params::parse(q)?;
    p.only(&["size", "format"])?;
    let at = match receipt_at(&s, &p) {
        Ok(at) => at,
        Err(e) => {
            // An event that is not there (404) or redacted (410) is the
            // answer before a malformed parameter's 400.
            s.log.event(index)?;
            return Err(e);
        }
    };
    let r = s.log.receipt(index, at)?;
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
    if tlog_proof {
        let text = r
            .to_tlog_proof()
            .ok_or(ApiError::NotAcceptable("the event was redacted".into()))?;
        return Ok(([(header::CONTENT_TYPE, "text/x.tlog.proof")], text).into_response());
    }
    Ok(Json(r).into_response())
}

/// The checkpoint a receipt request asks for: `size`, else the newest
/// witnessed checkpoint (used if it covers the event), else the latest.
fn receipt_at(s: &AppState, p: &Params) -> Result<ReceiptAt, ApiError> {
    Ok(match p.u64("size")? {
        Some(n) => ReceiptAt::Size(n),
        None => match s.witnessing.as_ref().and_then(|w| w.latest()) {
            Some(c) => ReceiptAt::Checkpoint(Arc::new(Head {
                size: c.size,
                root: c.root,
                checkpoint: c.note.clone(),
            })),
            None => ReceiptAt::Latest,
        },
    })
}

/// `POST /v1/events/<index>/redact` with `{"reason": "…"}` (scope `admin`).
pub(super) async fn redact(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(index): Path<String>,
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
    let done = s.log.redact(index, reason, &by.name).await?;
    Ok(Json(
        json!({"index": index, "redacted_by": done.record, "checkpoint": done.head.checkpoint}),
    ))
}
