//! Operations: `GET /metrics` (Prometheus), `GET /healthz`, and the
//! benchmarks' no-op route in test builds.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::state::AppState;

/// `GET /metrics`: Prometheus text format.
pub(super) async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let head = s.log.head();
    let g = crate::sys::metrics::Gauges {
        tree_size: head.size,
        queue_depth: s.log.queue_depth() as u64,
        indexed: s.log.indexed(),
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

/// `GET /healthz`: the latest size and the events waiting to be appended.
pub(super) async fn healthz(State(s): State<Arc<AppState>>) -> Json<Value> {
    let head = s.log.head();
    Json(json!({"status": "ok", "size": head.size, "queued": s.log.queue_depth()}))
}

/// `POST /v1/bench/noop` (only with `--bench-floor`, test builds only): reads and parses
/// the body as an append would, and answers 200 with nothing appended. The
/// load generator's floor: what HTTP and JSON alone cost on this machine.
#[cfg(feature = "test-hooks")]
pub(super) async fn bench_noop(
    State(s): State<Arc<AppState>>,
    body: axum::body::Body,
) -> Result<Json<Value>, super::error::ApiError> {
    let body = super::limits::read_body(body, &s.limits).await?;
    let v = crate::events::json::parse(&body)
        .map_err(|e| super::error::ApiError::bad("body", e.to_string()))?;
    Ok(Json(json!({"ok": v.is_object() || v.is_array()})))
}
