//! The memory store against the store conformance suite.

use tessera_core::MemoryStore;

tessera_core::store_conformance!(|_namespace: String| async { Some(MemoryStore::new()) });

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_tasks_each_incrementing_a_thousand_times_lose_nothing() {
    let store = std::sync::Arc::new(MemoryStore::new());
    tessera_core::testing::concurrent_updates_lose_nothing(store, 32, 1000).await;
}
