//! Stateless sessions on one thread: seal and open of an encrypted cookie with a 200-byte
//! payload; sign and verify of a JWT (Ed25519 and HS256); and the per-request load with
//! revocation checks on, from the cache (hit) and from the memory store (miss). Target
//! (issue 4): a verify with a revocation-cache hit under 10 µs on one core.
//!
//! Run: `cargo bench -p tessera-token --bench token -- --warm-up-time 1 --measurement-time 3`
//!
//! "seal" is a whole commit of a new session (record encoding, a fresh token id, AEAD or
//! signature, base64); "open"/"verify" is a whole `Engine::load` (size and format checks,
//! decryption or signature verification, decoding, deadline checks), without revocation.

// `criterion_group!` defines a public function without a doc comment.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tessera_core::{ClientInfo, Engine, ManualClock, MemoryStore, Session, Timestamp};
use tessera_token::{CookieEngine, CookieKey, JwtEngine, JwtKey, KeyRing, Revocation};

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
    vec![
        ("cookie", Arc::new(cookie)),
        ("jwt-eddsa", Arc::new(ed)),
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
    for (name, engine) in engines(&clock) {
        let token = issue(&rt, &*engine);
        println!("{name}: token of {} bytes", token.len());
        group.bench_function(format!("{name}/seal"), |b| {
            b.to_async(&rt).iter_batched(
                || session(&*engine),
                |mut s| {
                    let engine = &engine;
                    async move {
                        engine.commit(&mut s).await.unwrap();
                        s
                    }
                },
                BatchSize::SmallInput,
            );
        });
        group.bench_function(format!("{name}/open"), |b| {
            b.to_async(&rt).iter(|| async {
                assert!(engine.load(&token).await.unwrap().is_some());
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
        let engines: [(&str, Arc<dyn Engine>); 3] = [
            ("cookie", Arc::new(cookie)),
            ("jwt-eddsa", Arc::new(ed)),
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
                b.to_async(&rt).iter(|| async {
                    assert!(engine.load(&token).await.unwrap().is_some());
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, seal_and_open, with_revocation);
criterion_main!(benches);
