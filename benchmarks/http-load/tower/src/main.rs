//! The server side of the HTTP load benchmark: one minimal axum app, built on either session
//! library, over a memory store or SQLite.
//!
//! `http-load-tower <tower-sessions|tower-sessions-always-save> <memory|sqlite> <port> <dir>`
//!
//! Routes: `/plain` (no session), `/new` (a new session with one value), `/read` (reads the
//! value of the presented session), `/write` (increments it), `/seed?n=N` (creates N sessions
//! directly in the store and returns their cookie values, one per line, for the load
//! generator).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;

#[derive(Deserialize)]
struct Seed {
    n: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, library, store, port, dir] = &args[..] else {
        eprintln!("usage: http-load <library> <memory|sqlite> <port> <dir>");
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
            "tower-sessions" => tower_app(store, dir, false).await,
            "tower-sessions-always-save" => tower_app(store, dir, true).await,
            other => panic!("unknown library {other}"),
        };
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("port");
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}

async fn plain() -> &'static str {
    "ok"
}

// ---------------------------------------------------------------------------------------------
// tower-sessions

async fn tower_app(store: &str, dir: &str, always_save: bool) -> Router {
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
        "memory" => app(tower_sessions_memory_store::MemoryStore::default(), always_save),
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
            app(store, always_save)
        }
        other => panic!("unknown store {other}"),
    }
}
