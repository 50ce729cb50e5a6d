//! The server side of the HTTP load benchmark: one minimal axum app, built on either session
//! library, over a memory store, SQLite, Redis or PostgreSQL.
//!
//! `http-load-tessera <tessera|tessera-touch-every-request> <store> <port> <dir>`, the store one
//! of `memory`, `sqlite`, `redis`, `postgres`.
//!
//! Routes: `/plain` (no session), `/new` (a new session with one value), `/read` (reads the
//! value of the presented session), `/write` (increments it), `/seed?n=N` (creates N sessions
//! directly in the store and returns their cookie values, one per line, for the load
//! generator).
//!
//! Shared stores, on this machine's servers, each run starting from an empty store and leaving
//! nothing behind (emptied at start and again on SIGTERM or Ctrl-C):
//! - `redis`: Redis at 127.0.0.1:6379, logical database 15, which belongs to this benchmark
//!   (the tests use database 0): it is emptied with `FLUSHDB`, never `FLUSHALL`. Tessera's
//!   `RedisStore` with [`REDIS_CONNECTIONS`] multiplexed connections (or the variable of that
//!   name), as many as the fred pool of the tower-sessions app.
//! - `postgres`: database `test` as user `postgres`, table `http_load_tessera` (tower-sessions
//!   uses its own schema), truncated. Tessera's `PostgresStore` with a pool of
//!   [`POSTGRES_POOL`] connections (or the variable of that name), the size of the
//!   tower-sessions app's sqlx pool.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;

/// The benchmark's own Redis database (emptied with `FLUSHDB`; the tests use database 0).
const REDIS_URL: &str = "redis://127.0.0.1:6379/15";
/// Multiplexed connections to Redis, unless `REDIS_CONNECTIONS` says otherwise; the
/// tower-sessions app's fred pool has as many.
const REDIS_CONNECTIONS: usize = 4;
const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The benchmark's own table (truncated at start and end).
const POSTGRES_TABLE: &str = "http_load_tessera";
/// PostgreSQL connections, unless `POSTGRES_POOL` says otherwise; the tower-sessions app's sqlx
/// pool has as many.
const POSTGRES_POOL: usize = 16;

/// A pool size from the environment (the run script passes the same to both apps), or `default`.
fn pool_size(variable: &str, default: usize) -> usize {
    std::env::var(variable).map_or(default, |v| {
        v.parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("{variable} must be a positive number"))
    })
}

#[derive(Deserialize)]
struct Seed {
    n: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, library, store, port, dir] = &args[..] else {
        eprintln!("usage: http-load-tessera <library> <memory|sqlite|redis|postgres> <port> <dir>");
        std::process::exit(2);
    };
    // One worker thread: the server is pinned to one core by the run script.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let app = match library.as_str() {
            "tessera" => tessera_app(store, dir, Duration::from_secs(60)).await,
            "tessera-touch-every-request" => tessera_app(store, dir, Duration::ZERO).await,
            other => panic!("unknown library {other}"),
        };
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("port");
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
        tokio::select! {
            served = axum::serve(listener, app).into_future() => served.expect("serve"),
            () = terminated() => {}
        }
        if let Err(error) = empty_store(store).await {
            eprintln!(
                "http-load-tessera: {store} store not emptied at exit ({error}); \
                 the next run empties it at start"
            );
        }
    });
}

/// SIGTERM (what the run script sends) or Ctrl-C.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Empties the benchmark's Redis database or PostgreSQL table, so that every run starts from an
/// empty store and leaves nothing behind. Memory and SQLite stores start empty (SQLite in the
/// fresh directory the run script gives each run). A lock timeout keeps the TRUNCATE from
/// waiting forever behind a transaction that was never closed.
async fn empty_store(store: &str) -> Result<(), String> {
    match store {
        "redis" => {
            let client = redis::Client::open(REDIS_URL).map_err(|e| e.to_string())?;
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            redis::cmd("FLUSHDB")
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| format!("FLUSHDB: {e}"))
        }
        "postgres" => {
            let (client, connection) = tokio_postgres::connect(POSTGRES_URL, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let connection = tokio::spawn(connection);
            let truncated = client
                .batch_execute(&format!(
                    "SET lock_timeout = '5s'; TRUNCATE {POSTGRES_TABLE}"
                ))
                .await
                .map_err(|e| format!("TRUNCATE: {e}"));
            drop(client);
            let _ = connection.await;
            truncated
        }
        _ => Ok(()),
    }
}

async fn plain() -> &'static str {
    "ok"
}

// ---------------------------------------------------------------------------------------------
// Tessera

async fn tessera_app(store: &str, dir: &str, touch_interval: Duration) -> Router {
    use tessera_core::{MemoryStore, Policy, Sessions};
    use tessera_http::{Session, SessionConfig, SessionLayer};

    let policy = Policy::default()
        .idle_timeout(Duration::from_secs(3600))
        .touch_interval(touch_interval);
    let sessions = match store {
        "memory" => Sessions::new(MemoryStore::new()),
        "sqlite" => Sessions::new(
            tessera_sqlite::SqliteStore::open(format!("{dir}/tessera.db"))
                .await
                .expect("open sqlite"),
        ),
        "redis" => {
            let options = tessera_redis::RedisOptions::default()
                .key_prefix("http-load")
                .connections(pool_size("REDIS_CONNECTIONS", REDIS_CONNECTIONS));
            let store = tessera_redis::RedisStore::connect_url_with(REDIS_URL, options)
                .await
                .expect("connect to redis");
            empty_store("redis").await.expect("empty redis");
            Sessions::new(store)
        }
        "postgres" => {
            // Migrates (creates the table) on connect.
            let options = tessera_postgres::Options::default()
                .table(POSTGRES_TABLE)
                .pool_size(pool_size("POSTGRES_POOL", POSTGRES_POOL));
            let store = tessera_postgres::PostgresStore::connect_with(POSTGRES_URL, options)
                .await
                .expect("connect to postgres");
            empty_store("postgres").await.expect("empty postgres");
            Sessions::new(store)
        }
        other => panic!("unknown store {other}"),
    }
    .with_policy(policy);

    async fn new(session: Session) -> &'static str {
        session.insert("n", &0u64).await.expect("insert");
        "new"
    }
    async fn read(session: Session) -> String {
        let n: Option<u64> = session.get("n").await.expect("read");
        n.map_or_else(|| "none".into(), |n| n.to_string())
    }
    async fn write(session: Session) -> &'static str {
        session
            .update("n", |n: Option<u64>| Some(n.unwrap_or(0) + 1))
            .await
            .expect("write");
        "written"
    }
    async fn seed(State(sessions): State<Sessions>, Query(seed): Query<Seed>) -> String {
        let mut out = String::new();
        for _ in 0..seed.n {
            let mut session = sessions.start();
            session.insert("n", &0u64).expect("insert");
            sessions.commit(&mut session).await.expect("commit");
            out += &session.id().expect("stored").expose();
            out.push('\n');
        }
        out
    }

    let layer = SessionLayer::new(
        sessions.clone(),
        SessionConfig::default().insecure_dev_mode(),
    )
    .expect("config");
    Router::new()
        .route("/plain", get(plain))
        .route("/new", get(new))
        .route("/read", get(read))
        .route("/write", get(write))
        .route("/seed", get(seed))
        .with_state(sessions)
        .layer(layer)
}
