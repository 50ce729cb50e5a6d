//! Sessions for tower and axum web apps: a middleware ([`SessionLayer`]) and extractors
//! ([`Session`], [`MaybeSession`]) over any Tessera [`Engine`](tessera_core::Engine), with
//! secure cookies by default, CSRF defence, a bearer transport for APIs, and strict handling of
//! every malformed, duplicated or oversized input.
//!
//! # Quick start
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, header};
//! use tessera_core::{MemoryStore, Sessions};
//! use tessera_http::{Session, SessionConfig, SessionLayer, SessionRejection};
//! use tower::ServiceExt;
//!
//! async fn visit(session: Session) -> Result<String, SessionRejection> {
//!     session.update("visits", |n: Option<u64>| Some(n.unwrap_or(0) + 1)).await?;
//!     Ok(format!("visit {}", session.get::<u64>("visits").await?.unwrap_or(0)))
//! }
//!
//! let sessions = Sessions::new(MemoryStore::new());
//! let app = Router::new()
//!     .route("/", get(visit))
//!     .layer(SessionLayer::new(sessions, SessionConfig::default())?);
//!
//! // First visit: a new session, sent as a `__Host-` cookie.
//! let response = app.clone().oneshot(Request::get("/").body(Body::empty())?).await?;
//! let set_cookie = response.headers()[header::SET_COOKIE].to_str()?;
//! assert!(set_cookie.starts_with("__Host-session="));
//! assert!(set_cookie.contains("Secure") && set_cookie.contains("HttpOnly"));
//! assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
//!
//! // Second visit with the cookie: the same session.
//! let cookie = set_cookie.split(';').next().unwrap().to_owned();
//! let request = Request::get("/").header(header::COOKIE, cookie).body(Body::empty())?;
//! let response = app.oneshot(request).await?;
//! let body = axum::body::to_bytes(response.into_body(), 1024).await?;
//! assert_eq!(&body[..], b"visit 2");
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! # What the layer does
//!
//! - **Lazy**: the session is loaded when a handler first uses it; a request that never
//!   touches it costs no store call. It is committed after the handler returns and before the
//!   response headers go out. A store failure turns the response into 503, never into "no
//!   session" or a silently lost change (only a read-only commit may be configured to be
//!   logged instead, [`SessionConfig::read_only_commit_failure_is_logged`]).
//! - **Cookies**: `__Host-session=<token>; Path=/; Secure; HttpOnly; SameSite=Lax`, no
//!   `Domain`, `Max-Age` never past the session's absolute deadline (or a browser-session
//!   cookie). A configuration browsers would drop is refused with a [`ConfigError`].
//!   [`SessionConfig::insecure_dev_mode`] is the one switch for plain HTTP. Every response that
//!   sets or clears the cookie carries `Cache-Control: no-store`.
//! - **Strict**: an unknown, expired or malformed token is never adopted (the handler gets a
//!   new session with a fresh ID, and the stale cookie is cleared if nothing new is issued);
//!   two session cookies → 400; names match byte for byte; every `Cookie` header is read;
//!   `Cookie` headers over 8 KiB together → 431 before any parsing. Tokens are never taken from
//!   the URL or a form field.
//! - **Login** ([`Session::login`]) issues a new ID and kills the old one at once, with a new
//!   CSRF secret. **Logout** ([`Session::logout`]) deletes the record, expires the cookie with
//!   the same attributes and sends `Clear-Site-Data: "cache", "cookies", "storage"`.
//! - **Bearer transport** ([`SessionConfig::bearer`]): `Authorization: Bearer <token>`, no
//!   cookie, no CSRF check; a new token goes out in `X-Session-Token` (and
//!   [`Session::commit_now`] hands it to the handler).
//! - **CSRF** (cookie transport, unsafe methods): `Sec-Fetch-Site` first (`same-origin` and
//!   `none` pass, `cross-site` fails, `same-site` fails unless allowed), then `Origin` against
//!   the configured origins (exact scheme, host, port; `null` fails), then a synchronizer
//!   token from the `X-CSRF-Token` header or the `csrf_token` form field, masked per call
//!   ([`Session::csrf_token`]) and compared in constant time. 403 with a short reason.
//!   Responses to checked requests carry `Vary: Origin, Sec-Fetch-Site`. The check is enforced
//!   when the handler first uses the session (a handler that does not use it cannot be abused
//!   through it), and [`NoCsrf`] turns it off per route. A request with no session cookie and
//!   no browser signal at all (no `Sec-Fetch-Site`, no `Origin`) is not checked: it carries no
//!   ambient credential and is not a browser-forged request.
//! - **Events** (`tracing`, target `tessera_http`): session created, rotated, destroyed,
//!   ended while in use, unknown or expired token presented, CSRF rejected; each with the
//!   session's short handle ([`Key::short`](tessera_core::Key::short)), never the token.
//!
//! # Features
//!
//! - `axum` (default): the extractors ([`Session`] implements `FromRequestParts`,
//!   [`MaybeSession`], `Option<Session>`), `IntoResponse` for [`SessionRejection`], and the
//!   client IP from axum's `ConnectInfo` for device lists. Without it the layer is plain tower
//!   and handlers find the [`Session`] in the request extensions.
//!
//! # Design choices
//!
//! - Written against the [`Engine`](tessera_core::Engine) trait, so the same layer serves
//!   server-side sessions and the stateless token engines: the cookie value is an opaque token.
//! - `tower-layer`/`tower-service` for the middleware (the traits every Rust HTTP stack
//!   shares); `axum` only behind its feature.
//! - The `cookie` crate builds `Set-Cookie` values (attribute syntax and dates are easy to get
//!   wrong); reading is our own few lines in [`cookie`], because the strictness rules (duplicate
//!   detection, byte-exact names, a size limit checked before parsing) are the point and the
//!   crate's parser has none of them.
//! - CSRF tokens are HMAC-SHA256 (`hmac`, `sha2`) of a fixed context under the session's CSRF
//!   secret, masked with fresh random bytes per call (BREACH), compared with `subtle`.
//! - The session is committed after the handler's response future resolves, before the
//!   response (headers and body) is handed on: a streaming body cannot outrun the commit.
//! - The CSRF verdict is computed before the handler and enforced at first use of the
//!   session, which is what makes the per-route [`NoCsrf`] opt-out possible with layers on
//!   routes (axum runs route layers after the outer middleware).
//!
//! Not provided: reading a CSRF token from `multipart/form-data` bodies (send it in the
//! `X-CSRF-Token` header, or rely on Fetch Metadata / `Origin`, which every current browser
//! sends). The "unknown" and "expired" token events are one event, because the engine API does
//! not tell the two apart.

mod config;
pub mod cookie;
mod csrf;
#[cfg(feature = "axum")]
mod extract;
mod layer;
mod nocsrf;
mod rejection;
mod service;
mod session;

pub use config::{
    CSRF_FORM_FIELD, CSRF_HEADER, ConfigError, DEFAULT_BEARER_RESPONSE_HEADER, DEFAULT_COOKIE_NAME,
    DEV_COOKIE_NAME, SameSite, SessionConfig, Transport,
};
pub use csrf::CsrfFailure;
#[cfg(feature = "axum")]
pub use extract::MaybeSession;
pub use layer::SessionLayer;
pub use nocsrf::{NoCsrf, NoCsrfService};
pub use rejection::SessionRejection;
pub use service::{ResponseBody, ResponseFuture, SessionService};
pub use session::Session;
