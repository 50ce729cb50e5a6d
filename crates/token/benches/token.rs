//! Stateless sessions on one thread: seal and open of an encrypted cookie with a 200-byte
//! payload; sign and verify of a JWT (Ed25519 and HS256); and the per-request load with
//! revocation checks on, from the cache (hit) and from the memory store (miss). Target
//! (issue 4): a verify with a revocation-cache hit under 10 µs on one core.
//!
//! Run: `cargo bench -p tessera-token --bench token -- --warm-up-time 1 --measurement-time 3`
//!
//! On a shared, loaded machine the wall clock also counts the time other processes hold the
//! core; `TESSERA_BENCH_CLOCK=cpu` measures the CPU time this process used instead (from
//! `/proc/self/stat`, 10 ms ticks: give it `--measurement-time 10` so samples are long).
//!
//! "seal" is a new session (start, one insert, login) and its whole commit (record encoding, a fresh token id, AEAD or
//! signature, base64); "open"/"verify" is a whole `Engine::load` (size and format checks,
//! decryption or signature verification, decoding, deadline checks), without revocation.
//! The same token is loaded over and over, as a client sends it, so the JWT engines answer
//! from their verified-token memo; `jwt-eddsa-no-memo` is the cost of a first sight.

// `criterion_group!` defines a public function without a doc comment.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use tessera_core::{ClientInfo, Engine, ManualClock, MemoryStore, Session, Timestamp};
use tessera_token::{CookieEngine, CookieKey, JwtEngine, JwtKey, KeyRing, Revocation};

/// The CPU time (user + system) this process has used, from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_name = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on the Linux targets this runs on.
    Duration::from_millis(ticks * 10)
}

/// Runs `iters` iterations of `routine` inside one `block_on` and measures them on the clock
/// `TESSERA_BENCH_CLOCK` selects (`cpu`, or by default `wall`).
fn timed<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, mut routine: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cpu = std::env::var("TESSERA_BENCH_CLOCK").is_ok_and(|v| v == "cpu");
    let (wall, start) = (Instant::now(), cpu_time());
    rt.block_on(async {
        for _ in 0..iters {
            routine().await;
        }
    });
    if cpu {
        cpu_time() - start
    } else {
        wall.elapsed()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_millis(1_800_000_000_000))
}

/// A new, logged-in session holding a 200-byte JSON value.
fn session(engine: &dyn Engine) -> Session {
    let mut session = engine.start(ClientInfo::default());
    // 198 characters plus the two quotes of the JSON string.
    session.insert("payload", &"p".repeat(198)).unwrap();
    session.login("alice@example.com");
    session
}

fn engines(clock: &ManualClock) -> Vec<(&'static str, Arc<dyn Engine>)> {
    let cookie = CookieEngine::new(KeyRing::new(CookieKey::generate("c1").unwrap()))
        .with_clock(clock.clone());
    let ed = JwtEngine::new(KeyRing::new(JwtKey::generate_ed25519("ed1").unwrap()))
        .unwrap()
        .with_clock(clock.clone());
    let hs = JwtEngine::new(KeyRing::new(JwtKey::generate_hs256("hs1").unwrap()))
        .unwrap()
        .with_clock(clock.clone());
    let ed_no_memo = ed.clone().with_verified_token_memo(0);
    vec![
        ("cookie", Arc::new(cookie)),
        ("jwt-eddsa", Arc::new(ed)),
        ("jwt-eddsa-no-memo", Arc::new(ed_no_memo)),
        ("jwt-hs256", Arc::new(hs)),
    ]
}

fn issue(rt: &tokio::runtime::Runtime, engine: &dyn Engine) -> String {
    let mut s = session(engine);
    rt.block_on(engine.commit(&mut s)).unwrap();
    s.issued_token().unwrap().to_owned()
}

fn seal_and_open(c: &mut Criterion) {
    let rt = runtime();
    let clock = clock();
    let mut group = c.benchmark_group("token");
    let baseline = CookieEngine::new(KeyRing::new(CookieKey::generate("c0").unwrap()));
    group.bench_function("new-session-only", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || {
                let s = session(&baseline);
                async move {
                    drop(s);
                }
            })
        });
    });
    for (name, engine) in engines(&clock) {
        let token = issue(&rt, &*engine);
        println!("{name}: token of {} bytes", token.len());
        group.bench_function(format!("{name}/seal"), |b| {
            b.iter_custom(|iters| {
                timed(&rt, iters, || {
                    let mut s = session(&*engine);
                    let engine = &engine;
                    async move {
                        engine.commit(&mut s).await.unwrap();
                    }
                })
            });
        });
        group.bench_function(format!("{name}/open"), |b| {
            b.iter_custom(|iters| {
                timed(&rt, iters, || async {
                    assert!(engine.load(&token).await.unwrap().is_some());
                })
            });
        });
    }
    group.finish();
}

fn with_revocation(c: &mut Criterion) {
    let rt = runtime();
    let clock = clock();
    let store = Arc::new(MemoryStore::new());
    let mut group = c.benchmark_group("token-revocation");
    for (label, staleness) in [
        ("cache-hit", Duration::from_secs(3600)),
        ("cache-miss", Duration::ZERO),
    ] {
        let revocation = Revocation::new(store.clone()).with_staleness(staleness);
        let cookie = CookieEngine::new(KeyRing::new(CookieKey::generate("c1").unwrap()))
            .with_clock(clock.clone())
            .with_revocation(revocation.clone());
        let ed = JwtEngine::new(KeyRing::new(JwtKey::generate_ed25519("ed1").unwrap()))
            .unwrap()
            .with_clock(clock.clone())
            .with_revocation(revocation.clone());
        let hs = JwtEngine::new(KeyRing::new(JwtKey::generate_hs256("hs1").unwrap()))
            .unwrap()
            .with_clock(clock.clone())
            .with_revocation(revocation);
        let ed_no_memo = ed.clone().with_verified_token_memo(0);
        let engines: [(&str, Arc<dyn Engine>); 4] = [
            ("cookie", Arc::new(cookie)),
            ("jwt-eddsa", Arc::new(ed)),
            ("jwt-eddsa-no-memo", Arc::new(ed_no_memo)),
            ("jwt-hs256", Arc::new(hs)),
        ];
        for (name, engine) in engines {
            let token = issue(&rt, &*engine);
            // The subject has a "valid after" entry, so a miss reads two live records.
            rt.block_on(Revocation::new(store.clone()).revoke_subject(
                "alice@example.com",
                Timestamp::from_millis(1),
                Timestamp::from_millis(u64::MAX / 2),
            ))
            .unwrap();
            group.bench_function(format!("{name}/load-{label}"), |b| {
                b.iter_custom(|iters| {
                    timed(&rt, iters, || async {
                        assert!(engine.load(&token).await.unwrap().is_some());
                    })
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, seal_and_open, with_revocation);
criterion_main!(benches);
