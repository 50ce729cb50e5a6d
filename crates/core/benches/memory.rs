//! The memory store through the engine, on one thread: load, load + touch, commit of one
//! changed key, create. Targets (issue 2): at least 1,000,000 loads/s and 300,000 commits/s on
//! one core.
//!
//! Run (wall clock): `cargo bench -p tessera-core --bench memory -- --warm-up-time 1 --measurement-time 10`
//!
//! On a shared, loaded machine the wall clock counts the time other processes hold the core;
//! `TESSERA_BENCH_CLOCK=cpu` measures the CPU time this process used instead (from
//! `/proc/self/stat`, 10 ms ticks, so each sample runs long: 10 samples, about 1 s each).

// `criterion_group!` defines a public function without a doc comment.
#![allow(missing_docs)]

use std::cell::Cell;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera_core::{MemoryStore, Policy, Sessions};

/// Sessions already in the store besides the one under test, so maps are not trivially small.
const RESIDENTS: usize = 100_000;

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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
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

async fn engine(policy: Policy) -> (Sessions, String) {
    let sessions = Sessions::new(MemoryStore::new()).with_policy(policy);
    for _ in 0..RESIDENTS {
        seeded(&sessions).await;
    }
    let token = seeded(&sessions).await;
    (sessions, token)
}

fn memory(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Elements(1));
    if matches!(Watch::start(), Watch::Cpu(_)) {
        group.sample_size(10);
    }

    let (sessions, token) = rt.block_on(engine(Policy::default()));
    group.bench_function("load", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (sessions, token) = (&sessions, &token);
            async move {
                let watch = Watch::start();
                for _ in 0..iters {
                    let session = sessions.load(token).await.expect("store").expect("live");
                    std::hint::black_box(session);
                }
                watch.elapsed()
            }
        });
    });

    // A touch interval of zero makes every load due for a touch.
    let (touching, touch_token) =
        rt.block_on(engine(Policy::default().touch_interval(Duration::ZERO)));
    group.bench_function("load+touch", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (sessions, token) = (&touching, &touch_token);
            async move {
                let watch = Watch::start();
                for _ in 0..iters {
                    let mut session = sessions.load(token).await.expect("store").expect("live");
                    sessions.commit(&mut session).await.expect("touch");
                }
                watch.elapsed()
            }
        });
    });

    let n = Cell::new(0u64);
    group.bench_function("load+insert+commit", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (sessions, token, n) = (&sessions, &token, &n);
            async move {
                let watch = Watch::start();
                for _ in 0..iters {
                    n.set(n.get() + 1);
                    let mut session = sessions.load(token).await.expect("store").expect("live");
                    session.insert("n", &n.get()).expect("json");
                    sessions.commit(&mut session).await.expect("commit");
                }
                watch.elapsed()
            }
        });
    });

    // Each sample creates into a fresh store, so memory stays bounded by one sample's count.
    group.bench_function("create", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let sessions = Sessions::new(MemoryStore::new());
            let watch = Watch::start();
            for _ in 0..iters {
                seeded(&sessions).await;
            }
            let elapsed = watch.elapsed();
            drop(sessions);
            elapsed
        });
    });
    group.finish();
}

criterion_group!(benches, memory);
criterion_main!(benches);
