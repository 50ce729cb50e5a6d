//! Reading a session within one touch interval costs no store write; the first read after it
//! costs exactly one touch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tessera_core::testing::CountingStore;
use tessera_core::{Clock, Commit, ManualClock, Policy, Sessions};
use tessera_sqlite::SqliteStore;

#[tokio::test]
async fn a_thousand_reads_within_the_touch_interval_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CountingStore::new(
        SqliteStore::open(dir.path().join("sessions.db"))
            .await
            .unwrap(),
    ));
    let writes = store.counts();
    let interval = Duration::from_secs(60);
    let clock = ManualClock::starting_now();
    let sessions = Sessions::from_arc(store.clone())
        .with_clock(clock.clone())
        .with_policy(Policy::default().touch_interval(interval));

    let mut session = sessions.start();
    session.insert("theme", "dark").unwrap();
    assert_eq!(
        sessions.commit(&mut session).await.unwrap(),
        Commit::Created
    );
    let token = session.id().unwrap().expose();
    assert_eq!(writes.writes(), 1, "the create");
    let before = writes.writes();

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
        writes.writes() - before,
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
    assert_eq!(writes.writes() - before, 1);

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
