//! Faults and the store's own promises beyond the conformance suite: outages are
//! `Unavailable` and bounded in time, damaged rows read as "no session", migrations are
//! idempotent, bad settings are refused.

mod common;

use std::time::Duration;

use tessera_core::testing::{self, Relay, SilentServer, closed_port, fresh_record};
use tessera_core::{Key, Store, StoreError, Timestamp};
use tessera_postgres::{ConfigError, Options, PostgresStore, SCHEMA_TABLE, SCHEMA_VERSION};

fn quick() -> Options {
    Options::default()
        .connect_timeout(Duration::from_millis(500))
        .operation_timeout(Duration::from_secs(2))
        .pool_size(2)
}

#[tokio::test]
async fn a_refused_connection_fails_fast_as_unavailable() {
    let port = closed_port().await;
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    testing::assert_unavailable_within(
        Duration::from_secs(3),
        PostgresStore::connect_with(&url, quick()),
    )
    .await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_unavailable() {
    // Accepts connections and holds them open without a word.
    let silent = SilentServer::start().await;
    let url = format!("postgres://postgres@127.0.0.1:{}/test", silent.port());
    testing::assert_unavailable_within(
        Duration::from_secs(4),
        PostgresStore::connect_with(&url, quick()),
    )
    .await;
}

#[tokio::test]
async fn bad_settings_are_refused_before_connecting() {
    for table in ["", "Sessions", "x; DROP TABLE users", "a.b"] {
        let err = PostgresStore::connect_with(&common::url(), Options::default().table(table))
            .await
            .unwrap_err();
        let StoreError::Backend(source) = &err else {
            panic!("{err:?}")
        };
        assert!(
            matches!(
                source.downcast_ref::<ConfigError>(),
                Some(ConfigError::InvalidTableName(_))
            ),
            "{err:?}"
        );
    }
    let err = PostgresStore::connect("postgres://host:notaport/db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_records_read_as_no_session() {
    let table = common::unique_table("damaged");
    let Some(store) = common::connect(&table, Options::default()).await else {
        return;
    };
    let raw = common::raw_client().await;
    testing::damaged_records_read_as_no_session(&store, async |key: Key, record: Vec<u8>| {
        raw.execute(
            &format!("UPDATE {table} SET record = $1 WHERE session_key = $2"),
            &[&record, &key.as_bytes().as_slice()],
        )
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_keep_data() {
    let table = common::unique_table("migrate");
    let Some(first) = common::connect(&table, Options::default()).await else {
        return;
    };
    let record = fresh_record(Some("mia"));
    first.create(&record).await.unwrap();

    // Connecting again, and migrating again (several at once), changes nothing.
    let second = PostgresStore::connect_with(&common::url(), Options::default().table(&table))
        .await
        .unwrap();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let store = second.clone();
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for run in runs {
        run.await.unwrap().unwrap();
    }
    assert_eq!(
        second.load(&record.key, Timestamp::now()).await.unwrap(),
        Some(record)
    );
    let raw = common::raw_client().await;
    let version: i32 = raw
        .query_one(
            &format!("SELECT version FROM {SCHEMA_TABLE} WHERE table_name = $1"),
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, SCHEMA_VERSION);

    // A table migrated by a newer build is refused rather than misread.
    raw.execute(
        &format!("UPDATE {SCHEMA_TABLE} SET version = 99 WHERE table_name = $1"),
        &[&table],
    )
    .await
    .unwrap();
    let err = second.migrate().await.unwrap_err();
    let StoreError::Backend(source) = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            source.downcast_ref::<ConfigError>(),
            Some(ConfigError::NewerSchema { found: 99, .. })
        ),
        "{err:?}"
    );
    // Without migrating on connect, the store starts anyway (the schema is someone else's job).
    let unmanaged = PostgresStore::connect_with(
        &common::url(),
        Options::default().table(&table).migrate_on_connect(false),
    )
    .await
    .unwrap();
    unmanaged.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_dropped_by_hand_comes_back_at_the_next_migrate() {
    let table = common::unique_table("dropped");
    let Some(store) = common::connect(&table, Options::default()).await else {
        return;
    };
    store.create(&fresh_record(None)).await.unwrap();
    let raw = common::raw_client().await;
    raw.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    // Its version row is still there; the table is not. Migrating creates it again.
    store.migrate().await.unwrap();
    let record = fresh_record(Some("noa"));
    store.create(&record).await.unwrap();
    assert_eq!(
        store.load(&record.key, Timestamp::now()).await.unwrap(),
        Some(record)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_live_counts_only_live_records() {
    let Some(store) = common::connect(&common::unique_table("count"), Options::default()).await
    else {
        return;
    };
    testing::count_live_counts_only_live_records(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_unavailable_at_once_and_the_store_recovers() {
    let table = common::unique_table("outage");
    // Creates the table through the direct URL (and skips when the server is down).
    let Some(direct) = common::connect(&table, Options::default()).await else {
        return;
    };
    let config: tokio_postgres::Config = common::url().parse().unwrap();
    let upstream = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => format!("{host}:{}", config.get_ports()[0]),
        #[allow(unreachable_patterns)]
        _ => return eprintln!("skipped relay test: the test server is not on TCP"),
    };
    let mut relay = Relay::start(upstream).await;
    let url = format!(
        "host=127.0.0.1 port={} user={} dbname={}",
        relay.port(),
        config.get_user().unwrap_or("postgres"),
        config.get_dbname().unwrap_or("test"),
    );
    let store = PostgresStore::connect_with(&url, quick().table(&table))
        .await
        .unwrap();
    testing::outage_then_recovery(&store, &mut relay).await;
    drop(direct);
}
