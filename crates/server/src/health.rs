//! `/healthz` (the process is alive) and `/readyz` (the store answers).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// 200 `{"status": "ok"}` while the process serves requests.
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 `{"status": "ready"}` when the store answers a ping; 503 `store_unavailable` otherwise.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match state.sessions.store().ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check: the store did not answer");
            ApiError::unavailable().into_response()
        }
    }
}
