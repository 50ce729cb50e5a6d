//! Prometheus metrics: the recorder, a metering [`Store`] decorator (latency of every store
//! operation, expired sessions purged), a metering [`Engine`] (lifecycle events, whoever
//! commits: the JSON API or the demo's HTTP layer), and the HTTP request middleware.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tessera_core::{
    Capabilities, ClientInfo, Commit, Engine, Error, Key, Loading, Policy, Record, Session,
    Sessions, Store, StoreError, Timestamp,
};

use crate::state::AppState;

/// Buckets for latency histograms, in seconds (50 µs … 5 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Installs the global Prometheus recorder and describes every metric (so each one shows up,
/// at zero, before its first event).
///
/// # Errors
///
/// A recorder was already installed.
pub(crate) fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    describe_counter!("tessera_sessions_created_total", "Sessions created.");
    describe_counter!(
        "tessera_sessions_rotated_total",
        "Session IDs rotated (logins and rotations)."
    );
    describe_counter!(
        "tessera_sessions_destroyed_total",
        "Sessions destroyed by logout."
    );
    describe_counter!(
        "tessera_sessions_expired_total",
        "Expired sessions purged from the store."
    );
    describe_counter!(
        "tessera_sessions_revoked_total",
        "Sessions revoked by handle or by subject."
    );
    describe_gauge!(
        "tessera_sessions_active",
        "Live sessions in the store (stores that can count)."
    );
    describe_counter!(
        "tessera_unknown_session_requests_total",
        "Requests that presented an unknown, expired or revoked session token."
    );
    describe_counter!(
        "tessera_csrf_rejections_total",
        "Demo form posts refused by the CSRF checks."
    );
    describe_histogram!(
        "tessera_store_operation_duration_seconds",
        "Latency of store operations."
    );
    describe_counter!(
        "tessera_http_requests_total",
        "HTTP requests by route and status."
    );
    describe_histogram!(
        "tessera_http_request_duration_seconds",
        "HTTP request latency by route."
    );
    for name in [
        "tessera_sessions_created_total",
        "tessera_sessions_rotated_total",
        "tessera_sessions_destroyed_total",
        "tessera_sessions_expired_total",
        "tessera_sessions_revoked_total",
        "tessera_unknown_session_requests_total",
        "tessera_csrf_rejections_total",
    ] {
        counter!(name).increment(0);
    }
    Ok(handle)
}

/// Renders the metrics, first refreshing the active-session gauge from the store.
pub(crate) async fn render(state: &AppState) -> String {
    let store = state.sessions.store();
    if store.capabilities().count {
        if let Ok(Some(n)) = store.count_live(state.sessions.now()).await {
            #[allow(clippy::cast_precision_loss)]
            gauge!("tessera_sessions_active").set(n as f64);
        }
    }
    state.prometheus.run_upkeep();
    state.prometheus.render()
}

/// Counts a commit's lifecycle event.
pub(crate) fn count_commit(commit: Commit) {
    match commit {
        Commit::Created => counter!("tessera_sessions_created_total").increment(1),
        Commit::Rotated => counter!("tessera_sessions_rotated_total").increment(1),
        Commit::Destroyed => counter!("tessera_sessions_destroyed_total").increment(1),
        _ => {}
    }
}

/// Counts revoked sessions.
pub(crate) fn count_revoked(n: u64) {
    counter!("tessera_sessions_revoked_total").increment(n);
}

/// Counts a request that presented a token naming no live session.
pub(crate) fn count_unknown_session() {
    counter!("tessera_unknown_session_requests_total").increment(1);
}

/// Counts a CSRF rejection.
pub(crate) fn count_csrf_rejection() {
    counter!("tessera_csrf_rejections_total").increment(1);
}

/// Middleware: counts every request by matched route and status, and times it.
pub(crate) async fn track_http(
    State(_): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    counter!(
        "tessera_http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    histogram!("tessera_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The engine the server uses: [`Sessions`] plus lifecycle counters. The demo's HTTP layer
/// commits through it, so its events are counted like the API's.
#[derive(Clone, Debug)]
pub(crate) struct MeteredEngine {
    sessions: Sessions,
}

impl MeteredEngine {
    pub(crate) fn new(sessions: Sessions) -> Self {
        Self { sessions }
    }
}

#[async_trait]
impl Engine for MeteredEngine {
    fn start(&self, client: ClientInfo) -> Session {
        self.sessions.start_with_client(client)
    }

    async fn load(&self, token: &str) -> Result<Option<Session>, Error> {
        let loaded = self.sessions.load(token).await?;
        if loaded.is_none() {
            count_unknown_session();
        }
        Ok(loaded)
    }

    fn load_now<'a>(&'a self, token: &'a str) -> Loading<'a> {
        self.load_now_raw(token.as_bytes())
    }

    fn load_now_raw<'a>(&'a self, token: &'a [u8]) -> Loading<'a> {
        // The memory store answers without a future; count what either path finds. The bytes
        // go to the engine as they are (it parses an ID without a UTF-8 check first).
        match self.sessions.load_now_raw(token) {
            Loading::Ready(loaded) => {
                if matches!(loaded, Ok(None)) {
                    count_unknown_session();
                }
                Loading::Ready(loaded)
            }
            Loading::Later(rest) => Loading::Later(Box::pin(async move {
                let loaded = rest.await?;
                if loaded.is_none() {
                    count_unknown_session();
                }
                Ok(loaded)
            })),
        }
    }

    async fn commit(&self, session: &mut Session) -> Result<Commit, Error> {
        let commit = self.sessions.commit(session).await?;
        count_commit(commit);
        Ok(commit)
    }

    fn policy(&self) -> &Policy {
        self.sessions.policy()
    }

    fn now(&self) -> Timestamp {
        self.sessions.now()
    }
}

/// A store decorator that times every operation and counts purged sessions.
pub(crate) struct MeteredStore {
    inner: Arc<dyn Store>,
    create: Histogram,
    load: Histogram,
    update: Histogram,
    touch: Histogram,
    delete: Histogram,
    rotate: Histogram,
    list_subject: Histogram,
    delete_subject: Histogram,
    purge: Histogram,
    count: Histogram,
    ping: Histogram,
    expired: Counter,
}

impl MeteredStore {
    pub(crate) fn new(inner: Arc<dyn Store>) -> Self {
        let op = |name: &'static str| histogram!("tessera_store_operation_duration_seconds", "operation" => name);
        Self {
            inner,
            create: op("create"),
            load: op("load"),
            update: op("update"),
            touch: op("touch"),
            delete: op("delete"),
            rotate: op("rotate"),
            list_subject: op("list_subject"),
            delete_subject: op("delete_subject"),
            purge: op("purge_expired"),
            count: op("count_live"),
            ping: op("ping"),
            expired: counter!("tessera_sessions_expired_total"),
        }
    }
}

async fn timed<T>(histogram: &Histogram, op: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = op.await;
    histogram.record(started.elapsed().as_secs_f64());
    out
}

#[async_trait]
impl Store for MeteredStore {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        timed(&self.create, self.inner.create(record)).await
    }

    async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        timed(&self.load, self.inner.load(key, now)).await
    }

    fn load_now(&self, key: &Key, now: Timestamp) -> Option<Result<Option<Record>, StoreError>> {
        // An in-process store answers without waiting; timed like the async path.
        let started = Instant::now();
        let out = self.inner.load_now(key, now)?;
        self.load.record(started.elapsed().as_secs_f64());
        Some(out)
    }

    async fn update(
        &self,
        record: &Record,
        expected: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        timed(&self.update, self.inner.update(record, expected, now)).await
    }

    async fn touch(&self, key: &Key, idle: Timestamp, now: Timestamp) -> Result<bool, StoreError> {
        timed(&self.touch, self.inner.touch(key, idle, now)).await
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        timed(&self.delete, self.inner.delete(key)).await
    }

    async fn rotate(
        &self,
        old: &Key,
        expected: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        timed(&self.rotate, self.inner.rotate(old, expected, new, now)).await
    }

    async fn list_subject(&self, subject: &str, now: Timestamp) -> Result<Vec<Record>, StoreError> {
        timed(&self.list_subject, self.inner.list_subject(subject, now)).await
    }

    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&Key>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        timed(
            &self.delete_subject,
            self.inner.delete_subject(subject, except, now),
        )
        .await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let n = timed(&self.purge, self.inner.purge_expired(now, limit)).await?;
        self.expired.increment(n);
        Ok(n)
    }

    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        timed(&self.count, self.inner.count_live(now)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        timed(&self.ping, self.inner.ping()).await
    }
}

/// How often the purger runs in `tessera serve`.
pub(crate) const PURGE_EVERY: Duration = Duration::from_secs(60);
