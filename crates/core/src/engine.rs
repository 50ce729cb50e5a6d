//! The engine: the one place where policy is applied to the store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, StoreError};
use crate::id::{Key, SessionId};
use crate::policy::{LimitAction, Policy};
use crate::record::{ClientInfo, Data, Record};
use crate::session::{Session, State};
use crate::store::Store;
use crate::time::{Clock, SystemClock, Timestamp};

/// What a commit did, so the transport knows what to tell the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Commit {
    /// Nothing to write (a new session with nothing in it is not stored).
    Unchanged,
    /// Only the activity time was written back.
    Touched,
    /// A new session was stored: send its ID.
    Created,
    /// The data changed; the ID did not.
    Updated,
    /// The session got a new ID (login or rotation): send it; the old one is dead.
    Rotated,
    /// The session was destroyed: tell the client to forget the ID.
    Destroyed,
    /// The session was revoked, expired or destroyed by someone else while this request used
    /// it; this request's changes were dropped. Tell the client to forget the ID.
    Ended,
}

impl Commit {
    /// True when the client must be sent a (new) ID.
    pub fn issues_id(self) -> bool {
        matches!(self, Self::Created | Self::Rotated)
    }

    /// True when the client must be told to forget its ID.
    pub fn clears_id(self) -> bool {
        matches!(self, Self::Destroyed | Self::Ended)
    }
}

/// The session engine: loads, creates and commits sessions through a [`Store`] under a
/// [`Policy`]. Cheap to clone (one `Arc`).
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use tessera_core::{Commit, MemoryStore, Sessions};
///
/// let sessions = Sessions::new(MemoryStore::new());
///
/// // First request: a new session with something in it.
/// let mut session = sessions.start();
/// session.insert("theme", "dark")?;
/// assert_eq!(sessions.commit(&mut session).await?, Commit::Created);
/// let token = session.id().unwrap().expose(); // goes to the client
///
/// // Later request: the client sends the token back.
/// let mut session = sessions.load(&token).await?.expect("live session");
/// assert_eq!(session.get::<String>("theme")?.as_deref(), Some("dark"));
///
/// // Login: new ID, old one dead at once.
/// session.login("alice");
/// assert_eq!(sessions.commit(&mut session).await?, Commit::Rotated);
/// assert!(sessions.load(&token).await?.is_none());
/// # Ok::<_, tessera_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    policy: Policy,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("store", &self.inner.store.name())
            .field("policy", &self.inner.policy)
            .finish()
    }
}

impl Sessions {
    /// An engine over `store` with the default [`Policy`] and the system clock.
    pub fn new(store: impl Store) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// An engine over a shared store.
    pub fn from_arc(store: Arc<dyn Store>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                policy: Policy::default(),
                clock: Arc::new(SystemClock),
            }),
        }
    }

    /// The same engine with another policy.
    pub fn with_policy(self, policy: Policy) -> Self {
        self.rebuild(|inner| inner.policy = policy)
    }

    /// The same engine with another clock (tests move a [`ManualClock`](crate::ManualClock)).
    pub fn with_clock(self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.rebuild(|inner| inner.clock = clock)
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            store: self.inner.store.clone(),
            policy: self.inner.policy.clone(),
            clock: self.inner.clock.clone(),
        };
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The store as a trait object. Calling through `Arc<dyn Store>` directly would pick the
    /// blanket `impl Store for Arc<S>`, whose method boxes one more future around the store's
    /// own on every call.
    fn backend(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The engine's current time.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// A new, unsaved session. It reaches the store at commit, and only if something was put in
    /// it (or it was logged in).
    pub fn start(&self) -> Session {
        self.start_with_client(ClientInfo::default())
    }

    /// A new, unsaved session that remembers where the client came from (for device lists).
    pub fn start_with_client(&self, client: ClientInfo) -> Session {
        let now = self.now();
        let policy = &self.inner.policy;
        let absolute_deadline = now.saturating_add(policy.absolute);
        // One draw from the OS for both the CSRF secret and the ID the session will get if it
        // is stored: a system call is a large part of what a new session costs.
        let mut random = [0u8; 64];
        getrandom::fill(&mut random).expect("the OS random number generator failed");
        let (secret, id) = random.split_at(32);
        let mut session = Session::new_unsaved(Record {
            // Replaced by the key of a fresh ID at commit.
            key: Key::from_bytes([0; 32]),
            subject: None,
            data: Data::new(),
            created_at: now,
            authenticated_at: None,
            last_seen_at: now,
            idle_deadline: now.saturating_add(policy.idle).min(absolute_deadline),
            absolute_deadline,
            version: 0,
            csrf_secret: secret.try_into().expect("32 bytes"),
            client,
        });
        session.drawn_id = Some(SessionId::from_os_random(id.try_into().expect("32 bytes")));
        session
    }

    /// Loads the session a client presented. Strict: a malformed token is `None` without a store
    /// call; an unknown or expired one is `None`. Nothing is ever adopted.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails: never "no session" by accident.
    pub async fn load(&self, token: &str) -> Result<Option<Session>, Error> {
        match SessionId::parse(token) {
            Some(id) => self.load_id(id).await,
            None => Ok(None),
        }
    }

    /// Loads the session of an already parsed ID.
    ///
    /// # Errors
    ///
    /// As [`Sessions::load`].
    pub async fn load_id(&self, id: SessionId) -> Result<Option<Session>, Error> {
        // Awaited in place: no boxed future (that is only for `Engine::load_now`'s callers).
        let now = self.now();
        let key = id.key();
        let loaded = match self.backend().load_now(&key, now) {
            Some(loaded) => loaded,
            None => self.backend().load(&key, now).await,
        };
        self.accept(id, &key, loaded, now)
    }

    /// Loads the session of `id`: at once where the store answers at once
    /// ([`Store::load_now`]), else through a future that reuses the key computed here.
    fn load_id_now(&self, id: SessionId) -> Loading<'_> {
        let now = self.now();
        let key = id.key();
        match self.backend().load_now(&key, now) {
            Some(loaded) => Loading::Ready(self.accept(id, &key, loaded, now)),
            None => Loading::Later(Box::pin(async move {
                let loaded = self.backend().load(&key, now).await;
                self.accept(id, &key, loaded, now)
            })),
        }
    }

    /// The session for what the store answered to a load of `key` at `now`.
    fn accept(
        &self,
        id: SessionId,
        key: &Key,
        loaded: Result<Option<Record>, StoreError>,
        now: Timestamp,
    ) -> Result<Option<Session>, Error> {
        let Some(record) = loaded? else {
            return Ok(None);
        };
        // The store already filters dead records; this is the engine's own check of the same
        // invariant, so a backend bug cannot resurrect a session.
        if record.key != *key || !record.is_live(now) {
            return Ok(None);
        }
        let touch_due = now.since(record.last_seen_at) >= self.inner.policy.touch_interval;
        Ok(Some(Session::loaded(id, record, touch_due, now)))
    }

    /// Writes what the request did to the session: creates, updates, touches, rotates or
    /// deletes it, as needed, and nothing when nothing changed.
    ///
    /// On a version conflict it reloads the record, replays this request's changes on it (blind
    /// writes as they are, [`Session::update`] closures re-run) and tries again, up to
    /// [`Policy::max_commit_attempts`] times. If the session is gone meanwhile, the changes are
    /// dropped and the result is [`Commit::Ended`]: a deleted session is never brought back.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] on a store failure, [`Error::LimitReached`] when a login is refused by
    /// the per-subject limit, [`Error::TooManyConflicts`], [`Error::Data`] when a replayed
    /// update closure fails.
    pub async fn commit(&self, session: &mut Session) -> Result<Commit, Error> {
        match session.state {
            State::Gone => Ok(Commit::Unchanged),
            State::New => self.commit_new(session).await,
            State::Stored if session.destroy => {
                let key = session.key().expect("a stored session has an ID");
                self.backend().delete(&key).await?;
                session.gone();
                Ok(Commit::Destroyed)
            }
            State::Stored if session.is_modified() => self.commit_changes(session).await,
            State::Stored if session.touch_due => self.commit_touch(session).await,
            State::Stored => Ok(Commit::Unchanged),
        }
    }

    async fn commit_new(&self, session: &mut Session) -> Result<Commit, Error> {
        if session.destroy {
            session.gone();
            return Ok(Commit::Unchanged);
        }
        if !session.is_modified() {
            return Ok(Commit::Unchanged);
        }
        let subject = session.record.subject.clone();
        if let Some(subject) = &subject {
            self.check_limit_before(subject, None).await?;
        }
        let now = self.now();
        let mut record = session.record.clone();
        record.created_at = now;
        record.version = 1;
        self.stamp(&mut record, now);
        let drawn = session.drawn_id.take();
        let id = self
            .insert_fresh(&mut record, Insert::Create, drawn)
            .await?;
        let key = record.key;
        session.committed(record, Some(id));
        if let Some(subject) = &subject {
            self.enforce_limit_after(session, subject, &key).await?;
        }
        Ok(Commit::Created)
    }

    async fn commit_changes(&self, session: &mut Session) -> Result<Commit, Error> {
        let old_key = session.key().expect("a stored session has an ID");
        let login_subject = session.privilege.as_ref().and_then(|p| p.subject.clone());
        if let Some(subject) = &login_subject {
            self.check_limit_before(subject, Some(&old_key)).await?;
        }
        for attempt in 0..self.inner.policy.max_commit_attempts {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let now = self.now();
            let expected = session.base_version;
            let mut next = session.record.clone();
            next.version = expected + 1;
            if login_subject.is_some() {
                next.absolute_deadline = now.saturating_add(self.inner.policy.absolute);
            }
            self.stamp(&mut next, now);
            let result = if session.privilege.is_some() {
                let rotate = Insert::Rotate {
                    old: old_key,
                    expected,
                    now,
                };
                self.insert_fresh(&mut next, rotate, None).await.map(Some)
            } else {
                let update = self.backend().update(&next, expected, now).await;
                update.map(|()| None).map_err(Error::from)
            };
            match result {
                Ok(None) => {
                    session.committed(next, None);
                    return Ok(Commit::Updated);
                }
                Ok(Some(new_id)) => {
                    let new_key = next.key;
                    session.committed(next, Some(new_id));
                    if let Some(subject) = &login_subject {
                        self.enforce_limit_after(session, subject, &new_key).await?;
                    }
                    return Ok(Commit::Rotated);
                }
                Err(Error::Store(StoreError::NotFound)) => {
                    session.gone();
                    return Ok(Commit::Ended);
                }
                Err(Error::Store(StoreError::Conflict)) => {
                    let Some(fresh) = self.backend().load(&old_key, self.now()).await? else {
                        session.gone();
                        return Ok(Commit::Ended);
                    };
                    session.rebase(fresh)?;
                }
                Err(other) => return Err(other),
            }
        }
        Err(Error::TooManyConflicts)
    }

    async fn commit_touch(&self, session: &mut Session) -> Result<Commit, Error> {
        let key = session.key().expect("a stored session has an ID");
        let now = self.now();
        let idle_deadline = self.idle_deadline(&session.record, now);
        if self.backend().touch(&key, idle_deadline, now).await? {
            session.record.last_seen_at = now;
            session.record.idle_deadline = idle_deadline;
            session.touch_due = false;
            Ok(Commit::Touched)
        } else {
            session.gone();
            Ok(Commit::Ended)
        }
    }

    /// Sets the activity time and the idle deadline for a write at `now`.
    fn stamp(&self, record: &mut Record, now: Timestamp) {
        record.last_seen_at = now;
        record.idle_deadline = self.idle_deadline(record, now);
    }

    fn idle_deadline(&self, record: &Record, now: Timestamp) -> Timestamp {
        now.saturating_add(self.inner.policy.idle)
            .min(record.absolute_deadline)
    }

    /// Gives `record` a fresh ID (`drawn`, if the session drew one when it started) and writes
    /// it, drawing another ID in the astronomically unlikely case that the key exists.
    async fn insert_fresh(
        &self,
        record: &mut Record,
        how: Insert,
        mut drawn: Option<SessionId>,
    ) -> Result<SessionId, Error> {
        let store = self.backend();
        for _ in 0..4 {
            let id = match drawn.take() {
                Some(id) => id,
                None => SessionId::try_generate().map_err(Error::Random)?,
            };
            record.key = id.key();
            let written = match how {
                Insert::Create => store.create(record).await,
                Insert::Rotate { old, expected, now } => {
                    store.rotate(&old, expected, record, now).await
                }
            };
            match written {
                Ok(()) => return Ok(id),
                Err(StoreError::Duplicate) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(StoreError::Duplicate.into())
    }

    /// Refuses a login up front when the subject is already at a "reject" limit (not counting
    /// the session that is logging in).
    async fn check_limit_before(&self, subject: &str, current: Option<&Key>) -> Result<(), Error> {
        let policy = &self.inner.policy;
        let (Some(max), LimitAction::Reject) = (policy.max_per_subject, policy.on_limit) else {
            return Ok(());
        };
        let live = self.list_subject_for_limit(subject).await?;
        let others = live.iter().filter(|r| Some(&r.key) != current).count();
        if others >= max as usize {
            return Err(Error::LimitReached);
        }
        Ok(())
    }

    /// After a login landed: if racing logins took the subject past the limit, the newest
    /// sessions beyond it go (reject: every racer sorts the same way, so they agree on who
    /// goes, and a racer that finds itself among them fails) or the oldest ones do (evict: the
    /// login's own session is never among them).
    async fn enforce_limit_after(
        &self,
        session: &mut Session,
        subject: &str,
        ours: &Key,
    ) -> Result<(), Error> {
        let Some(max) = self.inner.policy.max_per_subject.map(|m| m as usize) else {
            return Ok(());
        };
        let mut live = self.list_subject_for_limit(subject).await?;
        if live.len() <= max {
            return Ok(());
        }
        // Oldest first. When evicting, this login's own session counts as the newest even if
        // another was stamped in the same millisecond: a login never evicts itself.
        let evicting = self.inner.policy.on_limit == LimitAction::EvictOldest;
        live.sort_by_key(|r| {
            let own = evicting && r.key == *ours;
            (
                own,
                r.authenticated_at.unwrap_or(r.created_at),
                r.created_at,
                r.key,
            )
        });
        let doomed = match self.inner.policy.on_limit {
            LimitAction::Reject => &live[max..],
            LimitAction::EvictOldest => &live[..live.len() - max],
        };
        for record in doomed {
            self.backend().delete(&record.key).await?;
            tracing::info!(session = %record.key.short(), subject, "session removed by the per-subject limit");
        }
        if doomed.iter().any(|r| r.key == *ours) {
            session.gone();
            return Err(Error::LimitReached);
        }
        Ok(())
    }

    async fn list_subject_for_limit(&self, subject: &str) -> Result<Vec<Record>, Error> {
        match self.backend().list_subject(subject, self.now()).await {
            Ok(list) => Ok(list),
            Err(StoreError::Unsupported { .. }) => {
                tracing::warn!(
                    store = self.inner.store.name(),
                    "the per-subject session limit cannot be enforced on this store"
                );
                Ok(Vec::new())
            }
            Err(other) => Err(other.into()),
        }
    }

    /// The live sessions of `subject` (a device list), oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Store`], including [`StoreError::Unsupported`] on stores without a subject
    /// index.
    pub async fn list_subject(&self, subject: &str) -> Result<Vec<Record>, Error> {
        let mut list = self.backend().list_subject(subject, self.now()).await?;
        list.sort_by_key(|r| (r.created_at, r.key));
        Ok(list)
    }

    /// The live record with this key (handle), for administration.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn record(&self, key: &Key) -> Result<Option<Record>, Error> {
        Ok(self.backend().load(key, self.now()).await?)
    }

    /// Destroys one session by key (handle). Idempotent.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn revoke(&self, key: &Key) -> Result<(), Error> {
        self.backend().delete(key).await?;
        tracing::info!(session = %key.short(), "session revoked");
        Ok(())
    }

    /// "Log out everywhere": destroys every session of `subject`, except `except` if given.
    /// Returns how many were destroyed.
    ///
    /// # Errors
    ///
    /// [`Error::Store`], including [`StoreError::Unsupported`] on stores without a subject
    /// index.
    pub async fn revoke_subject(&self, subject: &str, except: Option<&Key>) -> Result<u64, Error> {
        let n = self
            .inner
            .store
            .delete_subject(subject, except, self.now())
            .await?;
        tracing::info!(subject, revoked = n, "subject's sessions revoked");
        Ok(n)
    }

    /// Removes every expired record, `batch` at a time; returns how many.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn purge_expired(&self, batch: usize) -> Result<u64, Error> {
        let batch = batch.max(1);
        let mut total = 0;
        loop {
            let n = self.backend().purge_expired(self.now(), batch).await?;
            total += n;
            if n < batch as u64 {
                return Ok(total);
            }
        }
    }

    /// Spawns a Tokio task that purges expired records every `every`. Errors are logged and the
    /// task goes on; abort the handle to stop it.
    pub fn spawn_purger(&self, every: Duration, batch: usize) -> tokio::task::JoinHandle<()> {
        let sessions = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match sessions.purge_expired(batch).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(purged = n, "expired sessions purged"),
                    Err(error) => tracing::warn!(%error, "purging expired sessions failed"),
                }
            }
        })
    }
}

#[derive(Clone, Copy)]
enum Insert {
    Create,
    Rotate {
        old: Key,
        expected: u64,
        now: Timestamp,
    },
}

/// A load that may already be done: what [`Engine::load_now`] returns.
// Not boxed: the point of `Ready` is to hand the session over without an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Loading<'a> {
    /// The answer, found without waiting (a memory store; a malformed token).
    Ready(Result<Option<Session>, Error>),
    /// The rest of the load, to be awaited.
    Later(Pin<Box<dyn Future<Output = Result<Option<Session>, Error>> + Send + 'a>>),
}

impl std::fmt::Debug for Loading<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ready(_) => "Loading::Ready",
            Self::Later(_) => "Loading::Later",
        })
    }
}

/// Anything that gives a request its session and writes it back: the server-side [`Sessions`]
/// engine, and the stateless engines of `tessera-token` (encrypted cookie, JWT). The HTTP layer
/// is written against this trait, so an app switches between them by configuration.
#[async_trait::async_trait]
pub trait Engine: Send + Sync + 'static {
    /// A new, unsaved session.
    fn start(&self, client: ClientInfo) -> Session;

    /// The session for a token the client presented; `None` for anything not valid and live.
    ///
    /// # Errors
    ///
    /// Only failures that must not be mistaken for "no session" (a store outage).
    async fn load(&self, token: &str) -> Result<Option<Session>, Error>;

    /// [`Engine::load`], answered at once where the engine can ([`Sessions`] over a store
    /// whose [`Store::load_now`] answers, or a token that is malformed), else the load's
    /// future. The HTTP layer calls this, so a session held in memory is loaded without a boxed
    /// future. The default defers to [`Engine::load`].
    fn load_now<'a>(&'a self, token: &'a str) -> Loading<'a> {
        Loading::Later(self.load(token))
    }

    /// [`Engine::load_now`] for a token as the client sent it, in bytes: one that is not UTF-8
    /// is loaded as the empty token, which no engine accepts. The HTTP layer calls this (a
    /// header value is bytes). The default checks the UTF-8 and defers to
    /// [`Engine::load_now`]; [`Sessions`] parses the bytes as they are, since an ID is ASCII
    /// or nothing.
    fn load_now_raw<'a>(&'a self, token: &'a [u8]) -> Loading<'a> {
        self.load_now(std::str::from_utf8(token).unwrap_or(""))
    }

    /// Writes back what the request did. Afterwards [`Session::issued_token`] is the token to
    /// send the client, if it needs a new one.
    ///
    /// # Errors
    ///
    /// As [`Sessions::commit`].
    async fn commit(&self, session: &mut Session) -> Result<Commit, Error>;

    /// The policy sessions live under (for cookie lifetimes).
    fn policy(&self) -> &Policy;

    /// The engine's current time.
    fn now(&self) -> Timestamp;
}

#[async_trait::async_trait]
impl Engine for Sessions {
    fn start(&self, client: ClientInfo) -> Session {
        self.start_with_client(client)
    }

    async fn load(&self, token: &str) -> Result<Option<Session>, Error> {
        Sessions::load(self, token).await
    }

    fn load_now<'a>(&'a self, token: &'a str) -> Loading<'a> {
        self.load_now_raw(token.as_bytes())
    }

    fn load_now_raw<'a>(&'a self, token: &'a [u8]) -> Loading<'a> {
        match SessionId::parse_bytes(token) {
            Some(id) => self.load_id_now(id),
            None => Loading::Ready(Ok(None)),
        }
    }

    async fn commit(&self, session: &mut Session) -> Result<Commit, Error> {
        Sessions::commit(self, session).await
    }

    fn policy(&self) -> &Policy {
        Sessions::policy(self)
    }

    fn now(&self) -> Timestamp {
        Sessions::now(self)
    }
}

/// 32 bytes from the OS CSPRNG (CSRF secrets).
pub(crate) fn random_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the OS random number generator failed");
    secret
}

/// Waits a little before retrying a lost compare-and-swap: first just yields, then sleeps a
/// jittered, growing time (at most ~4 ms), so contending requests spread out.
async fn backoff(attempt: u32) {
    if attempt < 3 {
        tokio::task::yield_now().await;
        return;
    }
    let mut jitter = [0u8; 2];
    let _ = getrandom::fill(&mut jitter);
    let ceiling = 50u64 << attempt.min(7);
    let micros = u64::from(u16::from_le_bytes(jitter)) % ceiling;
    tokio::time::sleep(Duration::from_micros(micros)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[tokio::test]
    async fn a_drawn_id_that_collides_is_replaced_and_the_other_session_is_untouched() {
        let sessions = Sessions::new(MemoryStore::new());
        let mut first = sessions.start();
        first.insert("owner", "first").unwrap();
        let mut second = sessions.start();
        second.insert("owner", "second").unwrap();
        // Make the second session draw the same ID as the first (what a broken RNG would do).
        second.drawn_id = first.drawn_id.clone();
        assert_eq!(sessions.commit(&mut first).await.unwrap(), Commit::Created);
        assert_eq!(sessions.commit(&mut second).await.unwrap(), Commit::Created);

        let (a, b) = (first.id().unwrap(), second.id().unwrap());
        assert_ne!(a, b, "the collision was detected and a new ID drawn");
        let owner = |s: &Session| s.get::<String>("owner").unwrap().unwrap();
        let a = sessions.load_id(a.clone()).await.unwrap().unwrap();
        let b = sessions.load_id(b.clone()).await.unwrap().unwrap();
        assert_eq!(
            (owner(&a).as_str(), owner(&b).as_str()),
            ("first", "second")
        );
    }

    /// An engine that only has `load_now` of its own, to see what the default `load_now_raw`
    /// hands it.
    struct Plain(Sessions, std::sync::Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl Engine for Plain {
        fn start(&self, client: ClientInfo) -> Session {
            self.0.start_with_client(client)
        }
        async fn load(&self, token: &str) -> Result<Option<Session>, Error> {
            self.0.load(token).await
        }
        fn load_now<'a>(&'a self, token: &'a str) -> Loading<'a> {
            self.1.lock().unwrap().push(token.to_owned());
            Engine::load_now(&self.0, token)
        }
        async fn commit(&self, session: &mut Session) -> Result<Commit, Error> {
            self.0.commit(session).await
        }
        fn policy(&self) -> &Policy {
            self.0.policy()
        }
        fn now(&self) -> Timestamp {
            self.0.now()
        }
    }

    /// Loading from bytes finds what loading from the text finds (the text of bytes that are
    /// not UTF-8 being empty), in the engine and through the default.
    #[tokio::test]
    async fn loading_raw_bytes_finds_what_loading_their_text_finds() {
        let sessions = Sessions::new(MemoryStore::new());
        let mut live = sessions.start();
        live.insert("n", &1).unwrap();
        sessions.commit(&mut live).await.unwrap();
        let token = live.id().unwrap().expose();
        let mut not_utf8 = token.clone().into_bytes();
        not_utf8[3] = 0xff;
        let cases: Vec<Vec<u8>> = vec![
            token.clone().into_bytes(),
            SessionId::generate().expose().into_bytes(),
            format!("{token}=").into_bytes(),
            not_utf8,
            b"\xc3\xa9".to_vec(),
            Vec::new(),
        ];
        let found = |loading: Loading<'_>| match loading {
            Loading::Ready(loaded) => loaded.unwrap().map(|s| s.key().unwrap()),
            Loading::Later(_) => panic!("the memory store answers at once"),
        };
        let plain = Plain(sessions.clone(), std::sync::Mutex::default());
        for bytes in &cases {
            let text = std::str::from_utf8(bytes).unwrap_or("");
            let expected = found(Engine::load_now(&sessions, text));
            assert_eq!(found(sessions.load_now_raw(bytes)), expected, "{bytes:?}");
            assert_eq!(found(plain.load_now_raw(bytes)), expected, "{bytes:?}");
            assert_eq!(plain.1.lock().unwrap().pop().as_deref(), Some(text));
        }
        assert_eq!(
            found(sessions.load_now_raw(token.as_bytes())),
            Some(live.key().unwrap())
        );
    }

    #[test]
    fn a_new_session_draws_its_secret_and_its_id_apart() {
        let sessions = Sessions::new(MemoryStore::new());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let session = sessions.start();
            let id = session.drawn_id.clone().expect("drawn at start");
            assert!(seen.insert(session.record().csrf_secret), "secrets differ");
            assert!(seen.insert(*id.key().as_bytes()), "ids differ");
            assert_ne!(
                id.expose(),
                SessionId::from_os_random(session.record().csrf_secret).expose(),
                "the ID is not the CSRF secret"
            );
        }
    }
}
