//! The engine's policy, exercised through the memory store with an injected clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tessera_core::testing::CountingStore;
use tessera_core::{
    Clock, Commit, Error, LimitAction, ManualClock, MemoryStore, Policy, Sessions, Timestamp,
};

const MINUTE: Duration = Duration::from_secs(60);

type Counting = CountingStore<MemoryStore>;

fn setup(policy: Policy) -> (Sessions, Arc<Counting>, ManualClock) {
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let sessions = Sessions::from_arc(store.clone())
        .with_policy(policy)
        .with_clock(clock.clone());
    (sessions, store, clock)
}

async fn created(sessions: &Sessions) -> String {
    let mut session = sessions.start();
    session.insert("cart", &vec!["tea"]).unwrap();
    assert_eq!(
        sessions.commit(&mut session).await.unwrap(),
        Commit::Created
    );
    session.issued_token().unwrap().to_owned()
}

#[tokio::test]
async fn a_new_session_with_nothing_in_it_is_not_stored() {
    let (sessions, store, _) = setup(Policy::default());
    let mut session = sessions.start();
    assert_eq!(session.get::<String>("x").unwrap(), None);
    assert_eq!(
        sessions.commit(&mut session).await.unwrap(),
        Commit::Unchanged
    );
    assert!(session.id().is_none());
    assert!(session.issued_token().is_none());
    assert_eq!(store.counts().writes(), 0);
}

#[tokio::test]
async fn malformed_tokens_cost_no_store_call() {
    let (sessions, store, _) = setup(Policy::default());
    for token in [
        "",
        "short",
        &"A".repeat(10 * 1024),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "../../etc/passwd",
    ] {
        assert!(sessions.load(token).await.unwrap().is_none());
    }
    assert_eq!(store.counts().reads(), 0);
    // A well-formed but unknown ID is looked up once, and is not adopted.
    let unknown = tessera_core::SessionId::generate().expose();
    assert!(sessions.load(&unknown).await.unwrap().is_none());
    assert_eq!(store.counts().reads(), 1);
    assert_eq!(store.counts().writes(), 0);
}

#[tokio::test]
async fn idle_sessions_expire() {
    let (sessions, _, clock) = setup(Policy::default().idle_timeout(30 * MINUTE));
    let token = created(&sessions).await;
    clock.advance(29 * MINUTE);
    let mut session = sessions.load(&token).await.unwrap().unwrap();
    assert_eq!(
        sessions.commit(&mut session).await.unwrap(),
        Commit::Touched
    );
    // Activity moved the idle deadline: 29 more minutes are fine.
    clock.advance(29 * MINUTE);
    assert!(sessions.load(&token).await.unwrap().is_some());
    clock.advance(MINUTE);
    assert!(sessions.load(&token).await.unwrap().is_none());
}

#[tokio::test]
async fn the_absolute_deadline_ends_even_busy_sessions() {
    let policy = Policy::default()
        .idle_timeout(30 * MINUTE)
        .absolute_timeout(120 * MINUTE);
    let (sessions, _, clock) = setup(policy);
    let token = created(&sessions).await;
    for _ in 0..7 {
        clock.advance(17 * MINUTE);
        let mut session = sessions
            .load(&token)
            .await
            .unwrap()
            .expect("active session lives");
        session.insert("tick", &1).unwrap();
        sessions.commit(&mut session).await.unwrap();
        assert!(session.record().idle_deadline <= session.record().absolute_deadline);
    }
    clock.advance(2 * MINUTE); // 121 minutes after creation
    assert!(sessions.load(&token).await.unwrap().is_none());
}

#[tokio::test]
async fn reads_within_the_touch_interval_write_nothing() {
    let (sessions, store, clock) = setup(Policy::default().touch_interval(MINUTE));
    let token = created(&sessions).await;
    let before = store.counts().writes();
    for _ in 0..1000 {
        let mut session = sessions.load(&token).await.unwrap().unwrap();
        assert_eq!(
            session.get::<Vec<String>>("cart").unwrap().unwrap(),
            ["tea"]
        );
        assert_eq!(
            sessions.commit(&mut session).await.unwrap(),
            Commit::Unchanged
        );
    }
    assert_eq!(store.counts().writes() - before, 0);
    clock.advance(MINUTE);
    let mut session = sessions.load(&token).await.unwrap().unwrap();
    assert_eq!(
        sessions.commit(&mut session).await.unwrap(),
        Commit::Touched
    );
    assert_eq!(store.counts().touch.load(Ordering::SeqCst), 1);
    let mut session = sessions.load(&token).await.unwrap().unwrap();
    assert_eq!(
        sessions.commit(&mut session).await.unwrap(),
        Commit::Unchanged
    );
    assert_eq!(store.counts().writes() - before, 1);
}

#[tokio::test]
async fn login_issues_a_new_id_and_kills_the_old_one() {
    let (sessions, _, clock) = setup(Policy::default());
    let token = created(&sessions).await;
    clock.advance(MINUTE);
    let mut session = sessions.load(&token).await.unwrap().unwrap();
    let old_csrf = *session.csrf_secret();
    let old_absolute = session.record().absolute_deadline;
    session.login("alice");
    assert_ne!(
        *session.csrf_secret(),
        old_csrf,
        "the CSRF secret changes at once"
    );
    assert_eq!(
        sessions.commit(&mut session).await.unwrap(),
        Commit::Rotated
    );
    let new_token = session.issued_token().unwrap().to_owned();
    assert_ne!(new_token, token);
    assert!(sessions.load(&token).await.unwrap().is_none());

    let session = sessions.load(&new_token).await.unwrap().unwrap();
    assert_eq!(session.subject(), Some("alice"));
    assert_eq!(
        session.get::<Vec<String>>("cart").unwrap().unwrap(),
        ["tea"],
        "data carried over"
    );
    assert_eq!(session.record().authenticated_at, Some(clock.now()));
    assert!(
        session.record().absolute_deadline > old_absolute,
        "a login restarts the absolute timeout"
    );
    assert_ne!(*session.csrf_secret(), old_csrf);
}

#[tokio::test]
async fn rotate_changes_the_id_but_not_the_subject() {
    let (sessions, _, _) = setup(Policy::default());
    let mut session = sessions.start();
    session.login("bob");
    sessions.commit(&mut session).await.unwrap();
    let token = session.issued_token().unwrap().to_owned();
    let mut session = sessions.load(&token).await.unwrap().unwrap();
    session.rotate();
    assert_eq!(
        sessions.commit(&mut session).await.unwrap(),
        Commit::Rotated
    );
    let rotated = session.issued_token().unwrap().to_owned();
    assert!(sessions.load(&token).await.unwrap().is_none());
    assert_eq!(
        sessions.load(&rotated).await.unwrap().unwrap().subject(),
        Some("bob")
    );
}

#[tokio::test]
async fn logout_deletes_the_record() {
    let (sessions, _, _) = setup(Policy::default());
    let token = created(&sessions).await;
    let mut session = sessions.load(&token).await.unwrap().unwrap();
    session.logout();
    assert_eq!(
        sessions.commit(&mut session).await.unwrap(),
        Commit::Destroyed
    );
    assert!(Commit::Destroyed.clears_id());
    assert!(sessions.load(&token).await.unwrap().is_none());
    // Replaying the old token afterwards is just "no session".
    assert!(sessions.load(&token).await.unwrap().is_none());
}

#[tokio::test]
async fn the_per_subject_limit_rejects() {
    let policy = Policy::default().max_sessions_per_subject(Some(2), LimitAction::Reject);
    let (sessions, _, _) = setup(policy);
    for _ in 0..2 {
        let mut s = sessions.start();
        s.login("carol");
        assert_eq!(sessions.commit(&mut s).await.unwrap(), Commit::Created);
    }
    let token = created(&sessions).await;
    let mut third = sessions.load(&token).await.unwrap().unwrap();
    third.login("carol");
    assert!(matches!(
        sessions.commit(&mut third).await,
        Err(Error::LimitReached)
    ));
    assert_eq!(sessions.list_subject("carol").await.unwrap().len(), 2);
    // The refused login left the anonymous session as it was.
    assert_eq!(
        sessions.load(&token).await.unwrap().unwrap().subject(),
        None
    );
}

#[tokio::test]
async fn the_per_subject_limit_evicts_the_oldest() {
    let policy = Policy::default().max_sessions_per_subject(Some(2), LimitAction::EvictOldest);
    let (sessions, _, clock) = setup(policy);
    let mut tokens = Vec::new();
    for _ in 0..3 {
        clock.advance(MINUTE);
        let mut s = sessions.start();
        s.login("dave");
        assert_eq!(sessions.commit(&mut s).await.unwrap(), Commit::Created);
        tokens.push(s.issued_token().unwrap().to_owned());
    }
    assert!(
        sessions.load(&tokens[0]).await.unwrap().is_none(),
        "oldest evicted"
    );
    assert!(sessions.load(&tokens[1]).await.unwrap().is_some());
    assert!(sessions.load(&tokens[2]).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_logins_never_exceed_the_limit() {
    for action in [LimitAction::Reject, LimitAction::EvictOldest] {
        let policy = Policy::default().max_sessions_per_subject(Some(3), action);
        let (sessions, _, _) = setup(policy);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let sessions = sessions.clone();
                tokio::spawn(async move {
                    let mut s = sessions.start();
                    s.login("erin");
                    sessions.commit(&mut s).await
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(Commit::Created) => ok += 1,
                Err(Error::LimitReached) => {}
                other => panic!("{other:?}"),
            }
        }
        let live = sessions.list_subject("erin").await.unwrap().len();
        assert!(live <= 3, "{action:?}: {live} live sessions");
        assert!(ok >= 3, "{action:?}: only {ok} logins succeeded");
        if action == LimitAction::Reject {
            assert_eq!(live, 3.min(ok));
        }
    }
}

#[tokio::test]
async fn log_out_everywhere_keeps_only_the_current_session() {
    let (sessions, _, _) = setup(Policy::default());
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let mut s = sessions.start();
        s.login("frank");
        sessions.commit(&mut s).await.unwrap();
        tokens.push(s.issued_token().unwrap().to_owned());
    }
    let current = sessions.load(&tokens[0]).await.unwrap().unwrap();
    let n = sessions
        .revoke_subject("frank", current.key().as_ref())
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(sessions.load(&tokens[0]).await.unwrap().is_some());
    assert!(sessions.load(&tokens[1]).await.unwrap().is_none());
    assert!(sessions.load(&tokens[2]).await.unwrap().is_none());
}

#[tokio::test]
async fn a_store_outage_is_an_error_never_no_session() {
    let (sessions, store, _) = setup(Policy::default());
    let token = created(&sessions).await;
    store.set_down(true);
    let err = sessions.load(&token).await.unwrap_err();
    assert!(err.is_outage(), "{err:?}");
    let mut fresh = sessions.start();
    fresh.insert("x", &1).unwrap();
    assert!(sessions.commit(&mut fresh).await.unwrap_err().is_outage());
    store.set_down(false);
    assert!(sessions.load(&token).await.unwrap().is_some());
}

#[tokio::test]
async fn conflicting_updates_replay_on_the_fresh_value() {
    let (sessions, _, _) = setup(Policy::default());
    let token = created(&sessions).await;
    let mut first = sessions.load(&token).await.unwrap().unwrap();
    let mut second = sessions.load(&token).await.unwrap().unwrap();
    first
        .update("cart", |c: Option<Vec<String>>| {
            Some([c.unwrap_or_default(), vec!["milk".into()]].concat())
        })
        .unwrap();
    second
        .update("cart", |c: Option<Vec<String>>| {
            Some([c.unwrap_or_default(), vec!["bread".into()]].concat())
        })
        .unwrap();
    second.insert("theme", "dark").unwrap();
    sessions.commit(&mut first).await.unwrap();
    assert_eq!(sessions.commit(&mut second).await.unwrap(), Commit::Updated);
    let session = sessions.load(&token).await.unwrap().unwrap();
    assert_eq!(
        session.get::<Vec<String>>("cart").unwrap().unwrap(),
        ["tea", "milk", "bread"]
    );
    assert_eq!(
        session.get::<String>("theme").unwrap().as_deref(),
        Some("dark")
    );
    assert_eq!(session.record().version, 3);
}

#[tokio::test]
async fn purge_removes_expired_sessions_in_batches() {
    let (sessions, store, clock) = setup(Policy::default().idle_timeout(MINUTE));
    for _ in 0..25 {
        created(&sessions).await;
    }
    clock.advance(30 * MINUTE);
    let live = created(&sessions).await;
    assert_eq!(sessions.purge_expired(10).await.unwrap(), 25);
    assert_eq!(store.inner().len(), 1);
    assert!(sessions.load(&live).await.unwrap().is_some());
}

#[tokio::test]
async fn a_kept_new_session_is_stored_even_when_empty() {
    let (sessions, store, _) = setup(Policy::default());
    let mut session = sessions.start();
    let secret = *session.csrf_secret();
    session.keep();
    assert_eq!(
        sessions.commit(&mut session).await.unwrap(),
        Commit::Created
    );
    let token = session.issued_token().unwrap().to_owned();
    let mut loaded = sessions.load(&token).await.unwrap().unwrap();
    assert_eq!(
        *loaded.csrf_secret(),
        secret,
        "the secret behind earlier CSRF tokens survives"
    );
    assert!(loaded.record().data.is_empty());
    // On a stored session, keep asks for nothing.
    let writes = store.counts().writes();
    loaded.keep();
    assert_eq!(
        sessions.commit(&mut loaded).await.unwrap(),
        Commit::Unchanged
    );
    assert_eq!(store.counts().writes(), writes);
}

/// Regression: with a limit of one, a second login in the same millisecond as the first
/// sometimes evicted itself instead of the older session (ties were broken by key).
#[tokio::test]
async fn evict_oldest_never_evicts_the_login_itself_on_a_timestamp_tie() {
    let policy = Policy::default().max_sessions_per_subject(Some(1), LimitAction::EvictOldest);
    let (sessions, _, _) = setup(policy); // the clock does not move: every stamp ties
    let mut previous: Option<String> = None;
    for _ in 0..32 {
        let mut s = sessions.start();
        s.login("gina");
        assert_eq!(sessions.commit(&mut s).await.unwrap(), Commit::Created);
        let token = s.issued_token().unwrap().to_owned();
        assert!(
            sessions.load(&token).await.unwrap().is_some(),
            "the new login survives"
        );
        if let Some(old) = previous.replace(token) {
            assert!(
                sessions.load(&old).await.unwrap().is_none(),
                "the older one went"
            );
        }
    }
}

#[tokio::test]
async fn a_clean_session_commits_as_unchanged_without_a_store_call() {
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let sessions = Sessions::from_arc(store.clone())
        .with_clock(clock.clone())
        .with_policy(Policy::default().touch_interval(Duration::from_secs(60)));
    let mut session = sessions.start();
    assert!(!session.is_clean(), "a new session is never clean");
    session.insert("n", &1).unwrap();
    sessions.commit(&mut session).await.unwrap();
    let token = session.id().unwrap().expose();

    let mut loaded = sessions.load(&token).await.unwrap().unwrap();
    assert!(loaded.is_clean());
    let before = store.counts().total();
    assert_eq!(
        sessions.commit(&mut loaded).await.unwrap(),
        Commit::Unchanged
    );
    assert_eq!(store.counts().total(), before, "no store call");

    loaded.insert("n", &2).unwrap();
    assert!(!loaded.is_clean(), "a change makes it dirty");

    clock.advance(Duration::from_secs(61));
    let due = sessions.load(&token).await.unwrap().unwrap();
    assert!(!due.is_clean(), "a due touch makes it dirty");
    let mut login = sessions.load(&token).await.unwrap().unwrap();
    login.rotate();
    assert!(!login.is_clean(), "a new ID is a write");
}
