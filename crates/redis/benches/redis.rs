//! Store-level throughput and latency of the Redis store (standalone and cluster), beside
//! `redis-benchmark -t get` at the same concurrency.
//!
//! Run: `cargo bench -p tessera-redis --bench redis -- --warm-up-time 1 --measurement-time 3`
//! (needs Redis on 127.0.0.1:6379 and the cluster on 127.0.0.1:7001-7003; a server that is down
//! is skipped). First a fixed-count report per operation (rate, p50, p99) is printed, then
//! criterion measures the same operations.

use std::process::Command;
use std::sync::Arc;

use criterion::{Criterion, Throughput};
use tessera_core::Store;
use tessera_core::testing::workload::{Op, SharedKeys};
use tessera_redis::{RedisOptions, RedisStore};

/// Concurrent tasks, as `redis-benchmark -c`.
const CONCURRENCY: usize = 50;
/// Operations per report row.
const REPORT_OPS: usize = 50_000;
/// Sessions the load benchmarks pick from.
const SESSIONS: usize = 1_000;

/// `redis-benchmark -t get -n 100000 -c CONCURRENCY -q` (with `--cluster` for the cluster);
/// returns its GET rate.
fn redis_benchmark(port: u16, cluster: bool) -> Option<f64> {
    let mut command = Command::new("redis-benchmark");
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if cluster {
        command.arg("--cluster");
    }
    command.args([
        "-t",
        "get",
        "-n",
        "100000",
        "-c",
        &CONCURRENCY.to_string(),
        "-q",
    ]);
    let output = command.output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "GET: 98231.83 requests per second, p50=0.263 msec" (after \r progress lines).
    let line = text.rsplit(['\r', '\n']).find(|l| l.starts_with("GET:"))?;
    println!("redis-benchmark    {}", line.trim());
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn connect(url: &str) -> Option<Arc<dyn Store>> {
    let options = RedisOptions::default().key_prefix("bench");
    match RedisStore::connect_url_with(url, options).await {
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
    let targets = [
        ("redis", "redis://127.0.0.1:6379", 6379, false),
        (
            "redis-cluster",
            "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
            7001,
            true,
        ),
    ];
    let mut workloads = Vec::new();
    for (label, url, port, cluster) in targets {
        let Some(store) = runtime.block_on(connect(url)) else {
            continue;
        };
        let workload = runtime.block_on(SharedKeys::seed(store, SESSIONS, CONCURRENCY));
        let ours = runtime.block_on(workload.report(label, REPORT_OPS));
        if let Some(theirs) = redis_benchmark(port, cluster) {
            println!(
                "{label:<18} store load / redis-benchmark GET = {:.0} / {:.0} = {:.0}%",
                ours,
                theirs,
                100.0 * ours / theirs
            );
        }
        workloads.push((label, workload));
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
