//! The state every handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tessera_core::Sessions;

use crate::metrics::MeteredEngine;

/// Shared by all handlers; cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The engine over the (metered) store.
    pub(crate) sessions: Sessions,
    /// The same engine with one commit attempt: a `PATCH` with `If-Match` must fail with 412
    /// when the version moved, not be replayed on the newer version.
    pub(crate) strict: Sessions,
    /// The engine wrapped with lifecycle counters (what the demo's HTTP layer drives).
    pub(crate) engine: MeteredEngine,
    /// The admin API key.
    pub(crate) api_key: Arc<str>,
    /// Renders `/metrics`.
    pub(crate) prometheus: PrometheusHandle,
    /// The session cookie's name (`__Host-session`, or `session` with insecure cookies).
    pub(crate) cookie_name: &'static str,
}

impl AppState {
    pub(crate) fn new(
        sessions: Sessions,
        api_key: String,
        prometheus: PrometheusHandle,
        insecure_cookies: bool,
    ) -> Self {
        let strict_policy = sessions.policy().clone().max_commit_attempts(1);
        Self {
            strict: sessions.clone().with_policy(strict_policy),
            engine: MeteredEngine::new(sessions.clone()),
            sessions,
            api_key: api_key.into(),
            prometheus,
            cookie_name: if insecure_cookies {
                "session"
            } else {
                "__Host-session"
            },
        }
    }
}
