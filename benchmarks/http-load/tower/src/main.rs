//! The server side of the HTTP load benchmark: one minimal axum app, built on either session
//! library, over a memory store, SQLite, Redis or PostgreSQL.
//!
//! `http-load-tower <tower-sessions|tower-sessions-always-save> <store> <port> <dir>`, the store
//! one of `memory`, `sqlite`, `redis`, `postgres`.
//!
//! Routes: `/plain` (no session), `/new` (a new session with one value), `/read` (reads the
//! value of the presented session), `/write` (increments it), `/seed?n=N` (creates N sessions
//! directly in the store and returns their cookie values, one per line, for the load
//! generator).
//!
//! Each backend's tower-sessions store, on this machine's servers, each run starting from an
//! empty store and leaving nothing behind (emptied at start and again on SIGTERM or Ctrl-C):
//! - `redis`: `tower-sessions-redis-store` on a fred pool of [`REDIS_CONNECTIONS`] clients
//!   (or the variable of that name; as many multiplexed connections as Tessera's app opens),
//!   Redis at 127.0.0.1:6379, logical database 15, which belongs to this benchmark (the tests
//!   use database 0). The store has no key prefix (keys are bare session IDs), so the database
//!   is emptied with `FLUSHDB`, never `FLUSHALL`.
//! - `postgres`: `tower-sessions-sqlx-store`'s `PostgresStore` on a sqlx pool of
//!   [`POSTGRES_POOL`] connections (or the variable of that name; the size of Tessera's),
//!   database `test` as user `postgres`, table `http_load_tower.session` (its own schema),
//!   truncated.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;

/// The benchmark's own Redis database (emptied with `FLUSHDB`; the tests use database 0).
const REDIS_URL: &str = "redis://127.0.0.1:6379/15";
/// Clients in the fred pool, each one multiplexed connection, unless `REDIS_CONNECTIONS` says
/// otherwise; Tessera's app opens as many.
const REDIS_CONNECTIONS: usize = 4;
const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The benchmark's own schema and table (truncated at start and end).
const POSTGRES_SCHEMA: &str = "http_load_tower";
const POSTGRES_TABLE: &str = "session";
/// Connections in the sqlx pool, unless `POSTGRES_POOL` says otherwise; Tessera's app has as
/// many.
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
        eprintln!("usage: http-load-tower <library> <memory|sqlite|redis|postgres> <port> <dir>");
        std::process::exit(2);
    };
    // One worker thread: the server is pinned to one core by the run script.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (app, postgres_pool) = match library.as_str() {
            "tower-sessions" => tower_app(store, dir, false).await,
            "tower-sessions-always-save" => tower_app(store, dir, true).await,
            other => panic!("unknown library {other}"),
        };
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("port");
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
        tokio::select! {
            served = axum::serve(listener, app).into_future() => served.expect("serve"),
            () = terminated() => {}
        }
        // Close the pool first: a connection the pool holds may sit in a transaction that
        // keeps row locks (see `tower_app`), which would make the TRUNCATE wait for it.
        if let Some(pool) = postgres_pool {
            let _ = tokio::time::timeout(Duration::from_secs(5), pool.close()).await;
        }
        if let Err(error) = empty_store(store).await {
            eprintln!(
                "http-load-tower: {store} store not emptied at exit ({error}); \
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
            use tower_sessions_redis_store::fred::prelude::*;
            use tower_sessions_redis_store::fred::types::{ClusterHash, CustomCommand};
            let config = Config::from_url(REDIS_URL).map_err(|e| e.to_string())?;
            let client = Client::new(config, None, None, None);
            client.init().await.map_err(|e| e.to_string())?;
            let flushed = client
                .custom::<(), String>(
                    CustomCommand::new("FLUSHDB", ClusterHash::FirstKey, false),
                    vec![],
                )
                .await;
            let _ = client.quit().await;
            flushed.map_err(|e| format!("FLUSHDB: {e}"))
        }
        "postgres" => {
            use tower_sessions_sqlx_store::sqlx::{self, Connection, PgConnection};
            let mut conn = PgConnection::connect(POSTGRES_URL)
                .await
                .map_err(|e| e.to_string())?;
            let truncated = sqlx::raw_sql(&format!(
                r#"SET lock_timeout = '5s'; TRUNCATE "{POSTGRES_SCHEMA}"."{POSTGRES_TABLE}""#
            ))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
            truncated.map(drop).map_err(|e| format!("TRUNCATE: {e}"))
        }
        _ => Ok(()),
    }
}

async fn plain() -> &'static str {
    "ok"
}

// ---------------------------------------------------------------------------------------------
// tower-sessions

/// The app, and for PostgreSQL its pool, to close before the table is emptied at exit.
///
/// Under this load, tower-sessions-sqlx-store's PostgreSQL store can leave a pooled connection
/// inside a transaction: its `create` runs in `pool.begin()`, and when wrk closes its
/// connections at the end of a `/new` run, cancelling requests in flight, connections were seen
/// `idle in transaction` and then `idle in transaction (aborted)`, as sqlx issues 4385 and 4393
/// describe for a `BEGIN` cancelled in flight (sqlx 0.8.4 to 0.9.0). Later requests' statements
/// run inside that transaction, hold its locks (other requests wait on them) and, after the
/// first error, fail with "current transaction is aborted". The run script starts a fresh
/// server for every route, so this can only reach the probe request after `/new`.
async fn tower_app(
    store: &str,
    dir: &str,
    always_save: bool,
) -> (Router, Option<tower_sessions_sqlx_store::sqlx::PgPool>) {
    use tower_sessions::session::{Id, Record};
    use tower_sessions::{Expiry, Session, SessionManagerLayer, SessionStore};

    async fn new(session: Session) -> &'static str {
        session.insert("n", 0u64).await.expect("insert");
        "new"
    }
    async fn read(session: Session) -> String {
        let n: Option<u64> = session.get("n").await.expect("read");
        n.map_or_else(|| "none".into(), |n| n.to_string())
    }
    async fn write(session: Session) -> &'static str {
        let n: u64 = session.get("n").await.expect("read").unwrap_or(0);
        session.insert("n", n + 1).await.expect("write");
        "written"
    }

    type DynStore = Arc<dyn SessionStore>;
    async fn seed(State(store): State<DynStore>, Query(seed): Query<Seed>) -> String {
        let mut out = String::new();
        for _ in 0..seed.n {
            let mut record = Record {
                id: Id::default(),
                data: [("n".to_owned(), serde_json::json!(0u64))].into(),
                expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
            };
            store.create(&mut record).await.expect("create");
            out += &record.id.to_string();
            out.push('\n');
        }
        out
    }

    fn app<S: SessionStore + Clone>(store: S, always_save: bool) -> Router {
        let layer = SessionManagerLayer::new(store.clone())
            .with_secure(false)
            .with_expiry(Expiry::OnInactivity(time::Duration::hours(1)))
            .with_always_save(always_save);
        let shared: DynStore = Arc::new(store);
        Router::new()
            .route("/plain", get(plain))
            .route("/new", get(new))
            .route("/read", get(read))
            .route("/write", get(write))
            .route("/seed", get(seed))
            .with_state(shared)
            .layer(layer)
    }

    match store {
        "memory" => (
            app(
                tower_sessions_memory_store::MemoryStore::default(),
                always_save,
            ),
            None,
        ),
        "sqlite" => {
            // The same durability settings as Tessera's SQLite store: WAL, synchronous=NORMAL.
            use tower_sessions_sqlx_store::sqlx::sqlite::{
                SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous,
            };
            let options = SqliteConnectOptions::new()
                .filename(format!("{dir}/tower.db"))
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            let pool = SqlitePool::connect_with(options)
                .await
                .expect("open sqlite");
            let store = tower_sessions_sqlx_store::SqliteStore::new(pool);
            store.migrate().await.expect("migrate");
            (app(store, always_save), None)
        }
        "redis" => {
            use tower_sessions_redis_store::fred::prelude::*;
            let pool = Pool::new(
                Config::from_url(REDIS_URL).expect("redis url"),
                None,
                None,
                None,
                pool_size("REDIS_CONNECTIONS", REDIS_CONNECTIONS),
            )
            .expect("redis pool");
            pool.init().await.expect("connect to redis");
            empty_store("redis").await.expect("empty redis");
            (
                app(
                    tower_sessions_redis_store::RedisStore::new(pool),
                    always_save,
                ),
                None,
            )
        }
        "postgres" => {
            use tower_sessions_sqlx_store::sqlx::postgres::PgPoolOptions;
            let pool = PgPoolOptions::new()
                .max_connections(pool_size("POSTGRES_POOL", POSTGRES_POOL) as u32)
                .connect(POSTGRES_URL)
                .await
                .expect("connect to postgres");
            let store = tower_sessions_sqlx_store::PostgresStore::new(pool.clone())
                .with_schema_name(POSTGRES_SCHEMA)
                .expect("schema name")
                .with_table_name(POSTGRES_TABLE)
                .expect("table name");
            store.migrate().await.expect("migrate");
            empty_store("postgres").await.expect("empty postgres");
            (app(store, always_save), Some(pool))
        }
        other => panic!("unknown store {other}"),
    }
}
