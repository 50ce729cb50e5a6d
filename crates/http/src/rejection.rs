//! Typed failures of the layer and the extractors, each with its HTTP status.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use tessera_core::{DataError, Error as EngineError};

use crate::cookie::CookieError;
use crate::csrf::CsrfFailure;

/// Why a request could not use its session. Each variant knows its status code
/// ([`SessionRejection::status`]) and renders a short, generic plain-text body that never
/// contains a token or an internal error message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The session cookie appeared more than once, or the bearer header twice (400).
    #[error("ambiguous session credentials")]
    Ambiguous,
    /// The `Cookie` headers were over the configured limit (431).
    #[error("cookie header too large")]
    CookieTooLarge,
    /// The CSRF check failed (403).
    #[error("CSRF check failed: {0}")]
    Csrf(#[source] CsrfFailure),
    /// The session store could not be reached, or a commit failed (503): never treated as
    /// "no session".
    #[error("session store unavailable")]
    Unavailable(#[source] EngineError),
    /// A login was refused by the per-subject session limit (403).
    #[error("too many sessions for this user")]
    LimitReached(#[source] EngineError),
    /// A session value could not be (de)serialized as the type asked for (500).
    #[error("session data error")]
    Data(#[source] DataError),
    /// Any other engine failure (500).
    #[error("session engine error")]
    Engine(#[source] EngineError),
    /// The handler used the extractor on a route without a [`SessionLayer`](crate::SessionLayer)
    /// (500: a wiring mistake).
    #[error("session layer missing")]
    MissingLayer,
    /// The engine issued a token that cannot be put in a header (500: an engine bug).
    #[error("session token not transportable")]
    InvalidToken,
    /// The handle was used after the layer had committed the request's session, for example
    /// from a task the handler spawned (500).
    #[error("session already committed")]
    Finished,
}

impl SessionRejection {
    /// The status code this rejection is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Ambiguous => StatusCode::BAD_REQUEST,
            Self::CookieTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Csrf(_) | Self::LimitReached(_) => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Data(_)
            | Self::Engine(_)
            | Self::MissingLayer
            | Self::InvalidToken
            | Self::Finished => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Maps an engine error to the rejection (and so the status) it deserves.
    pub fn from_engine(error: EngineError) -> Self {
        match error {
            EngineError::Data(e) => Self::Data(e),
            e @ EngineError::LimitReached => Self::LimitReached(e),
            e @ (EngineError::Store(_) | EngineError::TooManyConflicts) => Self::Unavailable(e),
            e => Self::Engine(e),
        }
    }

    /// The short body text (also what [`Display`](std::fmt::Display) shows).
    fn body(&self) -> String {
        match self {
            Self::Csrf(reason) => format!("Forbidden: {reason}\n"),
            other => format!("{other}\n"),
        }
    }

    /// The response this rejection is answered with: its status, a short plain-text body,
    /// `Cache-Control: no-store`.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, Self::Unavailable(_)) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<CookieError> for SessionRejection {
    fn from(error: CookieError) -> Self {
        match error {
            CookieError::Duplicate => Self::Ambiguous,
            _ => Self::CookieTooLarge,
        }
    }
}

impl From<DataError> for SessionRejection {
    fn from(error: DataError) -> Self {
        Self::Data(error)
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for SessionRejection {
    fn into_response(self) -> axum::response::Response {
        self.to_response().map(axum::body::Body::new)
    }
}
