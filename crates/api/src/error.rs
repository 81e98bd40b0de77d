//! API errors: every refusal is an HTTP status plus a one-line message naming what is wrong.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hafen_api_types::ErrorBody;
use hafen_model::Rejection;

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Try again shortly (no leader, leader changed); the client retries with the same request id.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// An operation was carried out and failed (a VM did not start, a migration was aborted).
    #[error("{0}")]
    Failed(String),
}

impl ApiError {
    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Failed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "failed"),
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Invalid(message) => ApiError::Invalid(message),
            Rejection::NotFound(message) => ApiError::NotFound(message),
            Rejection::Conflict(message) => ApiError::Conflict(message),
            Rejection::Unauthorized(message) => ApiError::Unauthorized(message),
        }
    }
}

impl From<hafen_model::ConfigError> for ApiError {
    fn from(error: hafen_model::ConfigError) -> Self {
        match error {
            hafen_model::ConfigError::NotFound(message) => ApiError::NotFound(message),
            hafen_model::ConfigError::Conflict(message) => ApiError::Conflict(message),
            other => ApiError::Invalid(other.to_string()),
        }
    }
}

impl From<hafen_store::WriteError> for ApiError {
    fn from(error: hafen_store::WriteError) -> Self {
        match error {
            hafen_store::WriteError::NotLeader { .. } => ApiError::Unavailable(
                "leadership changed while the request was in flight; retry".to_string(),
            ),
            hafen_store::WriteError::Stopped(detail) => {
                ApiError::Unavailable(format!("replica stopped: {detail}"))
            }
            hafen_store::WriteError::Membership(detail) => ApiError::Conflict(detail),
        }
    }
}

impl From<hafen_store::ReadError> for ApiError {
    fn from(error: hafen_store::ReadError) -> Self {
        match error {
            hafen_store::ReadError::NotLeader { .. } => ApiError::Unavailable(
                "leadership changed while the request was in flight; retry".to_string(),
            ),
            hafen_store::ReadError::NoQuorum(detail) => ApiError::Unavailable(format!(
                "this node leads but cannot reach a quorum of members ({detail}); retry"
            )),
            hafen_store::ReadError::Stopped(detail) => {
                ApiError::Unavailable(format!("replica stopped: {detail}"))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        let body = ErrorBody {
            kind: kind.to_string(),
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}
