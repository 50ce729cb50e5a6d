//! The axum extractors.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use crate::rejection::SessionRejection;
use crate::session::Session;

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    /// Takes the handle the [`SessionLayer`](crate::SessionLayer) put in the request. Loads
    /// nothing: the session is loaded on first use.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(SessionRejection::MissingLayer)
    }
}

/// The session of a request only if the client presented a live one; never creates one. For
/// routes that must not start sessions (a status endpoint, an API behind a login).
///
/// Extracting it loads the session (one store call when a token was presented), and applies
/// the CSRF check like any use of the session.
///
/// # Example
///
/// ```
/// use tessera_http::{MaybeSession, SessionRejection};
///
/// async fn whoami(MaybeSession(session): MaybeSession) -> Result<String, SessionRejection> {
///     Ok(match session {
///         Some(session) => session.subject().await?.unwrap_or_else(|| "anonymous".into()),
///         None => "no session".into(),
///     })
/// }
/// ```
#[derive(Clone, Debug)]
pub struct MaybeSession(pub Option<Session>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeSession {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = <Session as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        Ok(Self(session.exists().await?.then_some(session)))
    }
}

/// `Option<Session>` works as an extractor too, with the meaning of [`MaybeSession`].
impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(MaybeSession::from_request_parts(parts, state).await?.0)
    }
}
