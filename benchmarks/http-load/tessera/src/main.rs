//! The server side of the HTTP load benchmark: one minimal axum app, built on either session
//! library, over a memory store or SQLite.
//!
//! `http-load-tessera <tessera|tessera-touch-every-request> <memory|sqlite> <port> <dir>`
//!
//! Routes: `/plain` (no session), `/new` (a new session with one value), `/read` (reads the
//! value of the presented session), `/write` (increments it), `/seed?n=N` (creates N sessions
//! directly in the store and returns their cookie values, one per line, for the load
//! generator).

use std::net::SocketAddr;
use std::time::Duration;

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
            "tessera" => tessera_app(store, dir, Duration::from_secs(60)).await,
            "tessera-touch-every-request" => tessera_app(store, dir, Duration::ZERO).await,
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

    let layer = SessionLayer::new(sessions.clone(), SessionConfig::default().insecure_dev_mode())
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

