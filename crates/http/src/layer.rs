//! The tower [`Layer`] that gives every request a lazy [`Session`](crate::Session).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tessera_core::Engine;
use tower_layer::Layer;

use crate::config::{ConfigError, SessionConfig};
use crate::service::SessionService;

/// The session middleware: reads the token (cookie or bearer header) strictly, runs the CSRF
/// checks that need no session, hands the handler a lazy [`Session`](crate::Session), and
/// commits it after the handler returns, setting or clearing the cookie.
///
/// Built once per app from any [`Engine`]: the server-side
/// [`Sessions`](tessera_core::Sessions) or a stateless token engine.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use tessera_core::{MemoryStore, Sessions};
/// use tessera_http::{SessionConfig, SessionLayer};
///
/// let layer = SessionLayer::new(Sessions::new(MemoryStore::new()), SessionConfig::default())?;
/// let app: Router = Router::new().route("/", get(|| async { "hi" })).layer(layer);
/// # Ok::<_, tessera_http::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SessionLayer {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) config: Arc<SessionConfig>,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

static DEV_MODE_WARNED: AtomicBool = AtomicBool::new(false);

impl SessionLayer {
    /// A layer over `engine` with `config`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a configuration whose cookie a browser would drop silently (a
    /// `__Host-` cookie with a `Domain`, a path other than `/`, or without `Secure`), a
    /// malformed cookie name or path, or an allowed origin that is not an origin.
    pub fn new(engine: impl Engine, config: SessionConfig) -> Result<Self, ConfigError> {
        Self::from_arc(Arc::new(engine), config)
    }

    /// A layer over a shared engine.
    ///
    /// # Errors
    ///
    /// As [`SessionLayer::new`].
    pub fn from_arc(engine: Arc<dyn Engine>, config: SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        if config.insecure_dev_mode && !DEV_MODE_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: crate::session::TARGET,
                cookie = %config.cookie_name,
                "insecure development mode: the session cookie has no __Host- prefix and no \
                 Secure attribute and travels over plain HTTP; never use this in production"
            );
        }
        Ok(Self {
            engine,
            config: Arc::new(config),
        })
    }

    /// The configuration in effect.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}
