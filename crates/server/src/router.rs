//! The routes.

use axum::Router;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, delete, get, post};

use crate::config::ServeConfig;
use crate::error::ApiError;
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
        .route(
            "/v1/session",
            get(api::get).patch(api::patch).delete(api::delete),
        )
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
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;
    use axum::body::Body;
    use axum::http::Request;
    use tessera_core::{Key, Policy, Record, Sessions, Store, StoreError, Timestamp};
    use tower::ServiceExt as _;

    use super::*;

    /// A store whose server is down: every operation fails as an outage.
    struct DownStore;

    fn down<T>() -> Result<T, StoreError> {
        Err(StoreError::unavailable(std::io::Error::other(
            "connection refused",
        )))
    }

    #[async_trait]
    impl Store for DownStore {
        fn name(&self) -> &'static str {
            "down"
        }
        async fn create(&self, _: &Record) -> Result<(), StoreError> {
            down()
        }
        async fn load(&self, _: &Key, _: Timestamp) -> Result<Option<Record>, StoreError> {
            down()
        }
        async fn update(&self, _: &Record, _: u64, _: Timestamp) -> Result<(), StoreError> {
            down()
        }
        async fn touch(&self, _: &Key, _: Timestamp, _: Timestamp) -> Result<bool, StoreError> {
            down()
        }
        async fn delete(&self, _: &Key) -> Result<(), StoreError> {
            down()
        }
        async fn rotate(
            &self,
            _: &Key,
            _: u64,
            _: &Record,
            _: Timestamp,
        ) -> Result<(), StoreError> {
            down()
        }
        async fn list_subject(&self, _: &str, _: Timestamp) -> Result<Vec<Record>, StoreError> {
            down()
        }
        async fn delete_subject(
            &self,
            _: &str,
            _: Option<&Key>,
            _: Timestamp,
        ) -> Result<u64, StoreError> {
            down()
        }
        async fn purge_expired(&self, _: Timestamp, _: usize) -> Result<u64, StoreError> {
            down()
        }
        async fn ping(&self) -> Result<(), StoreError> {
            down()
        }
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef01234567";

    fn app_over_a_down_store() -> Router {
        let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let state = AppState::new(Sessions::new(DownStore), KEY.into(), prometheus, false);
        let config = ServeConfig {
            listen: "127.0.0.1:7480".parse().unwrap(),
            store: crate::store_url::StoreUrl::Memory,
            policy: Policy::default().idle_timeout(Duration::from_secs(60)),
            api_key: None,
            allowed_origins: vec!["http://127.0.0.1:7480".into()],
            insecure_cookies: false,
            tls: None,
        };
        app(state, &config).unwrap()
    }

    async fn call(request: Request<Body>) -> (u16, String) {
        let response = app_over_a_down_store().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_down_store_is_503_everywhere_never_no_session() {
        let token = tessera_core::SessionId::generate().expose();
        let requests = [
            Request::get("/readyz").body(Body::empty()).unwrap(),
            Request::get("/v1/session")
                .header("authorization", format!("Bearer {KEY}"))
                .header("session-token", &token)
                .body(Body::empty())
                .unwrap(),
            Request::post("/v1/sessions")
                .header("authorization", format!("Bearer {KEY}"))
                .body(Body::empty())
                .unwrap(),
            Request::get("/v1/subjects/alice/sessions")
                .header("authorization", format!("Bearer {KEY}"))
                .body(Body::empty())
                .unwrap(),
            Request::get("/v1/auth")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        ];
        for request in requests {
            let path = request.uri().to_string();
            let (status, body) = call(request).await;
            assert_eq!(status, 503, "{path}: {body}");
            assert!(
                body.contains("\"error\":\"store_unavailable\""),
                "{path}: {body}"
            );
        }
        // The demo, through the HTTP layer, fails closed as well.
        let request = Request::get("/demo/")
            .header("cookie", format!("__Host-session={token}"))
            .body(Body::empty())
            .unwrap();
        let (status, _) = call(request).await;
        assert_eq!(status, 503);
        // Liveness does not depend on the store.
        let (status, _) = call(Request::get("/healthz").body(Body::empty()).unwrap()).await;
        assert_eq!(status, 200);
    }
}
