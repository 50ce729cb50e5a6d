//! What survives a restart, and what a damaged file does.

use std::time::Duration;

use tessera_core::testing::fresh_record;
use tessera_core::{Commit, Sessions, Store, StoreError, Timestamp};
use tessera_sqlite::{SCHEMA_VERSION, SchemaError, SqliteOptions, SqliteStore};

#[tokio::test]
async fn sessions_survive_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let mut tokens = Vec::new();
    {
        let sessions = Sessions::new(SqliteStore::open(&path).await.unwrap());
        for i in 0..20 {
            let mut session = sessions.start();
            session.insert("n", &i).unwrap();
            if i % 2 == 0 {
                session.login(format!("user{i}"));
            }
            assert_eq!(
                sessions.commit(&mut session).await.unwrap(),
                Commit::Created
            );
            tokens.push(session.id().unwrap().expose());
        }
        // The engine and its store are dropped here: every connection closes.
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let sessions = Sessions::new(store);
    for (i, token) in tokens.iter().enumerate() {
        let session = sessions.load(token).await.unwrap().expect("survived");
        assert_eq!(session.get::<usize>("n").unwrap(), Some(i));
        let subject = (i % 2 == 0).then(|| format!("user{i}"));
        assert_eq!(session.subject(), subject.as_deref());
    }
    assert_eq!(
        sessions.store().count_live(sessions.now()).await.unwrap(),
        Some(20)
    );
}

#[tokio::test]
async fn a_touch_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let record = fresh_record(Some("alice"));
    let later = record.last_seen_at.saturating_add(Duration::from_secs(90));
    let idle = later.saturating_add(Duration::from_secs(3600));
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.create(&record).await.unwrap();
        assert!(store.touch(&record.key, idle, later).await.unwrap());
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let loaded = store.load(&record.key, later).await.unwrap().unwrap();
    assert_eq!(loaded.last_seen_at, later);
    assert_eq!(loaded.idle_deadline, idle);
    assert_eq!(loaded.data, record.data);
}

/// Overwrites one row's blob with raw SQL through a second connection.
fn corrupt(path: &std::path::Path, key: &tessera_core::Key, blob: &[u8]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let changed = conn
        .execute(
            "UPDATE tessera_sessions SET record = ?2 WHERE key = ?1",
            rusqlite::params![key.as_bytes(), blob],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

#[tokio::test]
async fn a_damaged_record_is_no_session_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let now = Timestamp::now();
    let damaged = [
        Vec::new(),
        vec![0xff, 1, 2, 3],
        vec![1],
        {
            let mut cut = fresh_record(Some("x")).encode();
            cut.truncate(cut.len() / 2);
            cut
        },
        {
            // A whole, valid record, but of another key.
            fresh_record(Some("alice")).encode()
        },
    ];
    for blob in damaged {
        let record = fresh_record(Some("alice"));
        let healthy = fresh_record(Some("alice"));
        store.create(&record).await.unwrap();
        store.create(&healthy).await.unwrap();
        corrupt(&path, &record.key, &blob);
        assert!(store.load(&record.key, now).await.unwrap().is_none());
        // A device list skips the damaged row and still shows the healthy one.
        let listed = store.list_subject("alice", now).await.unwrap();
        assert!(listed.iter().all(|r| r.key != record.key));
        assert!(listed.iter().any(|r| r.key == healthy.key));
        // It can still be deleted; cleaning up leaves the next round alone.
        store.delete(&record.key).await.unwrap();
        store.delete(&healthy.key).await.unwrap();
    }
}

#[tokio::test]
async fn the_engine_treats_a_damaged_record_as_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let sessions = Sessions::new(SqliteStore::open(&path).await.unwrap());
    let mut session = sessions.start();
    session.insert("cart", &["tea"]).unwrap();
    sessions.commit(&mut session).await.unwrap();
    let token = session.id().unwrap().expose();
    corrupt(&path, &session.key().unwrap(), b"\x01garbage");
    assert!(sessions.load(&token).await.unwrap().is_none());
}

#[tokio::test]
async fn a_file_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    drop(SqliteStore::open(&path).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO tessera_schema (version) VALUES (?1)",
        [SCHEMA_VERSION + 1],
    )
    .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).await.unwrap_err();
    let StoreError::Backend(source) = &err else {
        panic!("expected a backend error, got {err:?}");
    };
    let schema = source
        .downcast_ref::<SchemaError>()
        .expect("a schema error");
    assert!(matches!(schema, SchemaError::TooNew { .. }), "{schema:?}");
}

#[tokio::test]
async fn an_unopenable_path_is_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/sessions.db");
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(err.is_outage(), "{err:?}");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn the_file_is_in_wal_mode_and_readers_see_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let store = SqliteStore::open_with(&path, SqliteOptions::default().pool_size(3))
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // Every reader (tried repeatedly, in turn) sees each write as soon as it returns.
    for _ in 0..20 {
        let record = fresh_record(None);
        store.create(&record).await.unwrap();
        let loaded = store.load(&record.key, Timestamp::now()).await.unwrap();
        assert_eq!(loaded.as_ref(), Some(&record));
    }
}
