//! The JSON API, forward-auth, health, metrics and the OpenAPI document, over HTTP against the
//! real binary, on `memory:` and on SQLite.

mod common;

use common::Server;
use reqwest::Method;
use serde_json::{Value, json};

const TOKEN: &str = "Session-Token";

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON error body");
    assert!(body["message"].is_string(), "{body}");
    (status, body["error"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn session_lifecycle_on_every_store() {
    for store in common::stores() {
        let server = Server::start(store, &[]).await;
        let (token, view) = server
            .create(json!({"data": {"cart": ["tea"]}, "client": {"ip": "203.0.113.9", "user_agent": "test/1"}}))
            .await;
        assert_eq!(token.len(), 43, "{store}");
        assert_eq!(view["subject"], Value::Null);
        assert_eq!(view["data"], json!({"cart": ["tea"]}));
        assert_eq!(view["version"], 1);
        assert_eq!(
            view["client"],
            json!({"ip": "203.0.113.9", "user_agent": "test/1"})
        );
        for field in [
            "created_at",
            "last_seen_at",
            "expires_at",
            "absolute_expires_at",
        ] {
            assert!(
                view[field].as_str().unwrap().ends_with('Z'),
                "{field}: {view}"
            );
        }
        assert_ne!(
            view["handle"].as_str().unwrap(),
            token,
            "the handle is not the token"
        );

        // GET
        let got: Value = server
            .api(Method::GET, "/v1/session")
            .header(TOKEN, &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["handle"], view["handle"]);

        // PATCH: a merge patch of data, with If-Match.
        let response = server
            .api(Method::PATCH, "/v1/session")
            .header(TOKEN, &token)
            .header("If-Match", "\"1\"")
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"theme": "dark", "cart": null, "prefs": {"a": 1}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{store}");
        let patched: Value = response.json().await.unwrap();
        assert_eq!(patched["data"], json!({"theme": "dark", "prefs": {"a": 1}}));
        assert_eq!(patched["version"], 2);
        let patched: Value = server
            .api(Method::PATCH, "/v1/session")
            .header(TOKEN, &token)
            .json(&json!({"prefs": {"b": 2, "a": null}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(patched["data"]["prefs"], json!({"b": 2}));

        // A stale If-Match is 412 and changes nothing.
        let response = server
            .api(Method::PATCH, "/v1/session")
            .header(TOKEN, &token)
            .header("If-Match", "\"1\"")
            .json(&json!({"theme": "light"}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (412, "version_mismatch".into()));

        // Login: new token, old one dead at once, data kept.
        let response = server
            .api(Method::POST, "/v1/session/login")
            .header(TOKEN, &token)
            .json(&json!({"subject": "alice"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let logged: Value = response.json().await.unwrap();
        let token2 = logged["token"].as_str().unwrap().to_owned();
        assert_ne!(token2, token);
        assert_eq!(logged["session"]["subject"], "alice");
        assert_eq!(logged["session"]["data"]["theme"], "dark");
        assert!(logged["session"]["authenticated_at"].is_string());
        let response = server
            .api(Method::GET, "/v1/session")
            .header(TOKEN, &token)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (404, "session_not_found".into()));

        // Rotate: another new token, same subject.
        let rotated: Value = server
            .api(Method::POST, "/v1/session/rotate")
            .header(TOKEN, &token2)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token3 = rotated["token"].as_str().unwrap().to_owned();
        assert_ne!(token3, token2);
        assert_eq!(rotated["session"]["subject"], "alice");
        let response = server
            .api(Method::GET, "/v1/session")
            .header(TOKEN, &token2)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);

        // DELETE, then it is gone.
        let response = server
            .api(Method::DELETE, "/v1/session")
            .header(TOKEN, &token3)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        let response = server
            .api(Method::GET, "/v1/session")
            .header(TOKEN, &token3)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (404, "session_not_found".into()));
        let response = server
            .api(Method::DELETE, "/v1/session")
            .header(TOKEN, &token3)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_status_is_json_and_never_echoes_a_token() {
    for store in common::stores() {
        let server = Server::start(store, &[]).await;
        let (token, _) = server.create(json!({})).await;

        // 401: no key, wrong key.
        let response = server
            .client
            .get(server.url("/v1/session"))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (401, "unauthorized".into()));
        let response = server
            .client
            .get(server.url("/v1/session"))
            .bearer_auth("x".repeat(43))
            .header(TOKEN, &token)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (401, "unauthorized".into()));

        // 400: missing token, malformed token, malformed body, bad If-Match, bad subject.
        let response = server.api(Method::GET, "/v1/session").send().await.unwrap();
        assert_eq!(error_of(response).await, (400, "bad_request".into()));
        let response = server
            .api(Method::GET, "/v1/session")
            .header(TOKEN, "not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (400, "bad_request".into()));
        let response = server
            .api(Method::POST, "/v1/sessions")
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (400, "bad_request".into()));
        let response = server
            .api(Method::PATCH, "/v1/session")
            .header(TOKEN, &token)
            .json(&json!(["not", "an", "object"]))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (400, "bad_request".into()));
        let response = server
            .api(Method::PATCH, "/v1/session")
            .header(TOKEN, &token)
            .header("If-Match", "*")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (400, "bad_request".into()));
        let response = server
            .api(Method::POST, "/v1/session/login")
            .header(TOKEN, &token)
            .json(&json!({"subject": ""}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (400, "bad_request".into()));
        let response = server
            .api(Method::POST, "/v1/session/login")
            .header(TOKEN, &token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (400, "bad_request".into()));

        // 404 for an unknown (well-formed) token.
        let unknown = "A".repeat(43);
        let response = server
            .api(Method::GET, "/v1/session")
            .header(TOKEN, &unknown)
            .send()
            .await
            .unwrap();
        let text = response.text().await.unwrap();
        assert!(
            text.contains("session_not_found") && !text.contains(&unknown),
            "{text}"
        );

        // 413 over the limit, 415 for a non-JSON body.
        let big = format!("{{\"data\": {{\"x\": \"{}\"}}}}", "a".repeat(70 * 1024));
        let response = server
            .api(Method::POST, "/v1/sessions")
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (413, "payload_too_large".into()));
        let response = server
            .api(Method::PATCH, "/v1/session")
            .header(TOKEN, &token)
            .header("content-type", "text/plain")
            .body("theme=dark")
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_of(response).await,
            (415, "unsupported_media_type".into())
        );

        // Unknown routes and methods are JSON too.
        let response = server.client.get(server.url("/nope")).send().await.unwrap();
        assert_eq!(error_of(response).await, (404, "not_found".into()));
        let response = server
            .client
            .put(server.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (405, "method_not_allowed".into()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn subjects_list_and_revoke_and_revoke_by_handle() {
    for store in common::stores() {
        let server = Server::start(store, &[]).await;
        let (a, va) = server
            .create(json!({"subject": "bob", "data": {"x": 1}}))
            .await;
        let (b, vb) = server.create(json!({"subject": "bob"})).await;
        let (c, vc) = server.create(json!({"subject": "bob"})).await;
        let (other, _) = server.create(json!({"subject": "carol"})).await;

        let list: Value = server
            .api(Method::GET, "/v1/subjects/bob/sessions")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sessions = list["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 3, "{store}: {list}");
        assert!(
            sessions.iter().all(|s| s.get("data").is_none()),
            "lists carry no data"
        );
        let handles: Vec<&str> = sessions
            .iter()
            .map(|s| s["handle"].as_str().unwrap())
            .collect();
        for v in [&va, &vb, &vc] {
            assert!(handles.contains(&v["handle"].as_str().unwrap()));
        }

        // A handle is not a token.
        let response = server
            .api(Method::GET, "/v1/session")
            .header(TOKEN, va["handle"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);

        // Revoke one by handle: 204, then 404; malformed: 400.
        let path = format!("/v1/sessions/{}", vc["handle"].as_str().unwrap());
        assert_eq!(
            server
                .api(Method::DELETE, &path)
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
        let response = server.api(Method::DELETE, &path).send().await.unwrap();
        assert_eq!(error_of(response).await, (404, "session_not_found".into()));
        let response = server
            .api(Method::DELETE, "/v1/sessions/short")
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, (400, "bad_request".into()));
        let response = server
            .api(Method::GET, "/v1/session")
            .header(TOKEN, &c)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);

        // Revoke all but one.
        let path = format!(
            "/v1/subjects/bob/sessions?except={}",
            va["handle"].as_str().unwrap()
        );
        let revoked: Value = server
            .api(Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(revoked, json!({"revoked": 1}));
        assert_eq!(
            server
                .api(Method::GET, "/v1/session")
                .header(TOKEN, &a)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            server
                .api(Method::GET, "/v1/session")
                .header(TOKEN, &b)
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
        let response = server
            .api(Method::DELETE, "/v1/subjects/bob/sessions?except=bad")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let revoked: Value = server
            .api(Method::DELETE, "/v1/subjects/bob/sessions")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(revoked, json!({"revoked": 1}));
        // Carol's session is untouched.
        assert_eq!(
            server
                .api(Method::GET, "/v1/session")
                .header(TOKEN, &other)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_subject_limit_rejects_or_evicts() {
    let server = Server::start(
        "memory:",
        &["--max-sessions-per-subject", "1", "--on-limit", "reject"],
    )
    .await;
    server.create(json!({"subject": "dora"})).await;
    let response = server
        .api(Method::POST, "/v1/sessions")
        .json(&json!({"subject": "dora"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (409, "session_limit_reached".into())
    );

    let server = Server::start("memory:", &["--max-sessions-per-subject", "1"]).await;
    let (first, _) = server.create(json!({"subject": "dora"})).await;
    let (second, _) = server.create(json!({"subject": "dora"})).await;
    let status = |t: String| {
        let req = server.api(Method::GET, "/v1/session").header(TOKEN, t);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(first).await, 404, "the oldest was evicted");
    assert_eq!(status(second).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_reads_cookie_or_bearer() {
    for store in common::stores() {
        let server = Server::start(store, &[]).await;
        let (token, view) = server.create(json!({"subject": "erin"})).await;
        let (anonymous, _) = server.create(json!({})).await;
        let auth = || server.client.get(server.url("/v1/auth"));

        for request in [
            auth().header("cookie", format!("theme=dark; __Host-session={token}")),
            auth().bearer_auth(&token),
        ] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{store}");
            assert_eq!(response.headers()["tessera-subject"], "erin");
            assert_eq!(
                response.headers()["tessera-session"],
                view["handle"].as_str().unwrap()
            );
        }
        // nginx forwards the original method.
        let response = server
            .client
            .post(server.url("/v1/auth"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);

        // 401: nothing, unknown, malformed, anonymous, the dev cookie name, two cookies.
        for request in [
            auth(),
            auth().bearer_auth("A".repeat(43)),
            auth().bearer_auth("garbage"),
            auth().bearer_auth(&anonymous),
            auth().header("cookie", format!("session={token}")),
            auth().header(
                "cookie",
                format!("__Host-session={token}; __Host-session={token}"),
            ),
        ] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401);
            assert!(response.headers().get("tessera-subject").is_none());
        }
    }
    // With --insecure-cookies the cookie is called `session`.
    let server = Server::start("memory:", &["--insecure-cookies"]).await;
    let (token, _) = server.create(json!({"subject": "erin"})).await;
    let response = server
        .client
        .get(server.url("/v1/auth"))
        .header("cookie", format!("session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_metrics_and_openapi() {
    let server = Server::start("sqlite", &[]).await;
    assert_eq!(
        server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready: Value = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");

    let (token, _) = server.create(json!({})).await;
    server
        .api(Method::POST, "/v1/session/login")
        .header(TOKEN, &token)
        .json(&json!({"subject": "m"}))
        .send()
        .await
        .unwrap();
    server
        .api(Method::GET, "/v1/session")
        .header(TOKEN, "A".repeat(43))
        .send()
        .await
        .unwrap();
    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for needle in [
        "tessera_sessions_created_total 1",
        "tessera_sessions_rotated_total 1",
        "tessera_sessions_destroyed_total",
        "tessera_sessions_expired_total",
        "tessera_sessions_revoked_total",
        "tessera_sessions_active 1",
        "tessera_unknown_session_requests_total 1",
        "tessera_csrf_rejections_total",
        "tessera_store_operation_duration_seconds_bucket{operation=\"create\"",
        "tessera_http_requests_total{method=\"POST\",route=\"/v1/sessions\",status=\"201\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

/// The API routes as the router has them: the OpenAPI document must list exactly these.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/sessions"),
    ("get", "/v1/session"),
    ("patch", "/v1/session"),
    ("delete", "/v1/session"),
    ("post", "/v1/session/login"),
    ("post", "/v1/session/rotate"),
    ("get", "/v1/subjects/{subject}/sessions"),
    ("delete", "/v1/subjects/{subject}/sessions"),
    ("delete", "/v1/sessions/{handle}"),
    ("get", "/v1/auth"),
    ("get", "/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_matches_the_routes() {
    let server = Server::start("memory:", &[]).await;
    let doc: Value = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            documented.push((method.clone(), path.clone(), op.clone()));
        }
    }
    let mut listed: Vec<(String, String)> = documented
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    listed.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);

    // Every documented operation is routed, and answers with one of its documented statuses
    // (called with a valid key and a real session, but no body).
    let (token, view) = server.create(json!({"subject": "oa"})).await;
    for (method, path, op) in &documented {
        let concrete = path
            .replace("{subject}", "oa")
            .replace("{handle}", view["handle"].as_str().unwrap());
        let method: Method = method.to_uppercase().parse().unwrap();
        let response = server
            .api(method.clone(), &concrete)
            .header(TOKEN, &token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16().to_string();
        assert!(
            op["responses"].get(&status).is_some(),
            "{method} {path} answered {status}, which it does not document"
        );
        if status == "404" || status == "405" {
            let body: Value = response.json().await.unwrap();
            assert_ne!(body["error"], "not_found", "{method} {path} is not routed");
            assert_ne!(
                body["error"], "method_not_allowed",
                "{method} {path} is not routed"
            );
        }
    }
}
