//! The HTTP server's routes: the table of them, in one place.
//!
//! One file of routes per area: `events` (append, read, receipt,
//! redact), `query`, `proofs` (checkpoints, proofs, tiles), `risk` (risk,
//! step-up assurance), `admin` (tokens, backup), `stream`, `ops`
//! (metrics, health). Beside them: `state` (what the handlers share,
//! authorization), `params` (query and path parsing), `limits` (what a
//! request may carry), and `error`, where errors become status codes and
//! nowhere else. A handler authorizes, parses, calls the log (`log::Log`)
//! or the engine, and serializes; the domain's work and metrics live below
//! `server/`.

mod admin;
mod error;
mod events;
mod limits;
mod ops;
mod params;
mod proofs;
mod query;
mod risk;
mod state;
mod stream;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;
pub use limits::{Limits, StreamCounts, EVENT_PARSE_BUDGET};
pub use state::AppState;

/// The routes.
pub fn router(state: Arc<AppState>) -> Router {
    #[allow(unused_mut)]
    let mut r = Router::new();
    // A release build has no such route, whatever `bench_floor` says: it
    // skips authentication.
    #[cfg(feature = "test-hooks")]
    if state.bench_floor {
        r = r.route("/v1/bench/noop", post(ops::bench_noop));
    }
    r.route("/v1/events", post(events::append).get(query::query_events))
        .route("/v1/events/{index}", get(events::read_event))
        .route("/v1/events/{index}/receipt", get(events::event_receipt))
        .route("/v1/events/{index}/redact", post(events::redact))
        .route("/v1/events/{index}/assurance", get(risk::assurance))
        .route("/v1/stream", get(stream::stream))
        .route(
            "/v1/tokens",
            post(admin::create_token).get(admin::list_tokens),
        )
        .route("/v1/tokens/{name}/revoke", post(admin::revoke_token))
        .route("/v1/admin/backup", post(admin::backup))
        .route("/checkpoint", get(proofs::checkpoint))
        .route("/checkpoint/latest", get(proofs::latest_checkpoint))
        .route("/tile/{*path}", get(proofs::tile))
        .route("/v1/proof/inclusion", get(proofs::inclusion))
        .route("/v1/proof/consistency", get(proofs::consistency))
        .route("/healthz", get(ops::healthz))
        .route("/v1/risk", get(risk::risk))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.limits.max_header_bytes,
            limits::header_limit,
        ))
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(state)
}
