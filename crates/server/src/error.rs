//! API errors: `{"error": "<code>", "message": "..."}` with the matching status. Messages are
//! short and generic: never a stack trace, never a token.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tessera_core::{Error, StoreError};

/// A failed API call.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401: missing or wrong API key.
    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key (send Authorization: Bearer <api key>)",
        )
    }

    /// 404 for an unknown, expired or revoked token: one answer for all three.
    pub(crate) fn session_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "no live session for this token",
        )
    }

    /// 400.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 503: the store did not answer.
    pub(crate) fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the session store is unavailable; try again",
        )
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match &error {
            Error::LimitReached => Self::new(
                StatusCode::CONFLICT,
                "session_limit_reached",
                "the subject has reached its session limit",
            ),
            Error::TooManyConflicts => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "too many concurrent changes to this session; try again",
            ),
            Error::Store(StoreError::Unsupported { store, operation }) => Self::new(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported",
                format!("{operation} is not supported by the {store} store"),
            ),
            Error::Store(StoreError::NotFound) | Error::SessionEnded => Self::session_not_found(),
            Error::Data(_) => Self::bad_request("session data could not be read as requested"),
            _ => {
                tracing::error!(error = %error, source = ?std::error::Error::source(&error), "store failure");
                Self::unavailable()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.code,
            message: &self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read, so this connection cannot carry another
            // request: say so, or a pooling client sends its next request into a closing socket.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}
