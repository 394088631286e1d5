//! Administration (scope `admin`): tokens (`/v1/tokens`) and backups
//! (`POST /v1/admin/backup`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::limits::json_body;
use super::state::{authorize, AppState};
use crate::log::sequencer::AppendError;
use crate::log::LogError;
use crate::server::auth::{self, Minted, Scope};
use crate::store::StoreError;

/// `POST /v1/tokens` with `{"name", "scopes"}` (scope `admin`): creates a
/// token and shows it this once.
pub(super) async fn create_token(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let by = authorize(&s, &headers, Scope::Admin)?;
    let body = json_body(body, 64 << 10).await?;
    let name = body["name"]
        .as_str()
        .filter(|n| auth::valid_name(n))
        .ok_or_else(|| ApiError::bad("name", "1 to 128 of A-Z a-z 0-9 . _ - @"))?;
    let scopes: Vec<Scope> = serde_json::from_value(body["scopes"].clone())
        .ok()
        .filter(|v: &Vec<Scope>| !v.is_empty())
        .ok_or_else(|| {
            ApiError::bad(
                "scopes",
                "a non-empty array of \"append\", \"read\", \"admin\", \"risk\"",
            )
        })?;
    let new = Minted::new(name, scopes);
    let audit = s.log.create_token(new.stored(&by.name)).await?;
    let answer = json!({"name": name, "scopes": new.record.scopes, "token": new.token, "audit_index": audit});
    s.tokens.insert(new.hash, new.record);
    tracing::info!(token = %name, by = %by.name, "token created");
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /v1/tokens` (scope `admin`): names, scopes and states, never tokens.
pub(super) async fn list_tokens(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&s, &headers, Scope::Admin)?;
    Ok(Json(json!({ "tokens": s.tokens.list() })))
}

/// `POST /v1/tokens/<name>/revoke` (scope `admin`).
pub(super) async fn revoke_token(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&s, &headers, Scope::Admin)?;
    if !auth::valid_name(&name) {
        return Err(ApiError::bad("name", "1 to 128 of A-Z a-z 0-9 . _ - @"));
    }
    // Refuse the token at once. Put it back only if the revocation surely
    // did not commit (never queued); after a storage error it stays
    // refused, the safe side, until a restart reads the store.
    let Some(hash) = s.tokens.revoke(&name) else {
        return Err(ApiError::NotFound(format!(
            "no active token is named {name:?}"
        )));
    };
    let audit = match s.log.revoke_token(&name, &by.name).await {
        Ok(audit) => audit,
        Err(e) => {
            if matches!(
                e,
                LogError::Record(_)
                    | LogError::Append(AppendError::QueueFull | AppendError::Stopped)
            ) {
                s.tokens.unrevoke(&hash);
            }
            return Err(e.into());
        }
    };
    tracing::info!(token = %name, by = %by.name, "token revoked");
    Ok(Json(
        json!({"name": name, "revoked": true, "audit_index": audit}),
    ))
}

/// `POST /v1/admin/backup` (scope `admin`): writes a consistent snapshot
/// to `DIR/backups/backup-<ms>.redb` (0600) while appends go on, and
/// answers its file name and tree state. `sealog backup` calls this.
pub(super) async fn backup(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&s, &headers, Scope::Admin)?;
    let (store, data) = (s.log.store().clone(), s.data.clone());
    let (file, state) =
        tokio::task::spawn_blocking(move || crate::ops::backup::snapshot_under(&store, &data))
            .await
            .map_err(|e| StoreError::Corrupt(e.to_string()))??;
    tracing::info!(file = %file, size = state.size, by = %by.name, "backup written");
    Ok(Json(
        json!({"file": file, "size": state.size, "root": state.root.to_string()}),
    ))
}
