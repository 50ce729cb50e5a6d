//! The session layer end to end, through `tower::ServiceExt::oneshot` (no sockets).

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode, header};
use support::*;
use tessera_core::SessionId;
use tessera_http::{SessionConfig, SessionLayer};

#[tokio::test]
async fn a_handler_that_never_touches_the_session_makes_no_store_call() {
    let f = fixture(SessionConfig::default());
    let token = new_session(&f.app).await;
    let before = calls(&f.store);
    for request in [
        get_req("/plain", Some(&token)),
        get_req("/plain", None),
        post_req("/plain", Some(&token)),
        raw_post("/plain", Some(&token), &[("sec-fetch-site", "cross-site")]),
    ] {
        let reply = send(&f.app, request).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.set_cookie().is_none());
        assert!(reply.header("cache-control").is_none());
    }
    assert_eq!(
        calls(&f.store),
        before,
        "no store call for untouched sessions"
    );
}

#[tokio::test]
async fn a_new_session_gets_a_host_cookie_with_safe_attributes() {
    let f = fixture(SessionConfig::default());
    let reply = send(&f.app, post_req("/set/k/v", None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let set = reply.set_cookie().unwrap();
    let token = reply.token().unwrap();
    assert!(SessionId::parse(&token).is_some());
    assert!(set.starts_with("__Host-session="), "{set}");
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(
            set.split("; ").any(|a| a == attribute),
            "{attribute} in {set}"
        );
    }
    assert!(!set.contains("Domain"), "{set}");
    assert!(
        set.contains(&format!("Max-Age={}", ABSOLUTE.as_secs())),
        "{set}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    // A session with nothing in it is not stored and sets no cookie.
    let reply = send(&f.app, get_req("/get/k", None)).await;
    assert_eq!(reply.body, "none");
    assert!(reply.set_cookie().is_none());
}

#[tokio::test]
async fn max_age_never_reaches_past_the_absolute_deadline() {
    let f = fixture(SessionConfig::default());
    let token = new_session(&f.app).await;
    // Keep it alive past half its absolute lifetime, then rotate (which keeps the deadline).
    for _ in 0..5 {
        f.clock.advance(Duration::from_secs(25 * 60));
        let reply = send(&f.app, get_req("/get/k", Some(&token))).await;
        assert_eq!(reply.body, "v");
    }
    let reply = send(&f.app, post_req("/rotate", Some(&token))).await;
    let set = reply.set_cookie().unwrap();
    let remaining = ABSOLUTE.as_secs() - 5 * 25 * 60;
    assert!(set.contains(&format!("Max-Age={remaining}")), "{set}");
}

#[tokio::test]
async fn browser_session_cookies_have_no_max_age() {
    let f = fixture(SessionConfig::default().browser_session_cookie());
    let reply = send(&f.app, post_req("/set/k/v", None)).await;
    let set = reply.set_cookie().unwrap();
    assert!(
        !set.contains("Max-Age") && !set.contains("Expires"),
        "{set}"
    );
}

#[tokio::test]
async fn the_session_round_trips_and_reads_do_not_reissue_the_cookie() {
    let f = fixture(SessionConfig::default());
    let token = new_session(&f.app).await;
    let reply = send(&f.app, get_req("/get/k", Some(&token))).await;
    assert_eq!(reply.body, "v");
    assert!(reply.set_cookie().is_none());
    assert!(reply.vary().contains("cookie"));
    let reply = send(&f.app, post_req("/set/k/w", Some(&token))).await;
    assert!(reply.set_cookie().is_none(), "an update keeps the ID");
    assert_eq!(
        send(&f.app, get_req("/get/k", Some(&token))).await.body,
        "w"
    );
}

#[tokio::test]
async fn an_unknown_id_is_never_adopted() {
    let f = fixture(SessionConfig::default());
    let unknown = SessionId::generate().expose();
    let reply = send(&f.app, get_req("/get/k", Some(&unknown))).await;
    assert_eq!(reply.body, "none");
    // Nothing issued: the stale cookie is cleared.
    let set = reply.set_cookie().unwrap();
    assert!(set.contains("Max-Age=0"), "{set}");
    // Writing makes a new session under a fresh ID, never the presented one.
    let reply = send(&f.app, post_req("/set/k/v", Some(&unknown))).await;
    let fresh = reply.token().unwrap();
    assert_ne!(fresh, unknown);
    assert_eq!(
        send(&f.app, get_req("/get/k", Some(&unknown))).await.body,
        "none"
    );
    assert_eq!(
        send(&f.app, get_req("/get/k", Some(&fresh))).await.body,
        "v"
    );
}

#[tokio::test]
async fn an_expired_id_is_never_adopted() {
    let f = fixture(SessionConfig::default());
    let token = new_session(&f.app).await;
    f.clock.advance(IDLE + Duration::from_secs(1));
    let reply = send(&f.app, get_req("/get/k", Some(&token))).await;
    assert_eq!(reply.body, "none");
    let reply = send(&f.app, post_req("/set/k/again", Some(&token))).await;
    assert_ne!(reply.token().unwrap(), token);
}

#[tokio::test]
async fn a_malformed_id_costs_no_store_call() {
    let f = fixture(SessionConfig::default());
    let good = SessionId::generate().expose();
    for bad in [
        "abc",
        &format!("{good}="),
        &format!("\"{good}\""),
        &good[..42],
        "%00",
    ] {
        let loads = f.store.counts().load.load(Ordering::SeqCst);
        let reply = send(&f.app, get_req("/get/k", Some(bad))).await;
        assert_eq!(reply.status, StatusCode::OK, "{bad}");
        assert_eq!(reply.body, "none");
        assert_eq!(f.store.counts().load.load(Ordering::SeqCst), loads, "{bad}");
    }
}

#[tokio::test]
async fn two_session_cookies_are_rejected() {
    let f = fixture(SessionConfig::default());
    let token = new_session(&f.app).await;
    let other = SessionId::generate().expose();
    let one_header = Request::get("/get/k")
        .header(
            header::COOKIE,
            format!("__Host-session={other}; __Host-session={token}"),
        )
        .body(Body::empty())
        .unwrap();
    let two_headers = Request::get("/get/k")
        .header(header::COOKIE, format!("__Host-session={token}"))
        .header(header::COOKIE, format!("a=b; __Host-session={token}"))
        .body(Body::empty())
        .unwrap();
    for request in [one_header, two_headers] {
        let reply = send(&f.app, request).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(!reply.body.contains(&token));
    }
}

#[tokio::test]
async fn cookie_names_match_byte_for_byte_and_every_cookie_header_is_read() {
    let f = fixture(SessionConfig::default());
    let token = new_session(&f.app).await;
    for name in [
        "__HOST-session",
        "__host-session",
        "__Host-Session",
        "session",
    ] {
        let request = Request::get("/get/k")
            .header(header::COOKIE, format!("{name}={token}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&f.app, request).await.body, "none", "{name}");
    }
    let request = Request::get("/get/k")
        .header(header::COOKIE, "a=1; b=2")
        .header(
            header::COOKIE,
            format!("__HOST-session=x; __Host-session={token}"),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, request).await.body, "v");
}

#[tokio::test]
async fn an_oversized_cookie_header_gets_431() {
    let f = fixture(SessionConfig::default());
    let big = format!("junk={}", "x".repeat(9000));
    let request = Request::get("/get/k")
        .header(header::COOKIE, big)
        .body(Body::empty())
        .unwrap();
    let reply = send(&f.app, request).await;
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Split over several headers counts the same.
    let mut builder = Request::get("/plain");
    for _ in 0..3 {
        builder = builder.header(header::COOKIE, format!("j={}", "y".repeat(3000)));
    }
    let reply = send(&f.app, builder.body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(calls(&f.store), 0);
}

#[tokio::test]
async fn an_id_in_the_query_string_or_a_form_field_is_never_accepted() {
    let f = fixture(SessionConfig::default());
    let token = new_session(&f.app).await;
    for query in ["__Host-session", "session", "id", "session_id", "token"] {
        let reply = send(&f.app, get_req(&format!("/get/k?{query}={token}"), None)).await;
        assert_eq!(reply.body, "none", "{query}");
    }
    let request = Request::post("/form")
        .header("sec-fetch-site", "same-origin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "note=x&__Host-session={token}&session={token}"
        )))
        .unwrap();
    let reply = send(&f.app, request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_ne!(
        reply.token().unwrap(),
        token,
        "a new session, not the one in the form"
    );
    assert_eq!(
        send(&f.app, get_req("/get/note", Some(&token))).await.body,
        "none"
    );
}

#[tokio::test]
async fn login_issues_a_new_id_and_kills_the_old_one() {
    let f = fixture(SessionConfig::default());
    let anonymous = new_session(&f.app).await;
    let reply = send(&f.app, post_req("/login/alice", Some(&anonymous))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let logged_in = reply.token().unwrap();
    assert_ne!(logged_in, anonymous);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(
        send(&f.app, get_req("/whoami", Some(&logged_in)))
            .await
            .body,
        "alice"
    );
    assert_eq!(
        send(&f.app, get_req("/get/k", Some(&logged_in))).await.body,
        "v",
        "data carried over"
    );
    assert_eq!(
        send(&f.app, get_req("/whoami", Some(&anonymous)))
            .await
            .body,
        "anonymous"
    );
    assert_eq!(
        send(&f.app, get_req("/get/k", Some(&anonymous))).await.body,
        "none"
    );
}

#[tokio::test]
async fn logout_destroys_clears_the_cookie_and_the_site_data() {
    let f = fixture(SessionConfig::default());
    let token = new_session(&f.app).await;
    let token = send(&f.app, post_req("/login/alice", Some(&token)))
        .await
        .token()
        .unwrap();
    let reply = send(&f.app, post_req("/logout", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let set = reply.set_cookie().unwrap();
    assert!(set.starts_with("__Host-session=;"), "{set}");
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=0"] {
        assert!(
            set.split("; ").any(|a| a == attribute),
            "{attribute} in {set}"
        );
    }
    assert_eq!(
        reply.header("clear-site-data"),
        Some("\"cache\", \"cookies\", \"storage\"")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    // Replaying the old cookie: no session, and it is not brought back.
    let reply = send(&f.app, get_req("/whoami", Some(&token))).await;
    assert_eq!(reply.body, "anonymous");
    let reply = send(&f.app, post_req("/set/k/v", Some(&token))).await;
    assert_ne!(reply.token().unwrap(), token);
    assert_eq!(
        send(&f.app, get_req("/whoami", Some(&token))).await.body,
        "anonymous"
    );
}

#[tokio::test]
async fn maybe_session_never_creates_one() {
    let f = fixture(SessionConfig::default());
    let reply = send(&f.app, get_req("/maybe", None)).await;
    assert_eq!(reply.body, "none");
    assert!(reply.set_cookie().is_none());
    assert_eq!(calls(&f.store), 0);
    let token = new_session(&f.app).await;
    let token = send(&f.app, post_req("/login/bob", Some(&token)))
        .await
        .token()
        .unwrap();
    assert_eq!(
        send(&f.app, get_req("/maybe", Some(&token))).await.body,
        "some bob"
    );
    let unknown = SessionId::generate().expose();
    assert_eq!(
        send(&f.app, get_req("/maybe", Some(&unknown))).await.body,
        "none"
    );
}

#[tokio::test]
async fn a_store_outage_is_503_never_no_session() {
    let f = fixture(SessionConfig::default());
    let token = new_session(&f.app).await;
    f.store.set_failing_reads(true);
    let reply = send(&f.app, get_req("/get/k", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.set_cookie().is_none(),
        "the cookie is kept during an outage"
    );
    assert_eq!(
        send(&f.app, get_req("/plain", Some(&token))).await.status,
        StatusCode::OK
    );
    f.store.set_failing_reads(false);

    // A failed commit replaces the handler's response.
    f.store.set_failing_writes(true);
    let reply = send(&f.app, post_req("/set/k/w", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let reply = send(&f.app, post_req("/set/k/w", None)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.set_cookie().is_none(),
        "no cookie for a session that was not stored"
    );
    let reply = send(&f.app, post_req("/logout", Some(&token))).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "never a logout that did not happen"
    );
    assert!(reply.header("clear-site-data").is_none());
    // A read whose touch fails is 503 too by default.
    f.clock.advance(Duration::from_secs(120));
    let reply = send(&f.app, get_req("/get/k", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    f.store.set_failing_writes(false);
    assert_eq!(
        send(&f.app, get_req("/get/k", Some(&token))).await.body,
        "v"
    );
}

#[tokio::test]
async fn a_failed_read_only_commit_can_be_logged_instead() {
    let f = fixture(SessionConfig::default().read_only_commit_failure_is_logged(true));
    let token = new_session(&f.app).await;
    f.store.set_failing_writes(true);
    f.clock.advance(Duration::from_secs(120)); // a touch is due
    let reply = send(&f.app, get_req("/get/k", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "v");
    // Real changes still fail loudly.
    let reply = send(&f.app, post_req("/set/k/w", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn concurrent_requests_changing_different_keys_both_land() {
    let f = fixture(SessionConfig::default());
    let token = new_session(&f.app).await;
    let (a, b) = tokio::join!(
        send(&f.app, post_req("/slow-set/a/1", Some(&token))),
        send(&f.app, post_req("/slow-set/b/2", Some(&token))),
    );
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(
        send(&f.app, get_req("/get/a", Some(&token))).await.body,
        "1"
    );
    assert_eq!(
        send(&f.app, get_req("/get/b", Some(&token))).await.body,
        "2"
    );
    assert_eq!(
        send(&f.app, get_req("/get/k", Some(&token))).await.body,
        "v"
    );
}

#[tokio::test]
async fn concurrent_appends_with_update_all_land() {
    const N: usize = 8;
    let f = fixture_with_barrier(SessionConfig::default(), N);
    let token = new_session(&f.app).await;
    let requests = (0..N).map(|i| {
        send(
            &f.app,
            post_req(&format!("/slow-append/item{i}"), Some(&token)),
        )
    });
    let replies = futures_join_all(requests).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    let record = f.sessions.load(&token).await.unwrap().expect("live");
    let mut items: Vec<String> = record.get("items").unwrap().unwrap();
    items.sort();
    let mut expected: Vec<String> = (0..N).map(|i| format!("item{i}")).collect();
    expected.sort();
    assert_eq!(items, expected);
}

async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut out = Vec::new();
    // Poll them all concurrently on this task.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        results[i] = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().map(|r| r.expect("ready")));
    out
}

#[tokio::test]
async fn bearer_transport_sets_no_cookie_and_needs_no_csrf() {
    let f = fixture(SessionConfig::default().bearer());
    let request = Request::post("/bearer-login/carol")
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    let reply = send(&f.app, request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.set_cookie().is_none());
    let token = reply.body.clone();
    assert!(SessionId::parse(&token).is_some());
    assert_eq!(reply.header("x-session-token"), Some(token.as_str()));
    assert_eq!(reply.header("cache-control"), Some("no-store"));

    let authorized = |path: &str, token: &str| {
        Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(&f.app, authorized("/whoami", &token)).await.body,
        "carol"
    );
    // A cookie means nothing in bearer mode, nor does the query string.
    assert_eq!(
        send(&f.app, get_req("/whoami", Some(&token))).await.body,
        "anonymous"
    );
    let reply = send(
        &f.app,
        get_req(&format!("/whoami?access_token={token}"), None),
    )
    .await;
    assert_eq!(reply.body, "anonymous");
    // Two Authorization headers are ambiguous.
    let request = Request::get("/whoami")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::AUTHORIZATION, "Bearer other")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, request).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_custom_bearer_header_is_read() {
    let name = http::HeaderName::from_static("x-api-session");
    let f = fixture(SessionConfig::default().bearer_header(name));
    let token = send(
        &f.app,
        Request::post("/bearer-login/dan")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .body;
    let request = Request::get("/whoami")
        .header("x-api-session", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, request).await.body, "dan");
}

#[tokio::test]
async fn dev_mode_uses_a_plain_insecure_cookie() {
    let f = fixture(SessionConfig::default().insecure_dev_mode());
    let reply = send(
        &f.app,
        Request::post("/set/k/v")
            .header("sec-fetch-site", "same-origin")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let set = reply.set_cookie().unwrap();
    assert!(set.starts_with("session="), "{set}");
    assert!(!set.contains("Secure"), "{set}");
    assert!(set.contains("HttpOnly"), "{set}");
}

#[test]
fn a_configuration_browsers_would_drop_is_refused_when_building_the_layer() {
    let sessions = || tessera_core::Sessions::new(tessera_core::MemoryStore::new());
    for config in [
        SessionConfig::default().domain("example.com"),
        SessionConfig::default().path("/app"),
        SessionConfig::default().secure(false),
    ] {
        let error = SessionLayer::new(sessions(), config).unwrap_err();
        assert!(error.to_string().contains("__Host-"), "{error}");
    }
}

#[tokio::test]
async fn a_read_with_no_touch_due_only_loads_and_a_due_touch_writes_once() {
    let f = fixture(SessionConfig::default());
    let token = new_session(&f.app).await;
    let counts = || {
        let c = f.store.counts();
        (
            c.load.load(Ordering::SeqCst),
            c.update.load(Ordering::SeqCst) + c.touch.load(Ordering::SeqCst),
        )
    };
    let (loads, writes) = counts();
    for _ in 0..3 {
        let reply = send(&f.app, get_req("/get/k", Some(&token))).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.set_cookie().is_none());
        // The response depends on the cookie even though nothing was written.
        assert!(reply.header("vary").is_some_and(|v| v.contains("cookie")));
    }
    assert_eq!(
        counts(),
        (loads + 3, writes),
        "reads within the touch interval write nothing"
    );

    f.clock.advance(Duration::from_secs(120)); // past the default touch interval
    let reply = send(&f.app, get_req("/get/k", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(counts(), (loads + 4, writes + 1), "a due touch is written");
    assert_eq!(
        f.store.counts().touch.load(Ordering::SeqCst),
        1,
        "the touch is a touch, not a rewrite"
    );
}
