//! The SQLite store with its file on disk, through the engine: load, load + touch, commit of one
//! changed key, create; and concurrent loads with different reader pool sizes. Targets (issue 2):
//! at least 50,000 loads/s and 10,000 commits/s on one core.
//!
//! Run (wall clock): `cargo bench -p tessera-sqlite --bench sqlite -- --warm-up-time 1 --measurement-time 10`
//! `TESSERA_BENCH_CLOCK=cpu` measures the CPU time of the whole process (every thread, the
//! blocking pool included) instead of the wall clock, for a shared, loaded machine; see
//! `crates/core/benches/memory.rs`. The concurrent-loads group always uses the wall clock.
//! (`TESSERA_BENCH_DIR` picks where the database file goes; default: the system temp dir.)

// `criterion_group!` defines a public function without a doc comment.
#![allow(missing_docs)]

use std::cell::Cell;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tessera_core::{Policy, Sessions};
use tessera_sqlite::{SqliteOptions, SqliteStore};

/// Sessions already in the file besides the ones under test.
const RESIDENTS: usize = 20_000;

/// The CPU time (user + system) this process has used, from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on every Linux target this benchmark runs on.
    Duration::from_millis(ticks * 10)
}

/// A stopwatch on the clock `TESSERA_BENCH_CLOCK` selects (`cpu` or, by default, `wall`).
#[derive(Clone, Copy)]
enum Watch {
    Wall(Instant),
    Cpu(Duration),
}

impl Watch {
    fn start() -> Self {
        if std::env::var("TESSERA_BENCH_CLOCK").is_ok_and(|v| v == "cpu") {
            Self::Cpu(cpu_time())
        } else {
            Self::Wall(Instant::now())
        }
    }

    fn elapsed(self) -> Duration {
        match self {
            Self::Wall(start) => start.elapsed(),
            Self::Cpu(start) => cpu_time().saturating_sub(start),
        }
    }
}

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("TESSERA_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("temp dir"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

/// A typical small session: a subject (one of many users, so no subject holds thousands of
/// sessions), a cart, a theme, a counter.
async fn seeded(sessions: &Sessions) -> String {
    thread_local!(static USER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
    let user = USER.with(|u| {
        u.set(u.get() + 1);
        u.get()
    });
    let mut session = sessions.start();
    session.login(format!("user{user}@example.com"));
    session
        .insert("cart", &["tea", "scones", "jam"])
        .expect("json");
    session.insert("theme", "dark").expect("json");
    session.insert("n", &0u64).expect("json");
    sessions.commit(&mut session).await.expect("create");
    session.id().expect("issued").expose()
}

async fn engine(
    dir: &tempfile::TempDir,
    options: SqliteOptions,
    policy: Policy,
) -> (Sessions, Vec<String>) {
    let store = SqliteStore::open_with(dir.path().join("bench.db"), options)
        .await
        .expect("open");
    let sessions = Sessions::new(store).with_policy(policy);
    let mut tokens = Vec::with_capacity(RESIDENTS);
    for _ in 0..RESIDENTS {
        tokens.push(seeded(&sessions).await);
    }
    (sessions, tokens)
}

fn single(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let dir = temp_dir();
    // Every load is due for a touch, so "load+touch" writes each time; the other cases never
    // reach the touch because they commit changes (an update sets the activity time itself) or
    // only load.
    let (sessions, tokens) = rt.block_on(engine(
        &dir,
        SqliteOptions::default(),
        Policy::default().touch_interval(Duration::ZERO),
    ));
    let mut group = c.benchmark_group("sqlite");
    group.throughput(Throughput::Elements(1));

    if matches!(Watch::start(), Watch::Cpu(_)) {
        group.sample_size(10);
    }
    let i = Cell::new(0usize);
    let next = || {
        i.set((i.get() + 7919) % tokens.len());
        &tokens[i.get()]
    };
    group.bench_function("load", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (sessions, next) = (&sessions, &next);
            async move {
                let watch = Watch::start();
                for _ in 0..iters {
                    let session = sessions.load(next()).await.expect("store").expect("live");
                    std::hint::black_box(session);
                }
                watch.elapsed()
            }
        });
    });
    group.bench_function("load+touch", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (sessions, next) = (&sessions, &next);
            async move {
                let watch = Watch::start();
                for _ in 0..iters {
                    let mut session = sessions.load(next()).await.expect("store").expect("live");
                    sessions.commit(&mut session).await.expect("touch");
                }
                watch.elapsed()
            }
        });
    });
    let n = Cell::new(0u64);
    group.bench_function("load+insert+commit", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (sessions, next, n) = (&sessions, &next, &n);
            async move {
                let watch = Watch::start();
                for _ in 0..iters {
                    n.set(n.get() + 1);
                    let mut session = sessions.load(next()).await.expect("store").expect("live");
                    session.insert("n", &n.get()).expect("json");
                    sessions.commit(&mut session).await.expect("commit");
                }
                watch.elapsed()
            }
        });
    });
    group.bench_function("create", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let sessions = &sessions;
            async move {
                let watch = Watch::start();
                for _ in 0..iters {
                    seeded(sessions).await;
                }
                watch.elapsed()
            }
        });
    });
    group.finish();
}

/// 64 loads in flight at once on a two-worker runtime, for reader pools of 0 (everything through
/// the writer connection), 1, 2 and 4 connections.
fn concurrent(c: &mut Criterion) {
    const IN_FLIGHT: usize = 64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("sqlite-concurrent-loads");
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    for pool_size in [0usize, 1, 2, 4] {
        let dir = temp_dir();
        let (sessions, tokens) = rt.block_on(engine(
            &dir,
            SqliteOptions::default().pool_size(pool_size),
            Policy::default(),
        ));
        let tokens: std::sync::Arc<[String]> = tokens.into();
        group.bench_with_input(
            BenchmarkId::from_parameter(pool_size),
            &pool_size,
            |b, _| {
                b.to_async(&rt).iter(|| {
                    let (sessions, tokens) = (sessions.clone(), tokens.clone());
                    async move {
                        let tasks: Vec<_> = (0..IN_FLIGHT)
                            .map(|t| {
                                let (sessions, tokens) = (sessions.clone(), tokens.clone());
                                tokio::spawn(async move {
                                    let token = &tokens[(t * 7919) % tokens.len()];
                                    sessions.load(token).await.expect("store").expect("live");
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.expect("task");
                        }
                    }
                });
            },
        );
    }
    group.finish();
}

/// 32 commits in flight at once (each a load, one changed key and its commit, on sessions of
/// its own) on a two-worker runtime, with group commit off (`max_batch(1)`: one transaction per
/// write) and on (the default).
fn concurrent_commits(c: &mut Criterion) {
    const IN_FLIGHT: usize = 32;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("sqlite-concurrent-commits");
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    for max_batch in [1usize, 128] {
        let dir = temp_dir();
        let (sessions, tokens) = rt.block_on(engine(
            &dir,
            SqliteOptions::default().max_batch(max_batch),
            Policy::default(),
        ));
        let tokens: std::sync::Arc<[String]> = tokens.into();
        let round = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        group.bench_with_input(
            BenchmarkId::new("max_batch", max_batch),
            &max_batch,
            |b, _| {
                b.to_async(&rt).iter(|| {
                    let (sessions, tokens) = (sessions.clone(), tokens.clone());
                    let r = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async move {
                        let tasks: Vec<_> = (0..IN_FLIGHT)
                            .map(|t| {
                                let (sessions, tokens) = (sessions.clone(), tokens.clone());
                                tokio::spawn(async move {
                                    let token = &tokens[(r * IN_FLIGHT + t) % tokens.len()];
                                    let mut session =
                                        sessions.load(token).await.expect("store").expect("live");
                                    session.insert("n", &r).expect("json");
                                    sessions.commit(&mut session).await.expect("commit");
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.expect("task");
                        }
                    }
                });
            },
        );
    }
    group.finish();
}

/// Where a load's time goes: the hop to a blocking-pool thread and back with no work at all,
/// and the same SELECT on a connection used directly on the bench thread (no hop, no engine).
fn parts(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let dir = temp_dir();
    let (sessions, tokens) = rt.block_on(engine(&dir, SqliteOptions::default(), Policy::default()));
    let mut group = c.benchmark_group("sqlite-parts");
    group.throughput(Throughput::Elements(1));
    if matches!(Watch::start(), Watch::Cpu(_)) {
        group.sample_size(10);
    }
    group.bench_function("spawn_blocking-round-trip", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let watch = Watch::start();
            for _ in 0..iters {
                tokio::task::spawn_blocking(|| std::hint::black_box(1))
                    .await
                    .expect("join");
            }
            watch.elapsed()
        });
    });
    // The alternative design: one dedicated thread fed by a channel, answering on a oneshot.
    let (jobs, queue) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<i32>>();
    let worker = std::thread::spawn(move || {
        for reply in queue {
            let _ = reply.send(std::hint::black_box(1));
        }
    });
    group.bench_function("dedicated-thread-round-trip", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let jobs = jobs.clone();
            async move {
                let watch = Watch::start();
                for _ in 0..iters {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    jobs.send(reply).expect("worker alive");
                    answer.await.expect("answer");
                }
                watch.elapsed()
            }
        });
    });
    drop(jobs);
    worker.join().expect("worker");
    let keys: Vec<[u8; 32]> = tokens
        .iter()
        .map(|t| {
            *tessera_core::SessionId::parse(t)
                .expect("token")
                .key()
                .as_bytes()
        })
        .collect();
    let conn = rusqlite::Connection::open(dir.path().join("bench.db")).expect("open");
    let i = Cell::new(0usize);
    group.bench_function("select-on-this-thread", |b| {
        b.iter_custom(|iters| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT record, last_seen_at, idle_deadline, version \
                     FROM tessera_sessions WHERE key = ?1 AND deadline > ?2",
                )
                .expect("prepare");
            let watch = Watch::start();
            for _ in 0..iters {
                i.set((i.get() + 7919) % keys.len());
                let blob: Vec<u8> = stmt
                    .query_row(rusqlite::params![&keys[i.get()][..], 0i64], |r| r.get(0))
                    .expect("row");
                std::hint::black_box(blob);
            }
            watch.elapsed()
        });
    });
    drop(sessions);
    group.finish();
}

criterion_group!(benches, single, parts, concurrent, concurrent_commits);
criterion_main!(benches);
