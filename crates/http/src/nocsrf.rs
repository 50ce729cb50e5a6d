//! Turning the CSRF check off for some routes.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::session::Session;

/// A layer that turns the CSRF check off for the routes it wraps: for endpoints that must
/// accept cross-site requests on purpose (a webhook, a payment provider's callback). Put it
/// inside the [`SessionLayer`](crate::SessionLayer), on the route.
///
/// The check is enforced when a handler first uses the session, so this marker only has to
/// run before the handler.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::post};
/// use tessera_core::{MemoryStore, Sessions};
/// use tessera_http::{NoCsrf, Session, SessionConfig, SessionLayer};
///
/// async fn webhook(session: Session) -> &'static str {
///     let _ = session.get::<u64>("n").await;
///     "ok"
/// }
///
/// let sessions = Sessions::new(MemoryStore::new());
/// let app: Router = Router::new()
///     .route("/webhook", post(webhook).layer(NoCsrf))
///     .layer(SessionLayer::new(sessions, SessionConfig::default())?);
/// # Ok::<_, tessera_http::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCsrf;

impl<S> Layer<S> for NoCsrf {
    type Service = NoCsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NoCsrfService { inner }
    }
}

/// The service of [`NoCsrf`].
#[derive(Clone, Debug)]
pub struct NoCsrfService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for NoCsrfService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(session) = request.extensions().get::<Session>() {
            session.exempt_from_csrf();
        }
        self.inner.call(request)
    }
}
