//! The routes.

use axum::Router;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, delete, get, post};

use crate::error::ApiError;
use crate::config::ServeConfig;
use crate::state::AppState;
use crate::{api, auth, demo, health, metrics, openapi};

/// Every route of the service.
///
/// # Errors
///
/// An invalid demo cookie configuration.
pub(crate) fn app(state: AppState, config: &ServeConfig) -> anyhow::Result<Router> {
    let v1 = Router::new()
        .route("/v1/sessions", post(api::create))
        .route("/v1/session", get(api::get).patch(api::patch).delete(api::delete))
        .route("/v1/session/login", post(api::login))
        .route("/v1/session/rotate", post(api::rotate))
        .route(
            "/v1/subjects/{subject}/sessions",
            get(api::list_subject).delete(api::revoke_subject),
        )
        .route("/v1/sessions/{handle}", delete(api::revoke_handle))
        .route_layer(from_fn_with_state(state.clone(), api::require_api_key));
    Ok(Router::new()
        .merge(v1)
        // Any method: proxies forward the original one (nginx's auth_request, Traefik).
        .route("/v1/auth", any(auth::forward_auth))
        .route("/openapi.json", get(openapi::document))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics_text))
        .route("/", get(|| async { Redirect::to("/demo/") }))
        .merge(demo::router(&state, config)?)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), metrics::track_http))
        .with_state(state))
}

async fn metrics_text(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let body = metrics::render(&state).await;
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}
