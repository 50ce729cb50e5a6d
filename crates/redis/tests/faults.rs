//! A Redis server that goes away and comes back: operations fail fast with
//! `StoreError::Unavailable` (never hang, never "no session"), and the same store recovers by
//! itself. The test runs its own `redis-server` on a free loopback port.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tessera_core::testing::{closed_port, free_port, fresh_record, stores_required};
use tessera_core::{Store, StoreError, Timestamp};
use tessera_redis::{RedisOptions, RedisStore};
use tokio::process::{Child, Command};

const OPERATION_TIMEOUT: Duration = Duration::from_millis(500);
/// An operation against a dead server must fail within this (timeout plus scheduling slack).
const FAIL_FAST: Duration = Duration::from_secs(2);

/// Starts `redis-server` on `port` and waits (at most 10 s) until it accepts connections.
async fn start_server(port: u16) -> Option<Child> {
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(error) if stores_required() => {
            panic!("redis-server is required for the fault test: {error}")
        }
        Err(error) => {
            eprintln!("skipping the Redis fault test: cannot run redis-server ({error})");
            return None;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server on port {port} did not start within 10 s");
}

async fn stop_server(mut child: Child) {
    child.kill().await.unwrap();
}

async fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    operation: impl std::future::Future<Output = Result<T, StoreError>>,
) {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), operation)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for 10 s against a dead server"));
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{what} against a dead server gave {result:?}"
    );
    assert!(elapsed < FAIL_FAST, "{what} took {elapsed:?} to fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_outage_fails_fast_and_the_store_recovers_by_itself() {
    let port = free_port();
    let Some(server) = start_server(port).await else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let options = RedisOptions::default()
        .key_prefix("t_faults")
        .operation_timeout(OPERATION_TIMEOUT)
        .connect_timeout(OPERATION_TIMEOUT);
    let store = RedisStore::connect_with(&url, options).await.unwrap();
    let record = fresh_record(Some("alice"));
    store.create(&record).await.unwrap();
    assert!(
        store
            .load(&record.key, Timestamp::now())
            .await
            .unwrap()
            .is_some()
    );

    stop_server(server).await;
    let now = Timestamp::now();
    // Several rounds: the first sees the dropped connection, later ones the failed reconnects.
    for _ in 0..3 {
        assert_unavailable("load", store.load(&record.key, now)).await;
        assert_unavailable("ping", store.ping()).await;
        assert_unavailable("create", store.create(&fresh_record(None))).await;
        assert_unavailable(
            "touch",
            store.touch(
                &record.key,
                now.saturating_add(Duration::from_secs(60)),
                now,
            ),
        )
        .await;
        assert_unavailable("list_subject", store.list_subject("alice", now)).await;
    }

    let _server = start_server(port).await.expect("restart");
    // The same store object reconnects by itself; give it at most 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.ping().await {
            Ok(()) => break,
            Err(error) => {
                assert!(error.is_outage(), "{error:?}");
                assert!(
                    Instant::now() < deadline,
                    "the store did not recover within 10 s: {error:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // The restarted server kept nothing (no persistence): the old session is gone, not an error.
    assert!(
        store
            .load(&record.key, Timestamp::now())
            .await
            .unwrap()
            .is_none()
    );
    let again = fresh_record(Some("alice"));
    store.create(&again).await.unwrap();
    assert_eq!(
        store
            .load(&again.key, Timestamp::now())
            .await
            .unwrap()
            .as_ref(),
        Some(&again)
    );
}

#[tokio::test]
async fn connecting_to_a_server_that_is_down_fails_fast() {
    let port = closed_port().await;
    let started = Instant::now();
    let options = RedisOptions::default().connect_timeout(OPERATION_TIMEOUT);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        RedisStore::connect_with(&format!("redis://127.0.0.1:{port}"), options),
    )
    .await
    .expect("connect hung");
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < FAIL_FAST);
}

#[tokio::test]
async fn bad_urls_and_options_are_refused_at_connect() {
    for url in ["http://127.0.0.1:6379", "postgres://x", "redis+cluster://"] {
        let result = RedisStore::connect_url(url).await;
        assert!(
            matches!(result, Err(StoreError::Backend(_))),
            "{url}: {result:?}"
        );
    }
    let result = RedisStore::connect_with(
        "redis://127.0.0.1:6379",
        RedisOptions::default().key_prefix("a{b}"),
    )
    .await;
    assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
}
