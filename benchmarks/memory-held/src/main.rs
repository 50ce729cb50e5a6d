//! Inserts N live sessions with a 200-byte payload into one memory store and prints the
//! resident memory (VmRSS from /proc/self/status) before and after, and bytes per session.
//!
//! Usage: `memory-held tessera|tower-sessions COUNT`
//!
//! Both stores get the same data: one key, `payload`, holding a 200-character string, and an
//! expiry an hour away. Tessera's sessions go through its engine (`Sessions::start`, `insert`,
//! `commit`: a fresh ID, CSRF secret and timestamps, as in a real request); tower-sessions'
//! through `SessionStore::create` with a default (random) `Id`, which is what its session layer
//! does. Neither side keeps the IDs, so only what the store holds is counted. Each run is its
//! own process, so one store's freed memory cannot flatter the other.

use std::collections::HashMap;
use std::process::ExitCode;

use tower_sessions::SessionStore;

const PAYLOAD_LEN: usize = 200;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn payload(i: u64) -> String {
    // Distinct per session (so nothing can be shared), exactly PAYLOAD_LEN ASCII characters.
    let mut text = format!("{i:020}-");
    while text.len() < PAYLOAD_LEN {
        text.push((b'a' + (text.len() % 26) as u8) as char);
    }
    text
}

async fn fill_tessera(count: u64) -> (u64, u64, Box<dyn std::any::Any>) {
    let sessions = tessera_core::Sessions::new(tessera_core::MemoryStore::new());
    let before = rss_kib();
    for i in 0..count {
        let mut session = sessions.start();
        session.insert("payload", &payload(i)).expect("json");
        let committed = sessions.commit(&mut session).await.expect("create");
        assert_eq!(committed, tessera_core::Commit::Created);
    }
    let after = rss_kib();
    let stats = sessions
        .store()
        .count_live(sessions.now())
        .await
        .expect("count")
        .expect("the memory store counts");
    assert_eq!(stats, count, "every session is held and live");
    (before, after, Box::new(sessions))
}

async fn fill_tower(count: u64) -> (u64, u64, Box<dyn std::any::Any>) {
    let store = tower_sessions_memory_store::MemoryStore::default();
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let before = rss_kib();
    for i in 0..count {
        let mut data = HashMap::new();
        data.insert("payload".to_owned(), serde_json::Value::String(payload(i)));
        let mut record = tower_sessions::session::Record {
            id: tower_sessions::session::Id::default(),
            data,
            expiry_date: expiry,
        };
        store.create(&mut record).await.expect("create");
    }
    let after = rss_kib();
    let probe = tower_sessions::session::Id::default();
    assert!(store.load(&probe).await.expect("load").is_none());
    (before, after, Box::new(store))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(which), Some(count)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: memory-held tessera|tower-sessions COUNT");
        return ExitCode::from(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (before, after, store) = match which.as_str() {
        "tessera" => rt.block_on(fill_tessera(count)),
        "tower-sessions" => rt.block_on(fill_tower(count)),
        other => {
            eprintln!("unknown store {other:?}: expected tessera or tower-sessions");
            return ExitCode::from(2);
        }
    };
    let per_session = (after.saturating_sub(before) * 1024) as f64 / count.max(1) as f64;
    println!(
        "store={which} sessions={count} payload_bytes={PAYLOAD_LEN} rss_before_kib={before} rss_after_kib={after} rss_after_mib={:.1} bytes_per_session={per_session:.0}",
        after as f64 / 1024.0
    );
    drop(store);
    ExitCode::SUCCESS
}
