//! Store-level throughput and latency of the Memcached store.
//!
//! Run: `cargo bench -p tessera-memcached --bench memcached -- --warm-up-time 1 --measurement-time 3`
//! (needs Memcached on 127.0.0.1:11211; skipped if it is down). First a fixed-count report per
//! operation (rate, p50, p99) is printed, then criterion measures the same operations.

use std::sync::Arc;

use criterion::{Criterion, Throughput};
use tessera_core::Store;
use tessera_core::testing::workload::{Op, SharedKeys};
use tessera_memcached::{MemcachedOptions, MemcachedStore};

/// Concurrent tasks (the Redis benchmark's `redis-benchmark -c`, for comparison).
const CONCURRENCY: usize = 50;
/// Operations per report row.
const REPORT_OPS: usize = 50_000;
/// Sessions the load benchmarks pick from.
const SESSIONS: usize = 1_000;

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
    let mut workloads = Vec::new();
    if let Some(store) = runtime.block_on(connect("memcached://127.0.0.1:11211")) {
        let workload = runtime.block_on(SharedKeys::seed(store, SESSIONS, CONCURRENCY));
        runtime.block_on(workload.report("memcached", REPORT_OPS));
        workloads.push(("memcached", workload));
    }

    let mut criterion = Criterion::default().configure_from_args();
    for (label, workload) in &workloads {
        let mut group = criterion.benchmark_group(*label);
        group.throughput(Throughput::Elements(1));
        for op in Op::ALL {
            group.bench_function(op.name(), |b| {
                b.to_async(&runtime)
                    .iter_custom(|iters| workload.time_per_op(op, iters));
            });
        }
        group.finish();
    }
    criterion.final_summary();
}
