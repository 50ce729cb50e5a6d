//! A Memcached server that goes away and comes back: operations fail fast with
//! `StoreError::Unavailable` (never hang, never "no session"), and the same store recovers by
//! itself. The test runs its own `memcached` on a free loopback port.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tessera_core::testing::{closed_port, free_port, fresh_record, stores_required};
use tessera_core::{Store, StoreError, Timestamp};
use tessera_memcached::{MemcachedOptions, MemcachedStore};
use tokio::process::{Child, Command};

const OPERATION_TIMEOUT: Duration = Duration::from_millis(500);
const FAIL_FAST: Duration = Duration::from_secs(2);

async fn start_server(port: u16) -> Option<Child> {
    let spawned = Command::new("memcached")
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "16",
        ])
        // memcached refuses to run as root without a user to switch to.
        .args(["-u", "root"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(error) if stores_required() => {
            panic!("memcached is required for the fault test: {error}")
        }
        Err(error) => {
            eprintln!("skipping the Memcached fault test: cannot run memcached ({error})");
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
    panic!("memcached on port {port} did not start within 10 s");
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
    let Some(mut server) = start_server(port).await else {
        return;
    };
    let options = MemcachedOptions::default()
        .key_prefix("t_faults")
        .operation_timeout(OPERATION_TIMEOUT)
        .connect_timeout(OPERATION_TIMEOUT);
    let store = MemcachedStore::connect_with(&format!("memcached://127.0.0.1:{port}"), options)
        .await
        .unwrap();
    let record = fresh_record(None);
    store.create(&record).await.unwrap();
    assert!(
        store
            .load(&record.key, Timestamp::now())
            .await
            .unwrap()
            .is_some()
    );

    server.kill().await.unwrap();
    let now = Timestamp::now();
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
    }

    let _server = start_server(port).await.expect("restart");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.ping().await {
            Ok(()) => break,
            Err(error) => {
                assert!(error.is_outage(), "{error:?}");
                assert!(
                    Instant::now() < deadline,
                    "no recovery within 10 s: {error:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(
        store
            .load(&record.key, Timestamp::now())
            .await
            .unwrap()
            .is_none()
    );
    let again = fresh_record(None);
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
    let options = MemcachedOptions::default().connect_timeout(OPERATION_TIMEOUT);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        MemcachedStore::connect_with(&format!("memcached://127.0.0.1:{port}"), options),
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
    for url in ["redis://127.0.0.1:11211", "memcached://", "memcached://a:b"] {
        let result = MemcachedStore::connect(url).await;
        assert!(
            matches!(result, Err(StoreError::Backend(_))),
            "{url}: {result:?}"
        );
    }
    let result = MemcachedStore::connect_with(
        "memcached://127.0.0.1:11211",
        MemcachedOptions::default().key_prefix("has space"),
    )
    .await;
    assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
}

#[tokio::test]
async fn listing_by_subject_is_plainly_unsupported() {
    let required = stores_required();
    let store = match MemcachedStore::connect("memcached://127.0.0.1:11211").await {
        Ok(store) => store,
        Err(error) if !required => {
            eprintln!("skipping: 127.0.0.1:11211 unreachable ({error:?})");
            return;
        }
        Err(error) => panic!("Memcached at 127.0.0.1:11211 is required: {error:?}"),
    };
    assert!(!store.capabilities().subject_index);
    let err = store
        .list_subject("alice", Timestamp::now())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "listing sessions by subject is not supported by the memcached store"
    );
}
