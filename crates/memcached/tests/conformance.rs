//! The Memcached store against the store conformance suite (127.0.0.1:11211). A server that
//! is down skips the suite with a message, or fails it when `TESSERA_REQUIRE_STORES=1` (CI).

use std::sync::Arc;

use tessera_core::testing::store_or_skip;
use tessera_memcached::{MemcachedOptions, MemcachedStore};

const URL: &str = "memcached://127.0.0.1:11211";

async fn open(prefix: &str) -> Option<MemcachedStore> {
    let options = MemcachedOptions::default().key_prefix(prefix);
    store_or_skip(
        "Memcached",
        URL,
        MemcachedStore::connect_with(URL, options).await,
    )
}

tessera_core::store_conformance!(|namespace: String| async move { open(&namespace).await });

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_tasks_each_incrementing_a_thousand_times_lose_nothing() {
    let Some(store) = open("t_counter").await else {
        return;
    };
    tessera_core::testing::concurrent_updates_lose_nothing(Arc::new(store), 32, 1000).await;
}
