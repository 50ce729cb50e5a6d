//! Reading a session within one touch interval costs no store write; the first read after it
//! costs exactly one touch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tessera_core::{
    Capabilities, Clock, Commit, Key, ManualClock, Policy, Record, Sessions, Store, StoreError,
    Timestamp,
};
use tessera_sqlite::SqliteStore;

/// Counts the writes that reach the wrapped store.
#[derive(Default)]
struct Writes {
    create: AtomicU64,
    update: AtomicU64,
    touch: AtomicU64,
    rotate: AtomicU64,
    delete: AtomicU64,
}

impl Writes {
    fn total(&self) -> u64 {
        [
            &self.create,
            &self.update,
            &self.touch,
            &self.rotate,
            &self.delete,
        ]
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .sum()
    }
}

struct Counting {
    inner: SqliteStore,
    writes: Arc<Writes>,
}

#[async_trait]
impl Store for Counting {
    fn name(&self) -> &'static str {
        "counting-sqlite"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        self.writes.create.fetch_add(1, Ordering::SeqCst);
        self.inner.create(record).await
    }
    async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.inner.load(key, now).await
    }
    async fn update(
        &self,
        record: &Record,
        expected: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writes.update.fetch_add(1, Ordering::SeqCst);
        self.inner.update(record, expected, now).await
    }
    async fn touch(&self, key: &Key, idle: Timestamp, now: Timestamp) -> Result<bool, StoreError> {
        self.writes.touch.fetch_add(1, Ordering::SeqCst);
        self.inner.touch(key, idle, now).await
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.writes.delete.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }
    async fn rotate(
        &self,
        old: &Key,
        expected: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.writes.rotate.fetch_add(1, Ordering::SeqCst);
        self.inner.rotate(old, expected, new, now).await
    }
    async fn list_subject(&self, subject: &str, now: Timestamp) -> Result<Vec<Record>, StoreError> {
        self.inner.list_subject(subject, now).await
    }
    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&Key>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.writes.delete.fetch_add(1, Ordering::SeqCst);
        self.inner.delete_subject(subject, except, now).await
    }
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        self.inner.purge_expired(now, limit).await
    }
}

#[tokio::test]
async fn a_thousand_reads_within_the_touch_interval_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let writes = Arc::new(Writes::default());
    let store = Counting {
        inner: SqliteStore::open(dir.path().join("sessions.db"))
            .await
            .unwrap(),
        writes: writes.clone(),
    };
    let interval = Duration::from_secs(60);
    let clock = ManualClock::starting_now();
    let sessions = Sessions::new(store)
        .with_clock(clock.clone())
        .with_policy(Policy::default().touch_interval(interval));

    let mut session = sessions.start();
    session.insert("theme", "dark").unwrap();
    assert_eq!(
        sessions.commit(&mut session).await.unwrap(),
        Commit::Created
    );
    let token = session.id().unwrap().expose();
    assert_eq!(writes.total(), 1, "the create");
    let before = writes.total();

    // 1,000 requests spread over just under one touch interval: reads only.
    for i in 0..1000u32 {
        if i % 100 == 99 {
            clock.advance(Duration::from_millis(5_900));
        }
        let mut session = sessions.load(&token).await.unwrap().expect("live");
        assert_eq!(
            session.get::<String>("theme").unwrap().as_deref(),
            Some("dark")
        );
        assert_eq!(
            sessions.commit(&mut session).await.unwrap(),
            Commit::Unchanged
        );
    }
    assert_eq!(
        writes.total() - before,
        0,
        "writes per 1,000 reads within the interval"
    );

    // Past the interval: the next request touches once, and the ones after it do not.
    clock.advance(interval);
    for i in 0..1000u32 {
        let mut session = sessions.load(&token).await.unwrap().expect("live");
        let expected = if i == 0 {
            Commit::Touched
        } else {
            Commit::Unchanged
        };
        assert_eq!(
            sessions.commit(&mut session).await.unwrap(),
            expected,
            "request {i}"
        );
    }
    assert_eq!(writes.touch.load(Ordering::SeqCst), 1);
    assert_eq!(writes.total() - before, 1);

    // The touch reached the file: the record's activity time moved.
    let key = session.key().unwrap();
    let stored = sessions
        .store()
        .load(&key, clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.last_seen_at, clock.now());
}
