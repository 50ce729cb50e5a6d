//! Store-level benchmarks against the real MySQL/MariaDB server
//! (mysql://root@127.0.0.1:3306/test, or `TESSERA_MYSQL_URL`).
//!
//! Run: `cargo bench -p tessera-mysql --bench mysql -- --warm-up-time 1 --measurement-time 3`
//!
//! Two parts: first a bounded concurrent run (16 tasks, at most 20000 operations or 10 s per
//! kind) that prints rates and p50/p99 latencies; then criterion's single-caller latencies for
//! the same operations. Skips (and says so) when the server is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use mysql_async::prelude::Queryable;
use tessera_core::testing::fresh_record;
use tessera_core::{Record, Store, Timestamp};
use tessera_mysql::{MySqlStore, Options, SCHEMA_TABLE};

const TASKS: usize = 16;
const OPS_PER_KIND: usize = 20_000;
const TIME_PER_KIND: Duration = Duration::from_secs(10);
const SEEDED: usize = 1000;

fn url() -> String {
    std::env::var("TESSERA_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[derive(Clone, Copy)]
enum Kind {
    Load,
    LoadTouch,
    Commit,
    Create,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Load, Kind::LoadTouch, Kind::Commit, Kind::Create];

    fn name(self) -> &'static str {
        match self {
            Kind::Load => "load",
            Kind::LoadTouch => "load+touch",
            Kind::Commit => "commit",
            Kind::Create => "create",
        }
    }
}

/// The seeded records, with the version each is at (commits move it on).
struct Seeded {
    records: Vec<Record>,
    versions: Vec<AtomicU64>,
}

async fn seed(store: &dyn Store) -> Arc<Seeded> {
    let mut records = Vec::with_capacity(SEEDED);
    for i in 0..SEEDED {
        let record = fresh_record(Some(&format!("user{}", i % 100)));
        store.create(&record).await.expect("seed");
        records.push(record);
    }
    let versions = records.iter().map(|r| AtomicU64::new(r.version)).collect();
    Arc::new(Seeded { records, versions })
}

/// One operation on seeded record `i` (records are partitioned between callers, so commits
/// never conflict: this measures the store, not the engine's retry loop).
async fn one(store: &dyn Store, seeded: &Seeded, kind: Kind, i: usize) {
    let now = Timestamp::now();
    let record = &seeded.records[i % SEEDED];
    match kind {
        Kind::Load => {
            store.load(&record.key, now).await.unwrap().expect("live");
        }
        Kind::LoadTouch => {
            store.load(&record.key, now).await.unwrap().expect("live");
            let idle = now.saturating_add(Duration::from_secs(3600));
            assert!(store.touch(&record.key, idle, now).await.unwrap());
        }
        Kind::Commit => {
            let version = &seeded.versions[i % SEEDED];
            let expected = version.load(Ordering::SeqCst);
            let mut next = record.clone();
            next.version = expected + 1;
            next.data.set_json("n", &serde_json::json!(expected));
            store.update(&next, expected, now).await.unwrap();
            version.store(expected + 1, Ordering::SeqCst);
        }
        Kind::Create => {
            store.create(&fresh_record(Some("new"))).await.unwrap();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Rates and latency percentiles with `TASKS` concurrent callers.
async fn concurrent(store: Arc<dyn Store>, seeded: Arc<Seeded>) {
    println!(
        "\n{} store, {TASKS} concurrent callers, up to {OPS_PER_KIND} operations or {TIME_PER_KIND:?} per kind:",
        store.name()
    );
    for kind in Kind::ALL {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, seeded, next) = (store.clone(), seeded.clone(), next.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut n = 0;
                    while next.fetch_add(1, Ordering::Relaxed) < OPS_PER_KIND
                        && started.elapsed() < TIME_PER_KIND
                    {
                        // Each task keeps to its own slice of the seeded records.
                        let i = task + TASKS * (n % (SEEDED / TASKS));
                        let t = Instant::now();
                        one(&*store, &seeded, kind, i).await;
                        latencies.push(t.elapsed());
                        n += 1;
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed();
        latencies.sort();
        println!(
            "  {:<11} {:>7.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ops in {:.2} s)",
            kind.name(),
            latencies.len() as f64 / elapsed.as_secs_f64(),
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.len(),
            elapsed.as_secs_f64(),
        );
    }
}

async fn drop_table(table: &str) {
    let Ok(mut conn) = mysql_async::Conn::from_url(url()).await else {
        return;
    };
    let _ = conn
        .query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .await;
    let _ = conn
        .exec_drop(
            format!("DELETE FROM {SCHEMA_TABLE} WHERE table_name = ?"),
            (table,),
        )
        .await;
    let _ = conn.disconnect().await;
}

fn main() {
    let rt = runtime();
    let table = format!("t_bench_{}", std::process::id());
    let options = Options::default().pool_size(TASKS).table(&table);
    let store = match rt.block_on(MySqlStore::connect_with(&url(), options)) {
        Ok(store) => Arc::new(store) as Arc<dyn Store>,
        Err(error) => {
            eprintln!("skipped MySQL benchmarks: {} unavailable: {error}", url());
            return;
        }
    };
    let seeded = rt.block_on(seed(&*store));
    rt.block_on(concurrent(store.clone(), seeded.clone()));

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("mysql");
    for kind in Kind::ALL {
        let counter = AtomicUsize::new(0);
        group.bench_function(kind.name(), |b| {
            b.to_async(&rt).iter(|| {
                // One caller, so any seeded record will do; commits stay conflict-free.
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let (store, seeded) = (&store, &seeded);
                async move { one(&**store, seeded, kind, i).await }
            });
        });
    }
    group.finish();
    criterion.final_summary();
    rt.block_on(drop_table(&table));
}
