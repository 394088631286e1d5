//! What the detections know: `GET /v1/risk` (a user's risk) and
//! `GET /v1/events/<index>/assurance` (the step-up covering an action).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::params::{path_index, Params};
use super::state::{authorize, AppState};
use crate::server::auth::Scope;

/// `GET /v1/risk?user=<uid or name>` (scope `risk` or `read`): the user's
/// current risk level and score, the active reasons with their evidence
/// indices, and the last successful MFA authentication.
pub(super) async fn risk(
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
pub(super) async fn assurance(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(index): Path<String>,
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
    let a = crate::detect::assurance::step_up(&s.log, index, window).await?;
    let searched = json!({"user": a.user.as_str(), "user_by": a.user.member(), "session": a.session, "from": a.time.saturating_sub(a.window), "to": a.time, "window_ms": a.window});
    Ok(Json(match a.step_up {
        Some(step_up) => json!({
            "action": a.action,
            "step_up": step_up,
            "searched": searched,
        }),
        None => json!({
            "action": a.action,
            "step_up": null,
            "message": "no step-up found",
            "searched": searched,
        }),
    }))
}
