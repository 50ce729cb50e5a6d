//! The session layer driven in-process (no sockets): what the middleware itself costs per
//! request on top of an axum router, with the memory store.
//!
//! `cargo bench -p tessera-http --bench layer -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, header};
use tessera_core::{MemoryStore, Sessions};
use tessera_http::{Session, SessionConfig, SessionLayer};
use tower::ServiceExt;

fn app() -> Router {
    let sessions = Sessions::new(MemoryStore::new());
    routes().layer(SessionLayer::new(sessions, SessionConfig::default()).expect("valid config"))
}

fn routes() -> Router {
    Router::new()
        .route("/plain", get(|| async { "plain" }))
        .route(
            "/read",
            get(|s: Session| async move {
                s.get::<u64>("n")
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(0)
                    .to_string()
            }),
        )
        .route(
            "/write",
            get(|s: Session| async move {
                let _ = s
                    .update("n", |n: Option<u64>| Some(n.unwrap_or(0) + 1))
                    .await;
                "ok"
            }),
        )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = app();
    let cookie = rt.block_on(async {
        let response = app
            .clone()
            .oneshot(Request::get("/write").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let set = response.headers()[header::SET_COOKIE].to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    });
    let mut group = c.benchmark_group("layer");
    let request = |path: &str, cookie: Option<&str>| {
        let mut builder = Request::get(path);
        if let Some(cookie) = cookie {
            builder = builder.header(header::COOKIE, cookie);
        }
        builder.body(Body::empty()).unwrap()
    };
    let bare = routes();
    group.bench_function("plain without the layer (baseline)", |b| {
        b.to_async(&rt)
            .iter(|| bare.clone().oneshot(request("/plain", Some(&cookie))))
    });
    group.bench_function("plain (untouched session)", |b| {
        b.to_async(&rt)
            .iter(|| app.clone().oneshot(request("/plain", Some(&cookie))))
    });
    group.bench_function("new session", |b| {
        b.to_async(&rt)
            .iter(|| app.clone().oneshot(request("/write", None)))
    });
    group.bench_function("read", |b| {
        b.to_async(&rt)
            .iter(|| app.clone().oneshot(request("/read", Some(&cookie))))
    });
    group.bench_function("write", |b| {
        b.to_async(&rt)
            .iter(|| app.clone().oneshot(request("/write", Some(&cookie))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
