//! Shared test fixtures: a counting, failure-injecting store, a test app and request helpers.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Path};
use axum::routing::{get, post};
use axum::{Form, Router};
use http::{HeaderMap, Request, Response, StatusCode, header};
use tessera_core::{ManualClock, MemoryStore, Policy, Sessions, Timestamp};
use tessera_http::{MaybeSession, NoCsrf, Session, SessionConfig, SessionLayer, SessionRejection};
use tokio::sync::Barrier;
use tower::ServiceExt;

/// A memory store that counts every call and can be told to fail.
pub type CountingStore = tessera_core::testing::CountingStore<MemoryStore>;

/// Every call that reached the store.
pub fn calls(store: &CountingStore) -> u64 {
    store.counts().total()
}

pub struct Fixture {
    pub store: Arc<CountingStore>,
    pub clock: ManualClock,
    pub sessions: Sessions,
    pub app: Router,
    pub barrier: Arc<Barrier>,
}

pub const IDLE: Duration = Duration::from_secs(30 * 60);
pub const ABSOLUTE: Duration = Duration::from_secs(4 * 60 * 60);

pub fn fixture(config: SessionConfig) -> Fixture {
    fixture_with_barrier(config, 2)
}

pub fn fixture_with_barrier(config: SessionConfig, parties: usize) -> Fixture {
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let sessions = Sessions::from_arc(store.clone())
        .with_clock(clock.clone())
        .with_policy(
            Policy::default()
                .idle_timeout(IDLE)
                .absolute_timeout(ABSOLUTE),
        );
    let barrier = Arc::new(Barrier::new(parties));
    let layer = SessionLayer::new(sessions.clone(), config).expect("valid config");
    Fixture {
        app: app(barrier.clone()).layer(layer),
        store,
        clock,
        sessions,
        barrier,
    }
}

type R<T> = std::result::Result<T, SessionRejection>;

fn app(barrier: Arc<Barrier>) -> Router {
    Router::new()
        .route(
            "/plain",
            get(|| async { "plain" }).post(|| async { "plain" }),
        )
        .route("/get/{key}", get(read))
        .route(
            "/set/{key}/{value}",
            post(set).put(set).patch(set).delete(set),
        )
        .route("/append/{item}", post(append))
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/rotate", post(rotate))
        .route("/token", get(token))
        .route("/whoami", get(whoami))
        .route("/maybe", get(maybe))
        .route("/form", post(form))
        .route("/hook", post(hook).layer(NoCsrf))
        .route("/bearer-login/{user}", post(bearer_login))
        .route("/slow-set/{key}/{value}", post(slow_set))
        .route("/slow-append/{item}", post(slow_append))
        .layer(Extension(barrier))
}

async fn read(session: Session, Path(key): Path<String>) -> R<String> {
    Ok(session
        .get::<String>(&key)
        .await?
        .unwrap_or_else(|| "none".into()))
}

async fn set(session: Session, Path((key, value)): Path<(String, String)>) -> R<&'static str> {
    session.insert(&key, &value).await?;
    Ok("set")
}

async fn append(session: Session, Path(item): Path<String>) -> R<String> {
    session
        .update("items", move |items: Option<Vec<String>>| {
            let mut items = items.unwrap_or_default();
            items.push(item.clone());
            Some(items)
        })
        .await?;
    Ok("appended".into())
}

async fn login(session: Session, Path(user): Path<String>) -> R<&'static str> {
    session.login(user).await?;
    Ok("logged in")
}

async fn logout(session: Session) -> R<&'static str> {
    session.logout().await?;
    Ok("logged out")
}

async fn rotate(session: Session) -> R<&'static str> {
    session.rotate().await?;
    Ok("rotated")
}

async fn token(session: Session) -> R<String> {
    session.csrf_token().await
}

async fn whoami(session: Session) -> R<String> {
    Ok(session
        .subject()
        .await?
        .unwrap_or_else(|| "anonymous".into()))
}

async fn maybe(MaybeSession(session): MaybeSession) -> R<String> {
    Ok(match session {
        Some(s) => format!("some {}", s.subject().await?.unwrap_or_default()),
        None => "none".into(),
    })
}

#[derive(serde::Deserialize)]
struct Note {
    note: String,
}

async fn form(session: Session, Form(note): Form<Note>) -> R<String> {
    session.insert("note", &note.note).await?;
    Ok(format!("noted {}", note.note))
}

async fn hook(session: Session) -> R<&'static str> {
    session.insert("hooked", "yes").await?;
    Ok("hooked")
}

async fn bearer_login(session: Session, Path(user): Path<String>) -> R<String> {
    session.login(user).await?;
    Ok(session.commit_now().await?.unwrap_or_default())
}

async fn slow_set(
    session: Session,
    Extension(barrier): Extension<Arc<Barrier>>,
    Path((key, value)): Path<(String, String)>,
) -> R<&'static str> {
    // Load first, then wait for the other request to have loaded too: both commit against the
    // same version, so one of them must replay.
    let _ = session.get::<String>(&key).await?;
    barrier.wait().await;
    session.insert(&key, &value).await?;
    Ok("set")
}

async fn slow_append(
    session: Session,
    Extension(barrier): Extension<Arc<Barrier>>,
    Path(item): Path<String>,
) -> R<&'static str> {
    let _ = session.get::<Vec<String>>("items").await?;
    barrier.wait().await;
    session
        .update("items", move |items: Option<Vec<String>>| {
            let mut items = items.unwrap_or_default();
            items.push(item.clone());
            Some(items)
        })
        .await?;
    Ok("appended")
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// All `Set-Cookie` values.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The single `Set-Cookie` value, if any.
    pub fn set_cookie(&self) -> Option<String> {
        let all = self.set_cookies();
        assert!(all.len() <= 1, "more than one Set-Cookie: {all:?}");
        all.into_iter().next()
    }

    /// The token a `Set-Cookie` carries (`name=value` → value), if it sets one.
    pub fn token(&self) -> Option<String> {
        let set = self.set_cookie()?;
        let pair = set.split(';').next().unwrap();
        let value = pair.split_once('=').unwrap().1;
        (!value.is_empty()).then(|| value.to_owned())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn vary(&self) -> String {
        self.headers
            .get_all(header::VARY)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response: Response<Body> = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

pub fn cookie(token: &str) -> String {
    format!("__Host-session={token}")
}

/// A GET, with the session cookie if given.
pub fn get_req(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(path);
    if let Some(token) = token {
        builder = builder.header(header::COOKIE, cookie(token));
    }
    builder.body(Body::empty()).unwrap()
}

/// A same-origin POST as a current browser sends it.
pub fn post_req(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::post(path).header("sec-fetch-site", "same-origin");
    if let Some(token) = token {
        builder = builder.header(header::COOKIE, cookie(token));
    }
    builder.body(Body::empty()).unwrap()
}

/// A POST with exactly the given extra headers (no Fetch Metadata unless given).
pub fn raw_post(path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::post(path);
    if let Some(token) = token {
        builder = builder.header(header::COOKIE, cookie(token));
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

/// Creates a session holding `k=v` and returns its token.
pub async fn new_session(app: &Router) -> String {
    let reply = send(app, post_req("/set/k/v", None)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.token().expect("a new session sets a cookie")
}
