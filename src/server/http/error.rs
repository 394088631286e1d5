//! Errors as types, mapped to status codes and the JSON error body
//! `{"error": {"code", "message", "field"?, "index"?}}` here and nowhere
//! else: `ApiError::into_response` for the routes' errors (and the log's,
//! through `From<LogError>`), `json_errors` for those axum writes itself.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::log::sequencer::AppendError;
use crate::log::LogError;
use crate::query::index::IndexError;
use crate::server::auth::AuthError;
use crate::store::{Refusal, StoreError};

/// Gives every error answer the JSON error body, including those the
/// routes do not write themselves (axum's extractor rejections, such as a
/// path segment that does not percent-decode). The bare errors hyper
/// writes for requests it cannot parse are rewritten in `listener`.
pub(super) async fn json_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
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

/// An error answer: a status and a JSON body
/// `{"error": {"code", "message", "field"?, "index"?}}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad_request`: a malformed parameter or body.
    #[error("{message}")]
    BadRequest {
        /// The parameter or body member at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// 401 `unauthorized`, or 403 `forbidden` for a missing scope.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 405 `method_not_allowed`.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 408 `timeout`: the body did not arrive within `body_timeout`.
    #[error("the request body did not arrive in time")]
    Timeout,
    /// 431 `headers_too_large`.
    #[error("request target and headers are {0} bytes, over the limit")]
    HeadersTooLarge(usize),
    /// 413 `too_large`: body, events or parse cost over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 422 `invalid_event`, with the field and (in an array) the index.
    #[error("{error}")]
    InvalidEvent {
        /// Position of the event in the posted array; `None` for a single
        /// event.
        index: Option<usize>,
        /// What is wrong, and in which field.
        error: crate::events::EventError,
    },
    /// 410 `redacted`, with `redacted_by`.
    #[error("event {index} was redacted by event {record}")]
    Gone {
        /// The erased event's leaf index.
        index: u64,
        /// Leaf index of the redaction record (`redacted_by`).
        record: u64,
    },
    /// 409 `conflict`.
    #[error("{0}")]
    Conflict(String),
    /// 403 `protected_record`: a write no token may make (redacting the log's own records).
    #[error("{0}")]
    Protected(String),
    /// 429 `too_many_streams`: this token's streams are at their cap.
    #[error("{0}")]
    TooManyStreams(String),
    /// 503 `too_many_streams`: the server's streams are at their cap.
    #[error("{0}")]
    StreamsFull(String),
    /// 406 `not_acceptable`.
    #[error("{0}")]
    NotAcceptable(String),
    /// 503 with the reason's code (`overloaded`, `read_only`, ...), or
    /// 409 `uid_conflict` / 410 `redacted` for a uid already logged.
    #[error("{0}")]
    Append(#[from] AppendError),
    /// 503 `storage`, logged.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// 503 `storage` or `index_catching_up`.
    #[error("{0}")]
    Index(#[from] IndexError),
}

impl ApiError {
    /// A 400 naming the parameter or field at fault.
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
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

impl From<LogError> for ApiError {
    /// What the log refused, as the error answer it is: the statuses are
    /// those of the `ApiError` variants, in `into_response`.
    fn from(e: LogError) -> Self {
        match e {
            LogError::NotFound(m) => ApiError::NotFound(m),
            LogError::Redacted { index, record } => ApiError::Gone { index, record },
            LogError::BadArgument { field, message } => ApiError::BadRequest {
                field: field.to_string(),
                message,
            },
            LogError::Conflict(m) => ApiError::Conflict(m),
            LogError::Protected(m) => ApiError::Protected(m),
            LogError::Record(error) => ApiError::InvalidEvent { index: None, error },
            LogError::Append(e) => ApiError::Append(e),
            LogError::Store(e) => ApiError::Store(e),
            LogError::Index(e) => ApiError::Index(e),
        }
    }
}
