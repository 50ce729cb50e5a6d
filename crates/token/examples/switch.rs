//! Run: `cargo run -p tessera-token --example switch -- cookie` (or `server`, or `jwt`), then
//! open <http://127.0.0.1:3000>. Add `check` after the engine name to run a scripted round of
//! requests in-process instead of serving.
//!
//! One app, three ways to keep its sessions, picked by a flag: server-side sessions in a store
//! (here the memory store), the whole session in an encrypted cookie, or the whole session in
//! a signed JWT. The handlers and the HTTP layer are the same for all three; the stateless
//! engines keep only their revocation records (logout, "log out everywhere") in the store.
//!
//! Plain HTTP development mode (no `Secure`, no `__Host-` prefix) so it works on localhost. Keys
//! are generated at start: tokens do not survive a restart of the example.

use std::error::Error;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use tessera_core::{Engine, MemoryStore, Sessions, Store};
use tessera_http::{Session, SessionConfig, SessionLayer, SessionRejection};
use tessera_token::{CookieEngine, CookieKey, JwtEngine, JwtKey, KeyRing, Revocation};
use tower::ServiceExt;

/// The only place the three kinds differ.
fn engine(kind: &str, config: &SessionConfig) -> Result<Arc<dyn Engine>, Box<dyn Error>> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    Ok(match kind {
        "server" => Arc::new(Sessions::from_arc(store)),
        "cookie" => Arc::new(
            CookieEngine::new(KeyRing::new(CookieKey::generate("k1")?))
                // The cookie name is bound into every seal: use the layer's.
                .with_cookie_name(config.get_cookie_name())?
                .with_revocation(Revocation::new(store)),
        ),
        "jwt" => Arc::new(
            JwtEngine::new(KeyRing::new(JwtKey::generate_ed25519("ed1")?))?
                .with_issuer("http://127.0.0.1:3000")
                .with_revocation(Revocation::new(store)),
        ),
        other => return Err(format!("unknown engine {other:?}: use server, cookie or jwt").into()),
    })
}

fn app(kind: &str) -> Result<Router, Box<dyn Error>> {
    let config = SessionConfig::default().insecure_dev_mode();
    let engine = engine(kind, &config)?;
    Ok(Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(SessionLayer::from_arc(engine, config)?))
}

async fn home(session: Session) -> Result<Html<String>, SessionRejection> {
    session
        .update("visits", |n: Option<u64>| Some(n.unwrap_or(0) + 1))
        .await?;
    let visits = session.get::<u64>("visits").await?.unwrap_or(0);
    let user = session.subject().await?;
    let csrf = session.csrf_token().await?;
    let who = match &user {
        Some(user) => format!("Logged in as <b>{}</b>.", escape(user)),
        None => "Not logged in.".to_owned(),
    };
    Ok(Html(format!(
        "<!doctype html><title>Tessera switch</title>\
         <p>{who} Visits in this session: <b id=visits>{visits}</b>.</p>\
         <form method=post action=/login><input type=hidden name=csrf_token value={csrf}>\
         <input name=user placeholder=name required> <button>Log in</button></form>\
         <form method=post action=/logout><input type=hidden name=csrf_token value={csrf}>\
         <button>Log out</button></form>"
    )))
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(session: Session, Form(form): Form<Login>) -> Result<Redirect, SessionRejection> {
    session.login(form.user).await?;
    Ok(Redirect::to("/"))
}

async fn logout(session: Session) -> Result<Redirect, SessionRejection> {
    session.logout().await?;
    Ok(Redirect::to("/"))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A scripted round through the app: visit, log in, visit, log out, replay the old cookie.
pub(crate) async fn check(kind: &str) -> Result<(), Box<dyn Error>> {
    let app = app(kind)?;
    let send = |request: Request<Body>| app.clone().oneshot(request);
    let cookie_of = |response: &axum::response::Response| {
        response
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
    };
    let body_of = |response: axum::response::Response| async move {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await?;
        Ok::<_, Box<dyn Error>>(String::from_utf8(bytes.to_vec())?)
    };

    let first = send(Request::get("/").body(Body::empty())?).await?;
    let mut cookie = cookie_of(&first).ok_or("no cookie on the first visit")?;
    let page = body_of(first).await?;
    let csrf = page
        .split("name=csrf_token value=")
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .ok_or("no CSRF token on the page")?
        .to_owned();

    let login = Request::post("/login")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .body(Body::from(format!("user=alice&csrf_token={csrf}")))?;
    let response = send(login).await?;
    if response.status() != StatusCode::SEE_OTHER {
        return Err(format!("login answered {}", response.status()).into());
    }
    let before_login = cookie.clone();
    cookie = cookie_of(&response).ok_or("no new cookie at login")?;

    let response = send(
        Request::get("/")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())?,
    )
    .await?;
    if let Some(updated) = cookie_of(&response) {
        cookie = updated;
    }
    let page = body_of(response).await?;
    if !page.contains("Logged in as <b>alice</b>") || !page.contains("<b id=visits>2</b>") {
        return Err(format!("unexpected page after login: {page}").into());
    }

    let logged_in = cookie.clone();
    let logout = Request::post("/logout")
        .header(header::COOKIE, &cookie)
        .header("sec-fetch-site", "same-origin")
        .body(Body::empty())?;
    let response = send(logout).await?;
    if response.status() != StatusCode::SEE_OTHER {
        return Err(format!("logout answered {}", response.status()).into());
    }

    // Replaying a cookie from before login, or the logged-out one, gives a fresh session.
    for old in [before_login, logged_in] {
        let response = send(
            Request::get("/")
                .header(header::COOKIE, &old)
                .body(Body::empty())?,
        )
        .await?;
        let page = body_of(response).await?;
        if !page.contains("Not logged in.") || !page.contains("<b id=visits>1</b>") {
            return Err(format!("an old cookie still worked: {page}").into());
        }
    }
    println!("{kind}: visit, login, visit, logout, replay of old cookies: all as expected");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = args.first().map_or("server", String::as_str);
    if args.get(1).map(String::as_str) == Some("check") {
        return check(kind).await;
    }
    let app = app(kind)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("{kind} sessions on http://127.0.0.1:3000 (Ctrl-C to stop)");
    axum::serve(listener, app).await?;
    Ok(())
}
