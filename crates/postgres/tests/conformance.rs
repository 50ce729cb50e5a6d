//! The core store conformance suite, against a real PostgreSQL server
//! (postgres://postgres@127.0.0.1:5432/test, or `TESSERA_POSTGRES_URL`).

mod common;

use tessera_postgres::Options;

tessera_core::store_conformance!(|namespace: String| async move {
    common::connect(&namespace, Options::default()).await
});

/// 32 tasks each committing read-modify-write increments to one session: none is lost.
///
/// Every commit on one hot row waits for the previous one's durable commit (a WAL/redo-log
/// flush) and most attempts lose the compare-and-swap and retry, so the full 32 x 1000 takes
/// about ten minutes in a debug build on a loaded two-core machine. It runs with
/// `TESSERA_LONG_TESTS=1`; otherwise 32 x 100 (the same contention, a tenth of the length).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_writers_lose_no_increment() {
    let per_task = if std::env::var("TESSERA_LONG_TESTS").is_ok_and(|v| v == "1") {
        1000
    } else {
        100
    };
    let table = common::unique_table("lose_nothing");
    let Some(store) = common::connect(&table, Options::default()).await else {
        return;
    };
    tessera_core::testing::concurrent_updates_lose_nothing(
        std::sync::Arc::new(store),
        32,
        per_task,
    )
    .await;
}
