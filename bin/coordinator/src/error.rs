//! Errors the API returns: a status, a stable machine code and a sentence for people.
//! Internal failures are logged with detail and answered with a generic message, so no
//! database text, secret or personal data reaches a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::DbError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `hold_active`.
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
    /// A failed password or second factor to count towards the account's lockout once
    /// the request's transaction is gone (see `factors::record_failures`).
    pub auth_failure: Option<Box<crate::factors::AuthFailure>>,
}

/// The JSON body of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error detail.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            auth_failure: None,
        }
    }
    /// 400 for a body serde could not read: names a missing field or the position of the
    /// error, never a value (serde's own messages can quote the input).
    pub fn bad_json(e: &serde_json::Error) -> Self {
        let message = e.to_string();
        if message.starts_with("missing field") {
            let field = message.split('`').nth(1).unwrap_or("a field");
            Self::bad_request(format!("the body lacks the field `{field}`"))
        } else {
            Self::bad_request(format!(
                "the body is not the expected JSON (error at line {} column {}); see the OpenAPI document",
                e.line(),
                e.column()
            ))
        }
    }
    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 404 `not_found`.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    /// 409 with a code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    /// 422 with a code: a check refused the request.
    pub fn refused(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    /// 423 `frozen`.
    pub fn frozen(message: impl Into<String>) -> Self {
        Self::new(StatusCode::LOCKED, "frozen", message)
    }
    /// 500 `internal`, logging `detail`.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the operator can find the detail in the coordinator log",
        )
    }
    /// Whether the error is a retryable database conflict.
    pub fn is_retryable(&self) -> bool {
        self.code == "retry"
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_retryable() {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "retry",
                "the database is busy; retry with the same idempotency key",
            );
        }
        ApiError::internal(e)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(DbError::from(e))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(failure) = self.auth_failure {
            response.extensions_mut().insert(*failure);
        }
        if self.code == "locked_out" || self.code == "rate_limited" {
            // A hint for clients; the message says when.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("60"),
            );
        }
        response
    }
}
