//! The layer's tracing events: emitted for each lifecycle step, never with a whole token.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use support::*;
use tessera_core::SessionId;
use tessera_http::SessionConfig;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn lifecycle_events_carry_short_handles_never_tokens() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let f = fixture(SessionConfig::default());
    let anonymous = new_session(&f.app).await;
    let logged_in = send(&f.app, post_req("/login/alice", Some(&anonymous)))
        .await
        .token()
        .unwrap();
    let unknown = SessionId::generate().expose();
    send(&f.app, get_req("/get/k", Some(&unknown))).await;
    let reply = send(
        &f.app,
        raw_post(
            "/set/k/x",
            Some(&logged_in),
            &[("sec-fetch-site", "cross-site")],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    send(&f.app, post_req("/logout", Some(&logged_in))).await;

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for event in [
        "session created",
        "session rotated",
        "unknown, expired or malformed session token presented",
        "CSRF check failed",
        "session destroyed",
    ] {
        assert!(log.contains(event), "missing {event:?} in\n{log}");
    }
    let handle = SessionId::parse(&logged_in).unwrap().key().short();
    assert!(log.contains(&handle), "events name the short handle\n{log}");
    for token in [&anonymous, &logged_in, &unknown] {
        assert!(
            !log.contains(token.as_str()),
            "a whole token was logged\n{log}"
        );
        assert!(
            !log.contains(&token[..16]),
            "part of a token was logged\n{log}"
        );
    }
}
