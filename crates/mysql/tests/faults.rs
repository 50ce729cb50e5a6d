//! Faults and the store's own promises beyond the conformance suite: outages are
//! `Unavailable` and bounded in time, damaged rows read as "no session", migrations are
//! idempotent, bad settings are refused.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use tessera_core::testing::fresh_record;
use tessera_core::{Store, StoreError, Timestamp};
use tessera_mysql::{ConfigError, MySqlStore, Options, SCHEMA_TABLE, SCHEMA_VERSION};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const HOUR: Duration = Duration::from_secs(3600);

fn quick() -> Options {
    Options::default()
        .connect_timeout(Duration::from_millis(500))
        .operation_timeout(Duration::from_secs(2))
        .pool_size(2)
}

/// A port on loopback where nothing listens.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_refused_connection_fails_fast_as_unavailable() {
    let port = closed_port().await;
    let started = Instant::now();
    let err = MySqlStore::connect_with(&format!("mysql://root@127.0.0.1:{port}/test"), quick())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts connections and holds them open without a word.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let err = MySqlStore::connect_with(&format!("mysql://root@127.0.0.1:{port}/test"), quick())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    silent.abort();
}

#[tokio::test]
async fn bad_settings_are_refused_before_connecting() {
    for table in ["", "Sessions", "x; DROP TABLE users", "a.b"] {
        let err = MySqlStore::connect_with(&common::url(), Options::default().table(table))
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
    let err = MySqlStore::connect("mysql://host:notaport/db")
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
    let now = Timestamp::now();
    let garbled = fresh_record(Some("dora"));
    let swapped = fresh_record(Some("dora"));
    let intact = fresh_record(Some("dora"));
    for r in [&garbled, &swapped, &intact] {
        store.create(r).await.unwrap();
    }
    let mut raw = common::raw_conn().await;
    raw.exec_drop(
        format!("UPDATE {table} SET record = ? WHERE session_key = ?"),
        (vec![1u8, 0xff, 0xff, 0x07], garbled.key.as_bytes().to_vec()),
    )
    .await
    .unwrap();
    // A valid blob, but of another session: not to be served under this key.
    raw.exec_drop(
        format!("UPDATE {table} SET record = ? WHERE session_key = ?"),
        (intact.encode(), swapped.key.as_bytes().to_vec()),
    )
    .await
    .unwrap();
    raw.disconnect().await.unwrap();

    assert!(store.load(&garbled.key, now).await.unwrap().is_none());
    assert!(store.load(&swapped.key, now).await.unwrap().is_none());
    assert_eq!(
        store.load(&intact.key, now).await.unwrap().as_ref(),
        Some(&intact)
    );
    let listed = store.store.list_subject("dora", now).await.unwrap();
    assert_eq!(listed, vec![intact.clone()]);
    // The damaged rows can still be deleted, by key or by subject.
    store.delete(&garbled.key).await.unwrap();
    assert_eq!(store.delete_subject("dora", None, now).await.unwrap(), 2);
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
    let second = MySqlStore::connect_with(&common::url(), Options::default().table(&table))
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
    let mut raw = common::raw_conn().await;
    let version: Option<i32> = raw
        .exec_first(
            format!("SELECT version FROM {SCHEMA_TABLE} WHERE table_name = ?"),
            (&table,),
        )
        .await
        .unwrap();
    assert_eq!(version, Some(SCHEMA_VERSION));

    // A table migrated by a newer build is refused rather than misread.
    raw.exec_drop(
        format!("UPDATE {SCHEMA_TABLE} SET version = 99 WHERE table_name = ?"),
        (&table,),
    )
    .await
    .unwrap();
    raw.disconnect().await.unwrap();
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
    let unmanaged = MySqlStore::connect_with(
        &common::url(),
        Options::default().table(&table).migrate_on_connect(false),
    )
    .await
    .unwrap();
    unmanaged.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_live_counts_only_live_records() {
    let Some(store) = common::connect(&common::unique_table("count"), Options::default()).await
    else {
        return;
    };
    let now = Timestamp::now();
    let mut short = fresh_record(None);
    short.idle_deadline = now.saturating_add(Duration::from_secs(10));
    store.create(&short).await.unwrap();
    for _ in 0..3 {
        store.create(&fresh_record(None)).await.unwrap();
    }
    assert_eq!(store.count_live(now).await.unwrap(), Some(4));
    let later = now.saturating_add(Duration::from_secs(11));
    assert_eq!(store.count_live(later).await.unwrap(), Some(3));
    assert_eq!(
        store
            .count_live(now.saturating_add(3 * HOUR))
            .await
            .unwrap(),
        Some(0)
    );
}

/// A TCP relay in front of the real server that the test can cut and restore.
struct Relay {
    port: u16,
    upstream: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let mut relay = Self {
            port: 0,
            upstream,
            tasks: Arc::default(),
        };
        relay.listen().await;
        relay
    }

    async fn listen(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.port = listener.local_addr().unwrap().port();
        let (upstream, tasks) = (self.upstream.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Closes the port and every relayed connection: the server is "down". Waits until the
    /// sockets are really closed, so that the next request cannot slip through.
    async fn cut(&self) {
        let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_unavailable_at_once_and_the_store_recovers() {
    let table = common::unique_table("outage");
    // Creates the table through the direct URL (and skips when the server is down).
    let Some(direct) = common::connect(&table, Options::default()).await else {
        return;
    };
    let opts = mysql_async::Opts::from_url(&common::url()).unwrap();
    let upstream = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
    let mut relay = Relay::start(upstream).await;
    let url = format!(
        // The driver would otherwise switch to the server's Unix socket, around the relay.
        "mysql://{}@127.0.0.1:{}/{}?prefer_socket=false",
        opts.user().unwrap_or("root"),
        relay.port,
        opts.db_name().unwrap_or("test"),
    );
    let store = MySqlStore::connect_with(&url, quick().table(&table))
        .await
        .unwrap();
    let record = fresh_record(Some("olga"));
    store.create(&record).await.unwrap();
    let now = Timestamp::now();

    relay.cut().await;
    for _ in 0..3 {
        let started = Instant::now();
        let err = store.load(&record.key, now).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));

    // Back on the same port: the pool drops its dead connections and opens new ones.
    relay.listen().await;
    let mut recovered = None;
    for _ in 0..20 {
        match store.load(&record.key, now).await {
            Ok(found) => {
                recovered = Some(found);
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(recovered, Some(Some(record)));
    store.ping().await.unwrap();
    relay.cut().await;
    drop(direct);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_longer_than_the_column_are_refused_not_truncated() {
    let Some(store) = common::connect(&common::unique_table("subject"), Options::default()).await
    else {
        return;
    };
    let fits = "ü".repeat(tessera_mysql::MAX_SUBJECT_CHARS);
    let record = fresh_record(Some(&fits));
    store.create(&record).await.unwrap();
    assert_eq!(
        store.list_subject(&fits, Timestamp::now()).await.unwrap(),
        vec![record.clone()]
    );
    let long = "a".repeat(tessera_mysql::MAX_SUBJECT_CHARS + 1);
    let err = store.create(&fresh_record(Some(&long))).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    let mut renamed = record.clone();
    renamed.subject = Some(long.as_str().into());
    renamed.version = 2;
    let err = store
        .update(&renamed, 1, Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    // Subjects compare exactly: case and accents matter.
    assert!(
        store
            .list_subject(
                &"Ü".repeat(tessera_mysql::MAX_SUBJECT_CHARS),
                Timestamp::now()
            )
            .await
            .unwrap()
            .is_empty()
    );
}
