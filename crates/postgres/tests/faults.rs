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

/// The version 1 table, as that schema created it (kept here verbatim, so the test does not
/// depend on the crate's migration list).
const VERSION_1: &str = "CREATE TABLE {t} (
        session_key BYTEA PRIMARY KEY CHECK (octet_length(session_key) = 32),
        subject TEXT,
        last_seen_at BIGINT NOT NULL,
        idle_deadline BIGINT NOT NULL,
        absolute_deadline BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        record BYTEA NOT NULL
    );
    CREATE INDEX {t}_expires_idx ON {t} (expires_at);
    CREATE INDEX {t}_subject_idx ON {t} (subject) WHERE subject IS NOT NULL;";

fn ms(t: Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_table_with_live_sessions_migrates_in_place() {
    let table = common::unique_table("v1");
    // Scoped (so the table is dropped at the end) on a store that does not migrate yet.
    let Some(store) = common::connect(&table, Options::default().migrate_on_connect(false)).await
    else {
        return;
    };
    let raw = common::raw_client().await;
    raw.batch_execute(&VERSION_1.replace("{t}", &table))
        .await
        .unwrap();
    raw.execute(
        &format!(
            "INSERT INTO {SCHEMA_TABLE} (table_name, version, migrated_at) VALUES ($1, 1, 0)
             ON CONFLICT (table_name) DO UPDATE SET version = 1"
        ),
        &[&table],
    )
    .await
    .unwrap();
    // Sessions written by a version 1 build: two live (one of them with a subject), one that
    // expires a minute from now.
    let now = Timestamp::now();
    let alive = fresh_record(None);
    let mia = fresh_record(Some("mia"));
    let mut short = fresh_record(None);
    short.idle_deadline = now.saturating_add(Duration::from_secs(60));
    for r in [&alive, &mia, &short] {
        raw.execute(
            &format!(
                "INSERT INTO {table} (session_key, subject, last_seen_at, idle_deadline,
                    absolute_deadline, expires_at, version, record)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &r.key.as_bytes().as_slice(),
                &r.subject.as_deref(),
                &ms(r.last_seen_at),
                &ms(r.idle_deadline),
                &ms(r.absolute_deadline),
                &ms(r.idle_deadline.min(r.absolute_deadline)),
                &i64::try_from(r.version).unwrap(),
                &r.encode(),
            ],
        )
        .await
        .unwrap();
    }

    store.migrate().await.unwrap();
    let version: i32 = raw
        .query_one(
            &format!("SELECT version FROM {SCHEMA_TABLE} WHERE table_name = $1"),
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, SCHEMA_VERSION);

    // Every session is still there, and behaves.
    for r in [&alive, &mia, &short] {
        assert_eq!(store.load(&r.key, now).await.unwrap().as_ref(), Some(r));
    }
    assert_eq!(
        store.list_subject("mia", now).await.unwrap(),
        vec![mia.clone()]
    );
    let mut next = alive.clone();
    next.version += 1;
    assert!(next.data.remove("note"));
    store.update(&next, alive.version, now).await.unwrap();
    let err = store.update(&next, alive.version, now).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(
        store.load(&next.key, now).await.unwrap(),
        Some(next.clone())
    );
    let later = now.saturating_add(Duration::from_secs(120));
    assert!(
        store
            .touch(
                &mia.key,
                later.saturating_add(Duration::from_secs(3600)),
                now
            )
            .await
            .unwrap()
    );
    // The short session expires at its exact deadline, is never revived, and is purged.
    assert_eq!(store.load(&short.key, later).await.unwrap(), None);
    assert!(
        !store
            .touch(
                &short.key,
                later.saturating_add(Duration::from_secs(3600)),
                later
            )
            .await
            .unwrap()
    );
    let mut revived = short.clone();
    revived.version += 1;
    let err = store
        .update(&revived, short.version, later)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.purge_expired(later, 100).await.unwrap(), 1);
    assert_eq!(store.purge_expired(later, 100).await.unwrap(), 0);
    assert!(store.load(&mia.key, later).await.unwrap().is_some());
    assert_eq!(store.load(&next.key, later).await.unwrap(), Some(next));

    // The schema is version 2's: no index on the exact expiry, one on the slot, fill factor 80.
    let indexes: Vec<String> = raw
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY indexname",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        indexes,
        [
            format!("{table}_expiry_slot_idx"),
            format!("{table}_pkey"),
            format!("{table}_subject_idx")
        ]
    );
    let options: Vec<String> = raw
        .query_one(
            "SELECT reloptions FROM pg_class WHERE oid = $1::TEXT::regclass",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(options, ["fillfactor=80"]);
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
