//! What the handlers share, and the check every authorized route makes.

use std::sync::Arc;

use axum::http::{header, HeaderMap};

use super::error::ApiError;
use super::limits::{Limits, StreamCounts};
use crate::log::Log;
use crate::server::auth::{Scope, TokenRecord, Tokens};
use crate::witness::witnessing::Witnessing;

/// What the handlers share.
pub struct AppState {
    /// The log: every append, read and proof goes through it.
    pub log: Arc<Log>,
    /// The detection rules' state.
    pub engine: Arc<std::sync::Mutex<crate::detect::engine::Engine>>,
    /// Where the detections start reading at startup.
    pub replay_from: u64,
    /// Serve `POST /v1/bench/noop` (benchmarks' floor): a test hook, only
    /// honoured in a build with the `test-hooks` feature.
    pub bench_floor: bool,
    /// The data directory (backups are written under it).
    pub data: std::path::PathBuf,
    /// Set when witnesses are configured.
    pub witnessing: Option<Arc<Witnessing>>,
    /// The bearer tokens and their scopes.
    pub tokens: Tokens,
    /// What a request may carry.
    pub limits: Limits,
    /// Open streams, for their caps.
    pub streams: std::sync::Mutex<StreamCounts>,
}

/// The token of the request's `Authorization` header, if it has `scope`.
pub(super) fn authorize(
    s: &AppState,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<TokenRecord, ApiError> {
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(s.tokens.authorize(h, scope)?)
}
