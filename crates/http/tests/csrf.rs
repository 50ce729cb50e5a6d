//! The CSRF defence of cookie sessions, through `tower::ServiceExt::oneshot`.

mod support;

use axum::body::Body;
use http::{Request, StatusCode, header};
use support::*;
use tessera_http::SessionConfig;

/// A POST with the session cookie, a token in the `X-CSRF-Token` header and no browser signal.
fn post_with_token(path: &str, session: &str, token: &str) -> Request<Body> {
    raw_post(path, Some(session), &[("x-csrf-token", token)])
}

async fn csrf_token(f: &Fixture, session: &str) -> String {
    let reply = send(&f.app, get_req("/token", Some(session))).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body
}

#[tokio::test]
async fn a_cross_site_post_is_rejected_and_changes_nothing() {
    let f = fixture(SessionConfig::default());
    let session = new_session(&f.app).await;
    let reply = send(
        &f.app,
        raw_post(
            "/set/k/evil",
            Some(&session),
            &[("sec-fetch-site", "cross-site")],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.body.contains("cross-site"), "{}", reply.body);
    assert!(reply.vary().contains("sec-fetch-site"), "{}", reply.vary());
    assert_eq!(
        send(&f.app, get_req("/get/k", Some(&session))).await.body,
        "v"
    );
    // Even with a valid token and a good Origin: Fetch Metadata decides first.
    let token = csrf_token(&f, &session).await;
    let reply = send(
        &f.app,
        raw_post(
            "/set/k/evil",
            Some(&session),
            &[
                ("sec-fetch-site", "cross-site"),
                ("x-csrf-token", &token),
                ("origin", "https://app.example"),
                ("host", "app.example"),
            ],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // Every unsafe method is checked.
    for method in ["PUT", "PATCH", "DELETE"] {
        let request = Request::builder()
            .method(method)
            .uri("/set/k/evil")
            .header(header::COOKIE, cookie(&session))
            .header("sec-fetch-site", "cross-site")
            .body(Body::empty())
            .unwrap();
        let reply = send(&f.app, request).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method}");
    }
    assert_eq!(
        send(&f.app, get_req("/get/k", Some(&session))).await.body,
        "v"
    );
}

#[tokio::test]
async fn same_site_fails_unless_allowed_and_none_passes() {
    let f = fixture(SessionConfig::default());
    let session = new_session(&f.app).await;
    let same_site = || {
        raw_post(
            "/set/k/w",
            Some(&session),
            &[("sec-fetch-site", "same-site")],
        )
    };
    assert_eq!(
        send(&f.app, same_site()).await.status,
        StatusCode::FORBIDDEN
    );
    let none = raw_post("/set/k/w", Some(&session), &[("sec-fetch-site", "none")]);
    assert_eq!(send(&f.app, none).await.status, StatusCode::OK);

    let f = fixture(SessionConfig::default().allow_same_site(true));
    let session = new_session(&f.app).await;
    let request = raw_post(
        "/set/k/w",
        Some(&session),
        &[("sec-fetch-site", "same-site")],
    );
    assert_eq!(send(&f.app, request).await.status, StatusCode::OK);
}

#[tokio::test]
async fn origin_is_checked_exactly_when_fetch_metadata_is_absent() {
    let f = fixture(SessionConfig::default().allowed_origins(["https://shop.example"]));
    let session = new_session(&f.app).await;
    let post = |origin: &str| raw_post("/set/k/w", Some(&session), &[("origin", origin)]);
    assert_eq!(
        send(&f.app, post("https://shop.example")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&f.app, post("https://shop.example:443")).await.status,
        StatusCode::OK
    );
    for wrong in [
        "https://evil.example",
        "http://shop.example",
        "https://shop.example:8443",
        "https://shop.example.evil.example",
        "null",
        "garbage",
    ] {
        let reply = send(&f.app, post(wrong)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{wrong}");
        assert!(reply.vary().contains("origin"));
    }
    assert_eq!(
        send(&f.app, get_req("/get/k", Some(&session))).await.body,
        "w"
    );
}

#[tokio::test]
async fn without_configured_origins_the_request_host_is_the_origin() {
    let f = fixture(SessionConfig::default());
    let session = new_session(&f.app).await;
    let post = |origin: &str| {
        raw_post(
            "/set/k/w",
            Some(&session),
            &[("origin", origin), ("host", "app.example")],
        )
    };
    assert_eq!(
        send(&f.app, post("https://app.example")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&f.app, post("http://app.example")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&f.app, post("https://evil.example")).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_post_with_no_signal_and_no_token_is_rejected() {
    let f = fixture(SessionConfig::default());
    let session = new_session(&f.app).await;
    let reply = send(&f.app, raw_post("/set/k/w", Some(&session), &[])).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.body.contains("missing CSRF token"), "{}", reply.body);
    assert_eq!(
        send(&f.app, get_req("/get/k", Some(&session))).await.body,
        "v"
    );
}

#[tokio::test]
async fn the_synchronizer_token_passes_from_header_and_form_field() {
    let f = fixture(SessionConfig::default());
    let session = new_session(&f.app).await;
    let a = csrf_token(&f, &session).await;
    let b = csrf_token(&f, &session).await;
    assert_ne!(a, b, "masked afresh on every call");
    let reply = send(&f.app, post_with_token("/set/k/w", &session, &a)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.vary().contains("origin, sec-fetch-site"));
    // In a form field, the body still reaches the handler whole.
    let request = Request::post("/form")
        .header(header::COOKIE, cookie(&session))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("note=hello+world&csrf_token={b}")))
        .unwrap();
    let reply = send(&f.app, request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "noted hello world");
}

#[tokio::test]
async fn a_token_from_another_session_is_rejected() {
    let f = fixture(SessionConfig::default());
    let mine = new_session(&f.app).await;
    let theirs = new_session(&f.app).await;
    let their_token = csrf_token(&f, &theirs).await;
    let reply = send(&f.app, post_with_token("/set/k/evil", &mine, &their_token)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.body.contains("invalid CSRF token"));
    for garbage in ["", "x", &"A".repeat(86), &their_token[..85]] {
        let reply = send(&f.app, post_with_token("/set/k/evil", &mine, garbage)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{garbage:?}");
    }
    assert_eq!(send(&f.app, get_req("/get/k", Some(&mine))).await.body, "v");
}

#[tokio::test]
async fn a_pre_login_token_is_rejected_after_login() {
    let f = fixture(SessionConfig::default());
    let anonymous = new_session(&f.app).await;
    let before = csrf_token(&f, &anonymous).await;
    let logged_in = send(&f.app, post_with_token("/login/alice", &anonymous, &before))
        .await
        .token()
        .expect("login with a valid token works");
    let reply = send(&f.app, post_with_token("/set/k/w", &logged_in, &before)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let after = csrf_token(&f, &logged_in).await;
    let reply = send(&f.app, post_with_token("/set/k/w", &logged_in, &after)).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_for_a_new_session_survives_to_the_next_request() {
    let f = fixture(SessionConfig::default());
    let reply = send(&f.app, get_req("/token", None)).await;
    let session = reply.token().expect("minting a token stores the session");
    let reply = send(&f.app, post_with_token("/set/k/w", &session, &reply.body)).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn the_check_can_be_turned_off_per_route() {
    let f = fixture(SessionConfig::default());
    let session = new_session(&f.app).await;
    let cross = |path: &str| raw_post(path, Some(&session), &[("sec-fetch-site", "cross-site")]);
    assert_eq!(send(&f.app, cross("/hook")).await.status, StatusCode::OK);
    assert_eq!(
        send(&f.app, get_req("/get/hooked", Some(&session)))
            .await
            .body,
        "yes"
    );
    assert_eq!(
        send(&f.app, cross("/set/k/w")).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn safe_methods_are_not_checked() {
    let f = fixture(SessionConfig::default());
    let session = new_session(&f.app).await;
    let request = Request::get("/get/k")
        .header(header::COOKIE, cookie(&session))
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    let reply = send(&f.app, request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "v");
}

#[tokio::test]
async fn login_csrf_from_a_cross_site_form_is_rejected_without_a_cookie() {
    let f = fixture(SessionConfig::default());
    let reply = send(
        &f.app,
        raw_post("/login/mallory", None, &[("sec-fetch-site", "cross-site")]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.set_cookie().is_none());
    let reply = send(
        &f.app,
        raw_post("/login/mallory", None, &[("origin", "null")]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}
