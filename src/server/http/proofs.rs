//! What clients and witnesses check the log with: checkpoints
//! (`/checkpoint`, `/checkpoint/latest`), tiles (C2SP tlog-tiles), and
//! inclusion and consistency proofs (RFC 9162 §2.1.3, §2.1.4).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::params::Params;
use super::state::AppState;
use crate::log::sequencer::AppendError;
use sealog_verify::receipt::{self, ConsistencyProof, InclusionProof};
use sealog_verify::tiles::TileRef;

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
pub(super) async fn checkpoint(State(s): State<Arc<AppState>>) -> Result<Response, ApiError> {
    match &s.witnessing {
        None => Ok(note_response(s.log.head().checkpoint.clone())),
        Some(w) => match w.latest() {
            Some(c) => Ok(note_response(c.note.clone())),
            None => Err(ApiError::Append(AppendError::Unwitnessed)),
        },
    }
}

/// `GET /checkpoint/latest`: the latest checkpoint the log signed, before
/// witnesses cosign it (what receipts of new appends carry).
pub(super) async fn latest_checkpoint(State(s): State<Arc<AppState>>) -> Response {
    note_response(s.log.head().checkpoint.clone())
}

/// `GET /tile/<L>/<N>[.p/<W>]` and `GET /tile/entries/<N>[.p/<W>]`.
/// The raw path is parsed, not a percent-decoded one: a tile has exactly
/// one canonical path, and `%2F` is not part of it.
pub(super) async fn tile(State(s): State<Arc<AppState>>, uri: Uri) -> Result<Response, ApiError> {
    let path = uri.path().strip_prefix("/tile/").unwrap_or_default();
    let t = TileRef::parse(path).map_err(|e| ApiError::bad("path", e.to_string()))?;
    Ok(tile_response(s.log.tile(&t)?))
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

/// `GET /v1/proof/inclusion?index=I&size=N` or `?leaf_hash=H&size=N`.
/// `size` defaults to the latest checkpoint's.
pub(super) async fn inclusion(
    State(s): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<InclusionProof>, ApiError> {
    let p = Params::parse(q)?;
    p.only(&["index", "leaf_hash", "size"])?;
    let current = s.log.head().size;
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
            s.log.leaf_index(h, size).await?
        }
        _ => {
            return Err(ApiError::bad(
                "index",
                "give exactly one of index and leaf_hash",
            ))
        }
    };
    Ok(Json(s.log.prove_inclusion(index, size)?))
}

/// `GET /v1/proof/consistency?from=M&to=N`.
pub(super) async fn consistency(
    State(s): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let p = Params::parse(q)?;
    p.only(&["from", "to"])?;
    let current = s.log.head().size;
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
    Ok(Json(s.log.prove_consistency(from, to)?))
}
