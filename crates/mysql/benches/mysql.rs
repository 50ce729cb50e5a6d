//! Store-level benchmarks against the real MySQL/MariaDB server
//! (mysql://root@127.0.0.1:3306/test, or `TESSERA_MYSQL_URL`).
//!
//! Run: `cargo bench -p tessera-mysql --bench mysql -- --warm-up-time 1 --measurement-time 3`
//!
//! Two parts: first a bounded concurrent run (16 tasks, at most 20000 operations or 10 s per
//! kind) that prints rates and p50/p99 latencies; then criterion's single-caller latencies for
//! the same operations. Skips (and says so) when the server is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::Criterion;
use mysql_async::prelude::Queryable;
use tessera_core::Store;
use tessera_core::testing::workload::{Op, Partitioned};
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
    let workload = rt.block_on(Partitioned::seed(store, SEEDED, TASKS));
    rt.block_on(workload.report(OPS_PER_KIND, TIME_PER_KIND));

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("mysql");
    for op in Op::ALL {
        let counter = AtomicUsize::new(0);
        group.bench_function(op.name(), |b| {
            b.to_async(&rt).iter(|| {
                // One caller, so any seeded record will do; commits stay conflict-free.
                let i = counter.fetch_add(1, Ordering::Relaxed);
                workload.one(op, i)
            });
        });
    }
    group.finish();
    criterion.final_summary();
    rt.block_on(drop_table(&table));
}
