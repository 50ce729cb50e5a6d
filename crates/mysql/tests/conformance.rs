//! The core store conformance suite, against a real MySQL/MariaDB server
//! (mysql://root@127.0.0.1:3306/test, or `TESSERA_MYSQL_URL`).

mod common;

use tessera_mysql::Options;

tessera_core::store_conformance!(|namespace: String| async move {
    common::connect(&namespace, Options::default()).await
});

/// 32 tasks each committing 1000 read-modify-write increments to one session: none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_writers_lose_no_increment() {
    let Some(store) = common::connect(&common::unique_table("lose_nothing"), Options::default()).await else {
        return;
    };
    tessera_core::testing::concurrent_updates_lose_nothing(std::sync::Arc::new(store), 32, 1000)
        .await;
}
