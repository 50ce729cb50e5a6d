//! The Redis store against the store conformance suite: standalone (127.0.0.1:6379) and Redis
//! Cluster (127.0.0.1:7001-7003). A server that is down skips its suite with a message, or
//! fails it when `TESSERA_REQUIRE_STORES=1` (CI).

use std::sync::Arc;

use tessera_core::testing::store_or_skip;
use tessera_redis::{RedisOptions, RedisStore};

const STANDALONE: &str = "redis://127.0.0.1:6379";
const CLUSTER: &str = "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

async fn open(url: &str, prefix: &str) -> Option<RedisStore> {
    let options = RedisOptions::default().key_prefix(prefix);
    store_or_skip(
        "Redis",
        url,
        RedisStore::connect_url_with(url, options).await,
    )
}

mod standalone {
    use super::*;

    tessera_core::store_conformance!(|namespace: String| async move {
        open(STANDALONE, &namespace).await
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn thirty_two_tasks_each_incrementing_a_thousand_times_lose_nothing() {
        let Some(store) = open(STANDALONE, "t_counter_standalone").await else {
            return;
        };
        assert!(!store.is_cluster());
        tessera_core::testing::concurrent_updates_lose_nothing(Arc::new(store), 32, 1000).await;
    }
}

mod cluster {
    use super::*;

    tessera_core::store_conformance!(
        |namespace: String| async move { open(CLUSTER, &namespace).await }
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn thirty_two_tasks_each_incrementing_a_thousand_times_lose_nothing() {
        let Some(store) = open(CLUSTER, "t_counter_cluster").await else {
            return;
        };
        assert!(store.is_cluster());
        tessera_core::testing::concurrent_updates_lose_nothing(Arc::new(store), 32, 1000).await;
    }
}
