//! Store-level throughput and latency of the Memcached store.
//!
//! Run: `cargo bench -p tessera-memcached --bench memcached -- --warm-up-time 1 --measurement-time 3`
//! (needs Memcached on 127.0.0.1:11211; skipped if it is down). First a fixed-count report per
//! operation (rate, p50, p99) is printed, then criterion measures the same operations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tessera_core::testing::fresh_record;
use tessera_core::{Key, Record, Store, Timestamp};
use tessera_memcached::{MemcachedOptions, MemcachedStore};

/// Concurrent tasks (the Redis benchmark's `redis-benchmark -c`, for comparison).
const CONCURRENCY: usize = 50;
/// Operations per report row.
const REPORT_OPS: usize = 50_000;
/// Sessions the load benchmarks pick from.
const SESSIONS: usize = 1_000;

#[derive(Clone, Copy, Debug)]
enum Op {
    Load,
    LoadTouch,
    Commit,
    Create,
}

const OPS: [Op; 4] = [Op::Load, Op::LoadTouch, Op::Commit, Op::Create];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Load => "load",
            Op::LoadTouch => "load+touch",
            Op::Commit => "commit",
            Op::Create => "create",
        }
    }
}

/// A record that lives for ten minutes, so the benchmark leaves nothing behind for long.
fn short_record() -> Record {
    let mut record = fresh_record(None);
    record.idle_deadline = Timestamp::now().saturating_add(Duration::from_secs(600));
    record
}

struct Fixture {
    store: Arc<dyn Store>,
    keys: Arc<Vec<Key>>,
}

impl Fixture {
    async fn new(store: Arc<dyn Store>) -> Self {
        let mut keys = Vec::with_capacity(SESSIONS);
        for _ in 0..SESSIONS {
            let record = short_record();
            store.create(&record).await.unwrap();
            keys.push(record.key);
        }
        Self {
            store,
            keys: Arc::new(keys),
        }
    }

    /// Runs `total` operations of one kind over `CONCURRENCY` tasks; returns the wall time and
    /// each operation's latency.
    async fn run(&self, op: Op, total: usize) -> (Duration, Vec<Duration>) {
        let per_task = total.div_ceil(CONCURRENCY);
        let started = Instant::now();
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|task| {
                let store = Arc::clone(&self.store);
                let keys = Arc::clone(&self.keys);
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(per_task);
                    // Each task commits to its own session, so commits measure the store,
                    // not contention.
                    let mut own = short_record();
                    if matches!(op, Op::Commit) {
                        store.create(&own).await.unwrap();
                    }
                    for i in 0..per_task {
                        let key = keys[(task * 7919 + i * 31) % keys.len()];
                        let now = Timestamp::now();
                        let t = Instant::now();
                        match op {
                            Op::Load => {
                                assert!(store.load(&key, now).await.unwrap().is_some());
                            }
                            Op::LoadTouch => {
                                assert!(store.load(&key, now).await.unwrap().is_some());
                                let idle = now.saturating_add(Duration::from_secs(600));
                                assert!(store.touch(&key, idle, now).await.unwrap());
                            }
                            Op::Commit => {
                                let expected = own.version;
                                own.version += 1;
                                own.data.set_json("n", &serde_json::json!(i));
                                store.update(&own, expected, now).await.unwrap();
                            }
                            Op::Create => {
                                store.create(&short_record()).await.unwrap();
                            }
                        }
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(per_task * CONCURRENCY);
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        (started.elapsed(), latencies)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Prints one row per operation.
async fn report(label: &str, fixture: &Fixture) {
    for op in OPS {
        let (elapsed, mut latencies) = fixture.run(op, REPORT_OPS).await;
        latencies.sort();
        let rate = latencies.len() as f64 / elapsed.as_secs_f64();
        println!(
            "{label:<18} {:<11} {:>9.0} ops/s   p50 {:>7.3} ms   p99 {:>7.3} ms   ({} ops, {} tasks)",
            op.name(),
            rate,
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.len(),
            CONCURRENCY,
        );
    }
}

async fn connect(url: &str) -> Option<Arc<dyn Store>> {
    let options = MemcachedOptions::default()
        .key_prefix("bench")
        .pool_size(CONCURRENCY);
    match MemcachedStore::connect_with(url, options).await {
        Ok(store) => Some(Arc::new(store)),
        Err(error) => {
            eprintln!("skipping {url}: {error:?}");
            None
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut fixtures = Vec::new();
    if let Some(store) = runtime.block_on(connect("memcached://127.0.0.1:11211")) {
        let fixture = runtime.block_on(Fixture::new(store));
        runtime.block_on(report("memcached", &fixture));
        fixtures.push(("memcached", fixture));
    }

    let mut criterion = Criterion::default().configure_from_args();
    for (label, fixture) in &fixtures {
        let mut group = criterion.benchmark_group(*label);
        group.throughput(Throughput::Elements(1));
        for op in OPS {
            group.bench_function(op.name(), |b| {
                b.to_async(&runtime).iter_custom(|iters| async move {
                    let total = usize::try_from(iters)
                        .unwrap_or(usize::MAX)
                        .max(CONCURRENCY);
                    // Time per operation at CONCURRENCY in flight: the inverse of the rate.
                    let (elapsed, _) = fixture.run(op, total).await;
                    elapsed.mul_f64(
                        iters as f64
                            / total.div_ceil(CONCURRENCY).saturating_mul(CONCURRENCY) as f64,
                    )
                })
            });
        }
        group.finish();
    }
    criterion.final_summary();
}
