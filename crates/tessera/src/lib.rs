//! Session management for Rust web applications: the one crate an app adds.
//!
//! It re-exports the session engine ([`tessera_core`], as [`core`]), the tower/axum HTTP layer
//! ([`tessera_http`], as [`http`]) and, by feature, the store backends. The names most apps need
//! are at the top level.
//!
//! # Example
//!
//! ```
//! use tessera::{MemoryStore, Session, SessionConfig, SessionLayer, SessionRejection, Sessions};
//! use axum::{Router, routing::get};
//!
//! async fn hello(session: Session) -> Result<String, SessionRejection> {
//!     let name: Option<String> = session.subject().await?;
//!     Ok(format!("hello {}", name.as_deref().unwrap_or("stranger")))
//! }
//!
//! let sessions = Sessions::new(MemoryStore::new());
//! let app: Router = Router::new()
//!     .route("/", get(hello))
//!     .layer(SessionLayer::new(sessions, SessionConfig::default())?);
//! # Ok::<_, tessera::ConfigError>(())
//! ```
//!
//! A complete app (cart, login, logout, device list, CSRF-protected forms) is in
//! `examples/shop.rs`: `cargo run -p tessera --example shop`.
//!
//! # Features
//!
//! - `axum` (default): the axum extractors ([`Session`], [`MaybeSession`]).
//! - `sqlite`: the SQLite store, as [`sqlite`] (`tessera::sqlite::SqliteStore`).
//! - `postgres`: the PostgreSQL store, as [`postgres`] (`tessera::postgres::PostgresStore`).
//! - `mysql`: the MySQL / MariaDB store, as [`mysql`] (`tessera::mysql::MySqlStore`).
//! - `redis`: the Redis and Redis Cluster store, as [`redis`] (`tessera::redis::RedisStore`).
//! - `memcached`: the Memcached store, as [`memcached`] (`tessera::memcached::MemcachedStore`).
//! - `token`: stateless sessions (encrypted cookie, JWT) with revocation, as [`token`].
//!
//! Each backend feature re-exports its crate under the backend's name; none is on by default,
//! so an app compiles only the drivers it uses.
//!
//! # Design
//!
//! One facade with additive features keeps the app's `Cargo.toml` to one line while every
//! backend's driver stays out of builds that do not ask for it. The engine's `Session` (the
//! request's view of a record) is [`core::Session`]; the top-level [`Session`] is the HTTP
//! handle handlers take.

pub use tessera_core as core;
pub use tessera_http as http;
#[cfg(feature = "memcached")]
pub use tessera_memcached as memcached;
#[cfg(feature = "mysql")]
pub use tessera_mysql as mysql;
#[cfg(feature = "postgres")]
pub use tessera_postgres as postgres;
#[cfg(feature = "redis")]
pub use tessera_redis as redis;
#[cfg(feature = "sqlite")]
pub use tessera_sqlite as sqlite;
#[cfg(feature = "token")]
pub use tessera_token as token;

pub use tessera_core::{
    ClientInfo, Commit, Engine, Error, Key, LimitAction, ManualClock, MemoryStore, Policy, Record,
    SessionId, Sessions, Store, StoreError, SystemClock, Timestamp,
};
#[cfg(feature = "axum")]
pub use tessera_http::MaybeSession;
pub use tessera_http::{
    ConfigError, CsrfFailure, NoCsrf, SameSite, Session, SessionConfig, SessionLayer,
    SessionRejection,
};
