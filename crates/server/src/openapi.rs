//! `GET /openapi.json`: the OpenAPI 3.1 document of the service, kept by hand in
//! `openapi.json` beside this file and checked against the router by tests.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as served.
pub(crate) const DOCUMENT: &str = include_str!("openapi.json");

/// Serves [`DOCUMENT`].
pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_json() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        assert_eq!(doc["info"]["title"], "Tessera session service");
        let version = doc["info"]["version"].as_str().unwrap();
        assert_eq!(version, env!("CARGO_PKG_VERSION"));
    }
}
