//! `GET /v1/events?...`: queries over the lookup index, a page at a time.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::events::event_json;
use super::params::Params;
use super::state::{authorize, AppState};
use crate::query::{self, Cursor, Query};
use crate::server::auth::Scope;

/// `GET /v1/events?user=&actor=&src_ip=&class_uid=&activity_id=&status_id=
/// &since=&until=&order=newest|oldest&limit=&cursor=` (scope `read`).
pub(super) async fn query_events(
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
    let page = s.log.query(&q).await?;
    let events = page
        .events
        .iter()
        .map(event_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({
        "events": events,
        "next_cursor": page.next.map(|c| c.encode()),
    })))
}
