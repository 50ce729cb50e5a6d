//! Store-level benchmark workloads, shared by the backend crates' benches so that their
//! figures measure the same thing and stay comparable (`BENCHMARKS.md`).
//!
//! Each workload drives a store directly (no engine, no HTTP) with many concurrent tasks and
//! reports the rate and the latency percentiles of four operations ([`Op`]). The benches keep
//! only what is theirs: connecting, criterion, and any outside comparison such as
//! `redis-benchmark`. Two shapes exist because two families of benches were measured with them:
//!
//! - [`SharedKeys`] (Redis, Memcached): a fixed number of operations split evenly over the
//!   tasks; loads spread over one shared set of sessions, each task commits to a session of
//!   its own.
//! - [`Partitioned`] (PostgreSQL, MySQL): the tasks share a budget of operations and time;
//!   each keeps to its own slice of the seeded sessions, for loads and commits alike.
//!
//! Neither waits on a wall clock to expire anything: the sessions they create live for minutes
//! at most beyond the run (an idle deadline ten minutes or an hour out).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::fresh_record;
use crate::id::Key;
use crate::record::Record;
use crate::store::Store;
use crate::time::Timestamp;

/// One kind of store operation a workload measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `load` of a live session.
    Load,
    /// `load`, then `touch` of the same session.
    LoadTouch,
    /// `update` of a session with one changed key (a compare-and-swap that never conflicts).
    Commit,
    /// `create` of a new session.
    Create,
}

impl Op {
    /// Every operation, in the order the reports print them.
    pub const ALL: [Op; 4] = [Op::Load, Op::LoadTouch, Op::Commit, Op::Create];

    /// The operation's name in reports and benchmark IDs: `load`, `load+touch`, `commit`,
    /// `create`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Load => "load",
            Op::LoadTouch => "load+touch",
            Op::Commit => "commit",
            Op::Create => "create",
        }
    }
}

/// What one concurrent run measured: its wall time and every operation's latency.
#[derive(Clone, Debug)]
pub struct Run {
    elapsed: Duration,
    /// Sorted, for the percentiles.
    latencies: Vec<Duration>,
}

impl Run {
    fn new(elapsed: Duration, mut latencies: Vec<Duration>) -> Self {
        latencies.sort();
        Self { elapsed, latencies }
    }

    /// The wall time from the first task's start to the last task's end.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Operations completed.
    pub fn ops(&self) -> usize {
        self.latencies.len()
    }

    /// Operations per second of wall time.
    pub fn rate(&self) -> f64 {
        self.ops() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `p` (0.5 for the median, 0.99 for p99), nearest rank.
    ///
    /// # Panics
    ///
    /// If the run completed no operation.
    pub fn percentile(&self, p: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index.min(self.latencies.len() - 1)]
    }
}

/// Collects the latencies of every spawned task.
async fn join(
    tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>,
    capacity: usize,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(capacity);
    for task in tasks {
        latencies.extend(task.await.expect("workload task"));
    }
    latencies
}

/// A record that lives for ten minutes, so a benchmark leaves nothing behind for long.
fn short_record() -> Record {
    let mut record = fresh_record(None);
    record.idle_deadline = Timestamp::now().saturating_add(Duration::from_secs(600));
    record
}

/// The Redis and Memcached workload: `tasks` concurrent tasks, each doing an equal share of a
/// fixed number of operations. Loads and touches pick from a shared set of sessions; commits go
/// to a session each task creates for itself, so they measure the store, not contention.
#[derive(Clone)]
pub struct SharedKeys {
    store: Arc<dyn Store>,
    keys: Arc<Vec<Key>>,
    tasks: usize,
}

impl SharedKeys {
    /// Creates `sessions` sessions (anonymous, idle deadline ten minutes out) in `store`, for
    /// runs of `tasks` concurrent tasks.
    ///
    /// # Panics
    ///
    /// If a create fails, or `sessions` or `tasks` is zero.
    pub async fn seed(store: Arc<dyn Store>, sessions: usize, tasks: usize) -> Self {
        assert!(
            sessions > 0 && tasks > 0,
            "a workload needs sessions and tasks"
        );
        let mut keys = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            let record = short_record();
            store.create(&record).await.expect("seed");
            keys.push(record.key);
        }
        Self {
            store,
            keys: Arc::new(keys),
            tasks,
        }
    }

    /// Concurrent tasks per run.
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// Runs at least `total` operations of one kind: `total / tasks` (rounded up) on each task.
    ///
    /// # Panics
    ///
    /// If an operation fails, or a seeded session no longer loads.
    pub async fn run(&self, op: Op, total: usize) -> Run {
        let per_task = total.div_ceil(self.tasks);
        let started = Instant::now();
        let tasks: Vec<_> = (0..self.tasks)
            .map(|task| {
                let store = Arc::clone(&self.store);
                let keys = Arc::clone(&self.keys);
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(per_task);
                    let mut own = short_record();
                    if op == Op::Commit {
                        store.create(&own).await.expect("create");
                    }
                    for i in 0..per_task {
                        let key = keys[(task * 7919 + i * 31) % keys.len()];
                        let now = Timestamp::now();
                        let t = Instant::now();
                        match op {
                            Op::Load => {
                                assert!(store.load(&key, now).await.expect("load").is_some());
                            }
                            Op::LoadTouch => {
                                assert!(store.load(&key, now).await.expect("load").is_some());
                                let idle = now.saturating_add(Duration::from_secs(600));
                                assert!(store.touch(&key, idle, now).await.expect("touch"));
                            }
                            Op::Commit => {
                                let expected = own.version;
                                own.version += 1;
                                own.data.set_json("n", &serde_json::json!(i));
                                store.update(&own, expected, now).await.expect("update");
                            }
                            Op::Create => {
                                store.create(&short_record()).await.expect("create");
                            }
                        }
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let latencies = join(tasks, per_task * self.tasks).await;
        Run::new(started.elapsed(), latencies)
    }

    /// The time per operation with `tasks` in flight (the inverse of the rate), for `iters`
    /// operations: what criterion's `iter_custom` wants back.
    pub async fn time_per_op(&self, op: Op, iters: u64) -> Duration {
        let total = usize::try_from(iters).unwrap_or(usize::MAX).max(self.tasks);
        let run = self.run(op, total).await;
        let done = total.div_ceil(self.tasks).saturating_mul(self.tasks);
        run.elapsed().mul_f64(iters as f64 / done as f64)
    }

    /// Runs `ops` operations of every kind and prints a row for each, under `label`:
    ///
    /// ```text
    /// redis              load           81234 ops/s   p50   0.512 ms   p99   1.234 ms   (50000 ops, 50 tasks)
    /// ```
    ///
    /// Returns the load rate (operations per second).
    pub async fn report(&self, label: &str, ops: usize) -> f64 {
        let mut load_rate = 0.0;
        for op in Op::ALL {
            let run = self.run(op, ops).await;
            if op == Op::Load {
                load_rate = run.rate();
            }
            println!(
                "{label:<18} {:<11} {:>9.0} ops/s   p50 {:>7.3} ms   p99 {:>7.3} ms   ({} ops, {} tasks)",
                op.name(),
                run.rate(),
                run.percentile(0.50).as_secs_f64() * 1e3,
                run.percentile(0.99).as_secs_f64() * 1e3,
                run.ops(),
                self.tasks,
            );
        }
        load_rate
    }
}

/// The seeded records, with the version each is at (commits move it on).
struct Seeded {
    records: Vec<Record>,
    versions: Vec<AtomicU64>,
}

impl Seeded {
    /// One operation on seeded record `i` (modulo the count).
    async fn one(&self, store: &dyn Store, op: Op, i: usize) {
        let now = Timestamp::now();
        let i = i % self.records.len();
        let record = &self.records[i];
        match op {
            Op::Load => {
                store
                    .load(&record.key, now)
                    .await
                    .expect("load")
                    .expect("live");
            }
            Op::LoadTouch => {
                store
                    .load(&record.key, now)
                    .await
                    .expect("load")
                    .expect("live");
                let idle = now.saturating_add(Duration::from_secs(3600));
                assert!(store.touch(&record.key, idle, now).await.expect("touch"));
            }
            Op::Commit => {
                let version = &self.versions[i];
                let expected = version.load(Ordering::SeqCst);
                let mut next = record.clone();
                next.version = expected + 1;
                next.data.set_json("n", &serde_json::json!(expected));
                store.update(&next, expected, now).await.expect("update");
                version.store(expected + 1, Ordering::SeqCst);
            }
            Op::Create => {
                store
                    .create(&fresh_record(Some("new")))
                    .await
                    .expect("create");
            }
        }
    }
}

/// The PostgreSQL and MySQL workload: `tasks` concurrent callers share a budget of operations
/// and of time; each keeps to its own slice of the seeded records, so commits never conflict
/// (this measures the store, not the engine's retry loop).
#[derive(Clone)]
pub struct Partitioned {
    store: Arc<dyn Store>,
    seeded: Arc<Seeded>,
    tasks: usize,
}

impl Partitioned {
    /// Creates `records` sessions in `store` (logged in as one of a hundred users, deadlines
    /// [`fresh_record`]'s), for runs of `tasks` concurrent callers.
    ///
    /// # Panics
    ///
    /// If a create fails, `tasks` is zero, or there are fewer records than tasks.
    pub async fn seed(store: Arc<dyn Store>, records: usize, tasks: usize) -> Self {
        assert!(
            tasks > 0 && records >= tasks,
            "a workload needs tasks and at least a record per task"
        );
        let mut seeded = Vec::with_capacity(records);
        for i in 0..records {
            let record = fresh_record(Some(&format!("user{}", i % 100)));
            store.create(&record).await.expect("seed");
            seeded.push(record);
        }
        let versions = seeded.iter().map(|r| AtomicU64::new(r.version)).collect();
        Self {
            store,
            seeded: Arc::new(Seeded {
                records: seeded,
                versions,
            }),
            tasks,
        }
    }

    /// Concurrent callers per run.
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// One operation on seeded record `i` (modulo the count). With one caller at a time any `i`
    /// will do; concurrent callers must keep to disjoint records, as [`Partitioned::run`] does.
    ///
    /// # Panics
    ///
    /// If the operation fails, a commit conflicts, or the record no longer loads.
    pub async fn one(&self, op: Op, i: usize) {
        self.seeded.one(&*self.store, op, i).await;
    }

    /// Runs operations of one kind on `tasks` callers until `max_ops` have started or
    /// `max_time` has passed.
    ///
    /// # Panics
    ///
    /// As [`Partitioned::one`].
    pub async fn run(&self, op: Op, max_ops: usize, max_time: Duration) -> Run {
        let tasks = self.tasks;
        let slice = self.seeded.records.len() / tasks;
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let (store, seeded, next) = (self.store.clone(), self.seeded.clone(), next.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut n = 0;
                    while next.fetch_add(1, Ordering::Relaxed) < max_ops
                        && started.elapsed() < max_time
                    {
                        // Each task keeps to its own slice of the seeded records.
                        let i = task + tasks * (n % slice);
                        let t = Instant::now();
                        seeded.one(&*store, op, i).await;
                        latencies.push(t.elapsed());
                        n += 1;
                    }
                    latencies
                })
            })
            .collect();
        let latencies = join(handles, 0).await;
        Run::new(started.elapsed(), latencies)
    }

    /// Runs every kind of operation within the same budget and prints a heading and a row each:
    ///
    /// ```text
    /// postgres store, 16 concurrent callers, up to 20000 operations or 10s per kind:
    ///   load           9876 ops/s   p50    1.52 ms   p99    4.01 ms   (20000 ops in 2.03 s)
    /// ```
    pub async fn report(&self, max_ops: usize, max_time: Duration) {
        println!(
            "\n{} store, {} concurrent callers, up to {max_ops} operations or {max_time:?} per kind:",
            self.store.name(),
            self.tasks,
        );
        for op in Op::ALL {
            let run = self.run(op, max_ops, max_time).await;
            println!(
                "  {:<11} {:>7.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ops in {:.2} s)",
                op.name(),
                run.rate(),
                run.percentile(0.50).as_secs_f64() * 1e3,
                run.percentile(0.99).as_secs_f64() * 1e3,
                run.ops(),
                run.elapsed().as_secs_f64(),
            );
        }
    }
}
