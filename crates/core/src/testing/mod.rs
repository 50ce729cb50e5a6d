//! The store conformance suite: one set of checks that every [`Store`] must pass.
//!
//! A backend crate runs all of it with one macro call in a test file:
//!
//! ```ignore
//! tessera_core::store_conformance!(|namespace: String| async move {
//!     // `namespace` is unique per test (lowercase letters, digits, `_`): use it as a table
//!     // name or key prefix so tests running in parallel do not see each other's records.
//!     // Return `None` to skip (after printing why); under CI, panic instead.
//!     Some(MyStore::connect(&namespace).await.unwrap())
//! });
//! ```
//!
//! Times in the suite are the real current time, not made up, so backends that also expire
//! records natively on their server's clock (Redis, Memcached) see sensible deadlines; where the
//! suite needs a record to be dead, it passes a `now` past the record's deadline.
//!
//! Beside the suite, what the backend crates' tests and benches share:
//!
//! - [`CountingStore`], a store wrapper that counts calls and can fail them;
//! - [`Scoped`], a store that cleans up after its test, with [`unique_namespace`] to name what
//!   it cleans and [`store_or_skip`] for a server that is down;
//! - [`Relay`], [`closed_port`] and [`SilentServer`] for network faults, with
//!   [`assert_unavailable_within`] and [`outage_then_recovery`] to check how a store meets them;
//!   [`free_port`] for a throwaway server the test starts itself;
//! - [`Pki`], a throwaway CA and server certificate for such a server with TLS, and
//!   [`assert_refused`] (with [`error_chain`]) for connections that must fail and say why;
//! - [`count_live_counts_only_live_records`] and [`damaged_records_read_as_no_session`], checks
//!   outside the suite for stores that count, and for a store's own tests that can reach behind
//!   it;
//! - [`workload`], the store-level benchmark workloads.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::id::Key;
use crate::id::SessionId;
use crate::record::{ClientInfo, Data, Record};
use crate::store::{Capabilities, Store};
use crate::time::{Clock, ManualClock, Timestamp};
use crate::{Commit, Policy, Sessions};

mod relay;
mod scoped;
mod tls;
pub mod workload;

pub use relay::{
    Relay, SilentServer, assert_unavailable_within, closed_port, free_port, outage_then_recovery,
};
pub use scoped::{Scoped, error_chain, store_or_skip, stores_required};
pub use tls::{Pki, assert_refused};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(60 * 60);

/// A live record for `subject`, created now, idle deadline in an hour, absolute in two.
pub fn fresh_record(subject: Option<&str>) -> Record {
    let now = Timestamp::now();
    let mut data = Data::new();
    data.set_json("cart", &serde_json::json!(["apple", {"pear": 2}]));
    data.set_json("note", &serde_json::json!("ünïcödé \"quoted\" \u{1F600}"));
    let mut csrf_secret = [0u8; 32];
    getrandom::fill(&mut csrf_secret).expect("randomness");
    Record {
        key: SessionId::generate().key(),
        subject: subject.map(Arc::from),
        data,
        created_at: now,
        authenticated_at: subject.map(|_| now),
        last_seen_at: now,
        idle_deadline: now.saturating_add(HOUR),
        absolute_deadline: now.saturating_add(2 * HOUR),
        version: 1,
        csrf_secret,
        client: ClientInfo {
            ip: Some("203.0.113.7".into()),
            user_agent: Some("conformance/1.0".into()),
        },
    }
}

fn unique_subject(name: &str) -> String {
    format!("{name}-{}", &SessionId::generate().key().short())
}

/// A name no other test or run uses, for a table or key prefix: `t_<prefix>_<8 hex digits>`
/// (lowercase letters, digits and `_` when `prefix` is).
pub fn unique_namespace(prefix: &str) -> String {
    let suffix: String = SessionId::generate()
        .key()
        .as_bytes()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t_{prefix}_{suffix}")
}

/// Runs one named check with a fresh store from `make`, or skips it when `make` gives `None`.
pub async fn run<F, Fut, S, C, CFut>(make: F, test: &str, check: C)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Option<S>>,
    S: Store,
    C: FnOnce(Arc<dyn Store>) -> CFut,
    CFut: Future<Output = ()>,
{
    let Some(store) = make(unique_namespace(test)).await else {
        return;
    };
    check(Arc::new(store)).await;
}

/// `create` then `load` gives back the same record.
pub async fn create_then_load(store: Arc<dyn Store>) {
    let record = fresh_record(Some("alice"));
    store.create(&record).await.unwrap();
    let loaded = store.load(&record.key, Timestamp::now()).await.unwrap();
    assert_eq!(loaded.as_ref(), Some(&record));
    let anonymous = fresh_record(None);
    store.create(&anonymous).await.unwrap();
    let loaded = store.load(&anonymous.key, Timestamp::now()).await.unwrap();
    assert_eq!(loaded.as_ref(), Some(&anonymous));
}

/// A second `create` with the same key is [`StoreError::Duplicate`] and overwrites nothing.
pub async fn duplicate_create_is_an_error(store: Arc<dyn Store>) {
    let record = fresh_record(Some("alice"));
    store.create(&record).await.unwrap();
    let mut impostor = fresh_record(Some("mallory"));
    impostor.key = record.key;
    let err = store.create(&impostor).await.unwrap_err();
    assert!(matches!(err, StoreError::Duplicate), "{err:?}");
    let loaded = store
        .load(&record.key, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.subject.as_deref(), Some("alice"));
}

/// Unknown keys load as `None`.
pub async fn unknown_keys_do_not_load(store: Arc<dyn Store>) {
    let key = SessionId::generate().key();
    assert!(store.load(&key, Timestamp::now()).await.unwrap().is_none());
}

/// Records past either deadline never load, never update, never touch.
pub async fn expired_records_are_dead(store: Arc<dyn Store>) {
    let record = fresh_record(None);
    store.create(&record).await.unwrap();
    let at_idle = record.idle_deadline;
    assert!(
        store
            .load(
                &record.key,
                at_idle.saturating_sub(Duration::from_millis(1))
            )
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.load(&record.key, at_idle).await.unwrap().is_none());
    assert!(
        !store
            .touch(&record.key, at_idle.saturating_add(HOUR), at_idle)
            .await
            .unwrap()
    );
    let mut next = record.clone();
    next.version = 2;
    let err = store.update(&next, 1, at_idle).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // The absolute deadline binds even when the idle one is later.
    let mut capped = fresh_record(None);
    capped.idle_deadline = capped.absolute_deadline.saturating_add(HOUR);
    store.create(&capped).await.unwrap();
    assert!(
        store
            .load(&capped.key, capped.absolute_deadline)
            .await
            .unwrap()
            .is_none()
    );
}

/// `update` is a compare-and-swap on the version.
pub async fn update_is_compare_and_swap(store: Arc<dyn Store>) {
    let record = fresh_record(Some("alice"));
    store.create(&record).await.unwrap();
    let now = Timestamp::now();
    let mut next = record.clone();
    next.data.set_json("cart", &serde_json::json!(["kiwi"]));
    next.version = 2;
    store.update(&next, 1, now).await.unwrap();
    assert_eq!(
        store.load(&record.key, now).await.unwrap().as_ref(),
        Some(&next)
    );

    let mut stale = record.clone();
    stale.data.set_json("cart", &serde_json::json!(["stale"]));
    stale.version = 2;
    let err = store.update(&stale, 1, now).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(
        store.load(&record.key, now).await.unwrap().as_ref(),
        Some(&next)
    );
}

/// `update` never creates: after a delete it is [`StoreError::NotFound`] and nothing reappears.
pub async fn update_after_delete_is_not_found(store: Arc<dyn Store>) {
    let record = fresh_record(Some("alice"));
    store.create(&record).await.unwrap();
    store.delete(&record.key).await.unwrap();
    let mut next = record.clone();
    next.version = 2;
    let now = Timestamp::now();
    let err = store.update(&next, 1, now).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(store.load(&record.key, now).await.unwrap().is_none());
    assert!(
        !store
            .touch(&record.key, now.saturating_add(HOUR), now)
            .await
            .unwrap()
    );
    assert!(store.load(&record.key, now).await.unwrap().is_none());
    let never_created = fresh_record(None);
    let err = store.update(&never_created, 0, now).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

/// `touch` moves the idle deadline and last-seen time, never past the absolute deadline, and
/// leaves the version alone.
pub async fn touch_extends_but_never_past_absolute(store: Arc<dyn Store>) {
    let record = fresh_record(None);
    store.create(&record).await.unwrap();
    let later = record.last_seen_at.saturating_add(MINUTE);
    let wanted = later.saturating_add(HOUR);
    assert!(store.touch(&record.key, wanted, later).await.unwrap());
    let loaded = store.load(&record.key, later).await.unwrap().unwrap();
    assert_eq!(loaded.idle_deadline, wanted);
    assert_eq!(loaded.last_seen_at, later);
    assert_eq!(loaded.version, record.version);
    assert_eq!(loaded.data, record.data);

    let way_later = record.absolute_deadline.saturating_add(HOUR);
    assert!(store.touch(&record.key, way_later, later).await.unwrap());
    let loaded = store.load(&record.key, later).await.unwrap().unwrap();
    assert_eq!(loaded.idle_deadline, record.absolute_deadline);
    assert!(
        store
            .load(&record.key, record.absolute_deadline)
            .await
            .unwrap()
            .is_none()
    );
}

/// `delete` removes, and removing twice is fine.
pub async fn delete_is_idempotent(store: Arc<dyn Store>) {
    let record = fresh_record(Some("alice"));
    store.create(&record).await.unwrap();
    store.delete(&record.key).await.unwrap();
    store.delete(&record.key).await.unwrap();
    assert!(
        store
            .load(&record.key, Timestamp::now())
            .await
            .unwrap()
            .is_none()
    );
    store.delete(&SessionId::generate().key()).await.unwrap();
}

/// `rotate` moves the record to a new key; the old key never loads again.
pub async fn rotate_moves_the_record(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let record = fresh_record(Some("alice"));
    store.create(&record).await.unwrap();
    let mut moved = record.clone();
    moved.key = SessionId::generate().key();
    moved.version = 2;
    moved.subject = Some("alice-admin".into());
    store.rotate(&record.key, 1, &moved, now).await.unwrap();
    assert!(store.load(&record.key, now).await.unwrap().is_none());
    assert_eq!(
        store.load(&moved.key, now).await.unwrap().as_ref(),
        Some(&moved)
    );

    // The old key is dead for every operation.
    let mut again = record.clone();
    again.key = SessionId::generate().key();
    let err = store.rotate(&record.key, 1, &again, now).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(store.load(&again.key, now).await.unwrap().is_none());
    let mut old = record.clone();
    old.version = 2;
    assert!(matches!(
        store.update(&old, 1, now).await,
        Err(StoreError::NotFound)
    ));

    // A stale version is a conflict and changes nothing.
    let mut stale = moved.clone();
    stale.key = SessionId::generate().key();
    let err = store.rotate(&moved.key, 1, &stale, now).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert!(store.load(&moved.key, now).await.unwrap().is_some());
    assert!(store.load(&stale.key, now).await.unwrap().is_none());

    // Onto an existing key: a duplicate, and both records stay as they were.
    let other = fresh_record(Some("bob"));
    store.create(&other).await.unwrap();
    let mut clash = moved.clone();
    clash.key = other.key;
    clash.version = 3;
    let err = store.rotate(&moved.key, 2, &clash, now).await.unwrap_err();
    assert!(matches!(err, StoreError::Duplicate), "{err:?}");
    assert_eq!(
        store.load(&moved.key, now).await.unwrap().as_ref(),
        Some(&moved)
    );
    assert_eq!(
        store.load(&other.key, now).await.unwrap().as_ref(),
        Some(&other)
    );
}

/// `list_subject` returns exactly the subject's live records (or is unsupported, as declared).
pub async fn list_subject_lists_live_records(store: Arc<dyn Store>) {
    let alice = unique_subject("alice");
    let bob = unique_subject("bob");
    let now = Timestamp::now();
    if !store.capabilities().subject_index {
        let err = store.list_subject(&alice, now).await.unwrap_err();
        assert!(matches!(err, StoreError::Unsupported { .. }), "{err:?}");
        let err = store.delete_subject(&alice, None, now).await.unwrap_err();
        assert!(matches!(err, StoreError::Unsupported { .. }), "{err:?}");
        return;
    }
    let a1 = fresh_record(Some(&alice));
    let a2 = fresh_record(Some(&alice));
    let mut a_dead = fresh_record(Some(&alice));
    a_dead.idle_deadline = now.saturating_add(Duration::from_millis(1));
    let b1 = fresh_record(Some(&bob));
    let anon = fresh_record(None);
    for r in [&a1, &a2, &a_dead, &b1, &anon] {
        store.create(r).await.unwrap();
    }
    let later = now.saturating_add(Duration::from_secs(1));
    let keys: BTreeSet<_> = store
        .list_subject(&alice, later)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, BTreeSet::from([a1.key, a2.key]));

    // A rotation to another subject moves the record between lists; a delete removes it.
    let mut to_bob = a2.clone();
    to_bob.key = SessionId::generate().key();
    to_bob.subject = Some(bob.as_str().into());
    to_bob.version = 2;
    store.rotate(&a2.key, 1, &to_bob, later).await.unwrap();
    store.delete(&a1.key).await.unwrap();
    assert!(store.list_subject(&alice, later).await.unwrap().is_empty());
    let keys: BTreeSet<_> = store
        .list_subject(&bob, later)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, BTreeSet::from([b1.key, to_bob.key]));

    // An update that logs a session in adds it to the subject's list.
    let mut logged_in = anon.clone();
    logged_in.subject = Some(alice.as_str().into());
    logged_in.version = 2;
    store.update(&logged_in, 1, later).await.unwrap();
    let listed = store.list_subject(&alice, later).await.unwrap();
    assert_eq!(listed, vec![logged_in]);
}

/// `delete_subject` removes the subject's records except the one named, and nobody else's.
pub async fn delete_subject_logs_out_everywhere(store: Arc<dyn Store>) {
    if !store.capabilities().subject_index {
        return;
    }
    let alice = unique_subject("alice");
    let bob = unique_subject("bob");
    let now = Timestamp::now();
    let mine: Vec<Record> = (0..4).map(|_| fresh_record(Some(&alice))).collect();
    let theirs = fresh_record(Some(&bob));
    for r in mine.iter().chain([&theirs]) {
        store.create(r).await.unwrap();
    }
    let kept = mine[0].key;
    assert_eq!(
        store
            .delete_subject(&alice, Some(&kept), now)
            .await
            .unwrap(),
        3
    );
    assert!(store.load(&kept, now).await.unwrap().is_some());
    for r in &mine[1..] {
        assert!(store.load(&r.key, now).await.unwrap().is_none());
    }
    assert!(store.load(&theirs.key, now).await.unwrap().is_some());
    assert_eq!(store.delete_subject(&alice, None, now).await.unwrap(), 1);
    assert!(store.load(&kept, now).await.unwrap().is_none());
    assert!(store.list_subject(&alice, now).await.unwrap().is_empty());
    assert_eq!(store.delete_subject(&alice, None, now).await.unwrap(), 0);
}

/// `purge_expired` removes only dead records, at most `limit` per call.
pub async fn purge_removes_only_expired(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let mut dead = Vec::new();
    for _ in 0..5 {
        let mut r = fresh_record(Some("purged"));
        r.idle_deadline = now.saturating_add(Duration::from_secs(30));
        store.create(&r).await.unwrap();
        dead.push(r);
    }
    let live: Vec<Record> = (0..3).map(|_| fresh_record(None)).collect();
    for r in &live {
        store.create(r).await.unwrap();
    }
    let later = now.saturating_add(MINUTE);
    let first = store.purge_expired(later, 2).await.unwrap();
    assert!(first <= 2, "purge removed {first} with a limit of 2");
    if !store.capabilities().native_expiry {
        assert_eq!(first, 2);
        let mut total = first;
        loop {
            let n = store.purge_expired(later, 2).await.unwrap();
            assert!(n <= 2);
            total += n;
            if n < 2 {
                break;
            }
        }
        assert_eq!(total, 5);
        assert_eq!(store.purge_expired(later, 100).await.unwrap(), 0);
    }
    for r in &dead {
        assert!(store.load(&r.key, later).await.unwrap().is_none());
    }
    for r in &live {
        assert_eq!(store.load(&r.key, later).await.unwrap().as_ref(), Some(r));
    }
}

/// `count_live` counts the records live at the given time, and only those. Not part of
/// [`store_conformance!`](crate::store_conformance): a store may decline to count
/// (`Ok(None)`); call it for one that counts.
pub async fn count_live_counts_only_live_records(store: &dyn Store) {
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

/// Damaged records read as "no session", never as an error or as another session's data, and
/// can still be deleted. `overwrite(key, bytes)` replaces, behind the store's back, the stored
/// encoding of the record under `key` with `bytes`: this check writes garbage under one key and
/// a valid record of another session under a second. Not part of
/// [`store_conformance!`](crate::store_conformance): only the store's own tests can reach
/// behind it. The store should be fresh (the check lists and deletes subject `dora`).
pub async fn damaged_records_read_as_no_session(
    store: &dyn Store,
    mut overwrite: impl AsyncFnMut(Key, Vec<u8>),
) {
    let now = Timestamp::now();
    let garbled = fresh_record(Some("dora"));
    let swapped = fresh_record(Some("dora"));
    let intact = fresh_record(Some("dora"));
    for r in [&garbled, &swapped, &intact] {
        store.create(r).await.unwrap();
    }
    overwrite(garbled.key, vec![1u8, 0xff, 0xff, 0x07]).await;
    // A valid blob, but of another session: not to be served under this key.
    overwrite(swapped.key, intact.encode()).await;

    assert!(store.load(&garbled.key, now).await.unwrap().is_none());
    assert!(store.load(&swapped.key, now).await.unwrap().is_none());
    assert_eq!(
        store.load(&intact.key, now).await.unwrap().as_ref(),
        Some(&intact)
    );
    let listed = store.list_subject("dora", now).await.unwrap();
    assert_eq!(listed, vec![intact.clone()]);
    // The damaged rows can still be deleted, by key or by subject.
    store.delete(&garbled.key).await.unwrap();
    assert_eq!(store.delete_subject("dora", None, now).await.unwrap(), 2);
}

fn engine(store: Arc<dyn Store>) -> Sessions {
    Sessions::from_arc(store).with_policy(Policy::default().max_commit_attempts(10_000))
}

async fn new_session(sessions: &Sessions) -> String {
    let mut session = sessions.start();
    session.insert("seed", &true).unwrap();
    assert_eq!(
        sessions.commit(&mut session).await.unwrap(),
        Commit::Created
    );
    session.id().unwrap().expose()
}

/// 64 concurrent requests on one session, each setting its own key: every key lands and the
/// version counts every commit.
pub async fn concurrent_disjoint_keys_all_land(store: Arc<dyn Store>) {
    let sessions = engine(store);
    let token = new_session(&sessions).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (sessions, token) = (sessions.clone(), token.clone());
            tokio::spawn(async move {
                let mut session = sessions.load(&token).await.unwrap().unwrap();
                session.insert(&format!("key{i}"), &i).unwrap();
                sessions.commit(&mut session).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Commit::Updated);
    }
    let session = sessions.load(&token).await.unwrap().unwrap();
    for i in 0..64 {
        assert_eq!(
            session.get::<i32>(&format!("key{i}")).unwrap(),
            Some(i),
            "key{i}"
        );
    }
    assert_eq!(session.record().version, 65);
}

/// 64 concurrent blind writes of one key: exactly one value stays, every commit is counted.
pub async fn concurrent_same_key_keeps_one_value(store: Arc<dyn Store>) {
    let sessions = engine(store);
    let token = new_session(&sessions).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (sessions, token) = (sessions.clone(), token.clone());
            tokio::spawn(async move {
                let mut session = sessions.load(&token).await.unwrap().unwrap();
                session.insert("winner", &i).unwrap();
                sessions.commit(&mut session).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Commit::Updated);
    }
    let session = sessions.load(&token).await.unwrap().unwrap();
    let winner: i32 = session.get("winner").unwrap().unwrap();
    assert!((0..64).contains(&winner));
    assert_eq!(session.record().version, 65);
}

/// `tasks` concurrent tasks each increment one counter `per_task` times with
/// [`Session::update`](crate::Session::update): no increment is lost.
pub async fn concurrent_updates_lose_nothing(store: Arc<dyn Store>, tasks: u64, per_task: u64) {
    let sessions = engine(store);
    let token = new_session(&sessions).await;
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (sessions, token) = (sessions.clone(), token.clone());
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let mut session = sessions.load(&token).await.unwrap().unwrap();
                    session
                        .update("counter", |n: Option<u64>| Some(n.unwrap_or(0) + 1))
                        .unwrap();
                    session
                        .update("log", |log: Option<Vec<u8>>| {
                            let mut log = log.unwrap_or_default();
                            log.push(1);
                            log.truncate(16);
                            Some(log)
                        })
                        .unwrap();
                    sessions.commit(&mut session).await.unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let session = sessions.load(&token).await.unwrap().unwrap();
    assert_eq!(
        session.get::<u64>("counter").unwrap(),
        Some(tasks * per_task)
    );
    assert_eq!(session.record().version, 1 + tasks * per_task);
}

/// A session deleted while a request works on it stays deleted: the request's commit ends, it
/// does not bring the session back.
pub async fn deleted_sessions_stay_deleted(store: Arc<dyn Store>) {
    let clock = ManualClock::starting_now();
    let sessions = engine(store.clone()).with_clock(clock.clone());
    let token = new_session(&sessions).await;
    let mut writer = sessions.load(&token).await.unwrap().unwrap();
    let mut toucher = sessions.load(&token).await.unwrap().unwrap();
    let mut rotator = sessions.load(&token).await.unwrap().unwrap();
    let key = writer.key().unwrap();
    sessions.revoke(&key).await.unwrap();

    writer.insert("after", &1).unwrap();
    assert_eq!(sessions.commit(&mut writer).await.unwrap(), Commit::Ended);
    rotator.login("mallory");
    assert_eq!(sessions.commit(&mut rotator).await.unwrap(), Commit::Ended);
    clock.advance(2 * MINUTE);
    let mut toucher2 = sessions.load(&token).await.unwrap();
    assert!(toucher2.is_none());
    toucher.touch_due = true;
    assert_eq!(sessions.commit(&mut toucher).await.unwrap(), Commit::Ended);
    toucher2.take();
    assert!(store.load(&key, clock.now()).await.unwrap().is_none());
    assert!(sessions.load(&token).await.unwrap().is_none());
}

/// How many times each [`Store`] operation reached a [`CountingStore`].
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Counts {
    /// `create` calls.
    pub create: AtomicU64,
    /// `load` calls.
    pub load: AtomicU64,
    /// `update` calls.
    pub update: AtomicU64,
    /// `touch` calls.
    pub touch: AtomicU64,
    /// `delete` calls.
    pub delete: AtomicU64,
    /// `rotate` calls.
    pub rotate: AtomicU64,
    /// `list_subject` calls.
    pub list_subject: AtomicU64,
    /// `delete_subject` calls.
    pub delete_subject: AtomicU64,
}

impl Counts {
    /// Calls that write: create, update, touch, delete, rotate, delete_subject.
    pub fn writes(&self) -> u64 {
        [
            &self.create,
            &self.update,
            &self.touch,
            &self.delete,
            &self.rotate,
            &self.delete_subject,
        ]
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .sum()
    }

    /// Calls that read: load, list_subject.
    pub fn reads(&self) -> u64 {
        self.load.load(Ordering::SeqCst) + self.list_subject.load(Ordering::SeqCst)
    }

    /// Every call.
    pub fn total(&self) -> u64 {
        self.writes() + self.reads()
    }
}

/// Wraps a store and counts the calls that reach it, by operation; [`CountingStore::set_down`]
/// makes every call fail with [`StoreError::Unavailable`], like a server that went away (or only
/// the reads, or only the writes). For tests of "no store call", "no write" and "fail closed".
#[derive(Debug, Default)]
pub struct CountingStore<S> {
    inner: S,
    counts: Counts,
    failing_reads: AtomicBool,
    failing_writes: AtomicBool,
}

impl<S: Store> CountingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            counts: Counts::default(),
            failing_reads: AtomicBool::new(false),
            failing_writes: AtomicBool::new(false),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The counts so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Makes the store fail every call (`true`) or work again (`false`).
    pub fn set_down(&self, down: bool) {
        self.set_failing_reads(down);
        self.set_failing_writes(down);
    }

    /// Makes the reads (load, list, count, ping) fail, or work again.
    pub fn set_failing_reads(&self, failing: bool) {
        self.failing_reads.store(failing, Ordering::SeqCst);
    }

    /// Makes the writes (create, update, touch, delete, rotate, delete by subject, purge)
    /// fail, or work again.
    pub fn set_failing_writes(&self, failing: bool) {
        self.failing_writes.store(failing, Ordering::SeqCst);
    }

    fn read(&self, counter: &AtomicU64) -> Result<(), StoreError> {
        counter.fetch_add(1, Ordering::SeqCst);
        Self::outage_if(&self.failing_reads)
    }

    fn write(&self, counter: &AtomicU64) -> Result<(), StoreError> {
        counter.fetch_add(1, Ordering::SeqCst);
        Self::outage_if(&self.failing_writes)
    }

    fn outage_if(flag: &AtomicBool) -> Result<(), StoreError> {
        if flag.load(Ordering::SeqCst) {
            let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Err(StoreError::unavailable(refused));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Store> Store for CountingStore<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        self.write(&self.counts.create)?;
        self.inner.create(record).await
    }
    async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.read(&self.counts.load)?;
        self.inner.load(key, now).await
    }
    async fn update(
        &self,
        record: &Record,
        expected: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(&self.counts.update)?;
        self.inner.update(record, expected, now).await
    }
    async fn touch(&self, key: &Key, idle: Timestamp, now: Timestamp) -> Result<bool, StoreError> {
        self.write(&self.counts.touch)?;
        self.inner.touch(key, idle, now).await
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.write(&self.counts.delete)?;
        self.inner.delete(key).await
    }
    async fn rotate(
        &self,
        old: &Key,
        expected: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.write(&self.counts.rotate)?;
        self.inner.rotate(old, expected, new, now).await
    }
    async fn list_subject(&self, subject: &str, now: Timestamp) -> Result<Vec<Record>, StoreError> {
        self.read(&self.counts.list_subject)?;
        self.inner.list_subject(subject, now).await
    }
    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&Key>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.write(&self.counts.delete_subject)?;
        self.inner.delete_subject(subject, except, now).await
    }
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        Self::outage_if(&self.failing_writes)?;
        self.inner.purge_expired(now, limit).await
    }
    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        Self::outage_if(&self.failing_reads)?;
        self.inner.count_live(now).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Self::outage_if(&self.failing_reads)?;
        self.inner.ping().await
    }
}

/// Generates one `#[tokio::test]` per conformance check for a store factory.
///
/// The factory is `Fn(String) -> impl Future<Output = Option<S>>` (see the [module
/// docs](crate::testing)); it is called once per test with a unique namespace.
///
/// `store_conformance!(sequence: &make)`, inside an async test, runs the same checks one after
/// another in that test instead, each with a fresh store from `make` (as
/// [`run`](crate::testing::run) does), for a server the test starts itself (one test per check
/// would start one server each). It leaves out
/// [`concurrent_updates_lose_nothing`](crate::testing::concurrent_updates_lose_nothing), whose
/// size the caller picks.
#[macro_export]
macro_rules! store_conformance {
    (sequence: $make:expr) => {
        $crate::store_conformance! {@checks [sequence $make]}
    };
    (@checks [$($how:tt)*]) => {
        $crate::store_conformance! {@$($how)*;
            create_then_load,
            duplicate_create_is_an_error,
            unknown_keys_do_not_load,
            expired_records_are_dead,
            update_is_compare_and_swap,
            update_after_delete_is_not_found,
            touch_extends_but_never_past_absolute,
            delete_is_idempotent,
            rotate_moves_the_record,
            list_subject_lists_live_records,
            delete_subject_logs_out_everywhere,
            purge_removes_only_expired,
            concurrent_disjoint_keys_all_land,
            concurrent_same_key_keeps_one_value,
            deleted_sessions_stay_deleted
        }
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            $crate::testing::run($make, stringify!($name), $crate::testing::$name).await;
        }
    )*};
    (@sequence $make:expr; $($name:ident),* $(,)?) => {{$(
        $crate::testing::run($make, stringify!($name), $crate::testing::$name).await;
    )*}};
    ($make:expr) => {
        $crate::store_conformance!(@checks [tests $make]);

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_updates_lose_nothing() {
            $crate::testing::run($make, "concurrent_updates_lose_nothing", |store| {
                $crate::testing::concurrent_updates_lose_nothing(store, 16, 50)
            })
            .await;
        }
    };
}
