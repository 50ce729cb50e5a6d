//! The core store conformance suite against SQLite files on disk, plus the heavy lost-updates
//! run the issue asks for.

use std::sync::Arc;

use tessera_sqlite::SqliteStore;

/// A store in its own file under a temp dir that lives as long as the test process (the dir is
/// leaked on purpose: the store outlives the factory, and the OS cleans /tmp).
async fn store_in_temp_dir(namespace: String) -> Option<SqliteStore> {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let store = SqliteStore::open(dir.join(format!("{namespace}.db")))
        .await
        .expect("open sqlite store");
    Some(store)
}

tessera_core::store_conformance!(store_in_temp_dir);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_tasks_incrementing_one_counter_lose_nothing() {
    let store = store_in_temp_dir("lost_updates".into()).await.unwrap();
    tessera_core::testing::concurrent_updates_lose_nothing(Arc::new(store), 32, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_in_memory_store_passes_the_lost_updates_check_too() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    tessera_core::testing::concurrent_updates_lose_nothing(Arc::new(store), 8, 50).await;
}
