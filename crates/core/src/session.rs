//! The per-request session handle: what one request read, and what it wants to change.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::DataError;
use crate::id::{Key, SessionId};
use crate::record::{Data, Record};
use crate::time::Timestamp;

/// A read-modify-write step kept in the change log, re-run on the fresh value when a commit is
/// replayed after a conflict.
type UpdateFn = dyn Fn(Option<&str>) -> Result<Option<Box<str>>, DataError> + Send + Sync;

/// One change a request made to the data, in the order it made them.
#[derive(Clone)]
enum Change {
    /// A blind write: replayed as it is.
    Set(Box<str>, Box<str>),
    Remove(Box<str>),
    Clear,
    /// A read-modify-write: replayed by running the closure again.
    Update(Box<str>, Arc<UpdateFn>),
}

impl Change {
    fn apply(&self, data: &mut Data) -> Result<(), DataError> {
        match self {
            Self::Set(key, json) => data.set_raw(key, json.clone()),
            Self::Remove(key) => {
                data.remove(key);
            }
            Self::Clear => data.clear(),
            Self::Update(key, f) => match f(data.get_raw(key))? {
                Some(json) => data.set_raw(key, json),
                None => {
                    data.remove(key);
                }
            },
        }
        Ok(())
    }
}

/// A privilege change waiting for the commit: a new ID, and possibly a new subject.
#[derive(Clone, Debug)]
pub(crate) struct Privilege {
    /// `Some` for a login (the new subject), `None` for a plain ID rotation.
    pub(crate) subject: Option<Arc<str>>,
    /// The CSRF secret that comes with the new ID (fixed now so pages rendered before the
    /// commit already carry tokens for it).
    pub(crate) csrf_secret: [u8; 32],
    pub(crate) at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Not in the store yet: committed only if something is worth keeping.
    New,
    /// Loaded from (or written to) the store.
    Stored,
    /// Destroyed by this request, or found gone at commit.
    Gone,
}

/// One request's view of a session: the record as loaded plus the changes the request made.
///
/// Obtained from [`Sessions::start`](crate::Sessions::start) (a new, unsaved session) or
/// [`Sessions::load`](crate::Sessions::load); nothing reaches the store until
/// [`Sessions::commit`](crate::Sessions::commit).
///
/// Reads see this request's own changes. Writes are logged: plain `insert`/`remove` are blind
/// writes, and [`Session::update`] is a read-modify-write whose closure is re-run on the fresh
/// value if another request committed first, so concurrent increments are never lost.
pub struct Session {
    pub(crate) state: State,
    pub(crate) id: Option<SessionId>,
    /// The ID a new session will be stored under, drawn from the OS with its CSRF secret.
    pub(crate) drawn_id: Option<SessionId>,
    /// The working copy: the loaded record with this request's changes applied.
    pub(crate) record: Record,
    /// The version the record had when loaded (the compare-and-swap token).
    pub(crate) base_version: u64,
    changes: Vec<Change>,
    /// A new session was changed. Its changes are applied but not logged: a new session is
    /// created at commit, never rebased, so there is nothing to replay.
    changed_new: bool,
    /// Boxed: rare, and the session is moved several times on every load, so every byte kept
    /// inline is copied on every request.
    pub(crate) privilege: Option<Box<Privilege>>,
    pub(crate) destroy: bool,
    pub(crate) touch_due: bool,
    /// Store this new session at commit even if nothing is in it.
    keep: bool,
    /// When the request started using the session (load or start time).
    pub(crate) now: Timestamp,
    /// The token the client must be sent after the last commit, if it needs a new one.
    issued: Option<Box<str>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state)
            .field("key", &self.key())
            .field("subject", &self.subject())
            .field("changes", &self.changes.len())
            .field("privilege_change", &self.privilege.is_some())
            .field("destroy", &self.destroy)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new_unsaved(record: Record) -> Self {
        Self {
            now: record.created_at,
            state: State::New,
            id: None,
            drawn_id: None,
            base_version: record.version,
            record,
            changes: Vec::new(),
            changed_new: false,
            privilege: None,
            destroy: false,
            touch_due: false,
            keep: false,
            issued: None,
        }
    }

    pub(crate) fn loaded(id: SessionId, record: Record, touch_due: bool, now: Timestamp) -> Self {
        Self {
            now,
            state: State::Stored,
            id: Some(id),
            drawn_id: None,
            base_version: record.version,
            record,
            changes: Vec::new(),
            changed_new: false,
            privilege: None,
            destroy: false,
            touch_due,
            keep: false,
            issued: None,
        }
    }

    /// A new, unsaved session around `record`, for engines other than [`Sessions`](crate::Sessions)
    /// (the stateless token engines).
    pub fn unsaved(record: Record) -> Self {
        Self::new_unsaved(record)
    }

    /// A session restored from a record an engine verified itself (the stateless token engines:
    /// the record came out of a sealed cookie or a signed JWT). It has no [`SessionId`].
    pub fn restored(record: Record, touch_due: bool, now: Timestamp) -> Self {
        let mut session = Self::new_unsaved(record);
        session.state = State::Stored;
        session.touch_due = touch_due;
        session.now = now;
        session
    }

    /// True if this request asked for a new ID (a login or [`Session::rotate`]) not yet
    /// committed.
    pub fn privilege_changed(&self) -> bool {
        self.privilege.is_some()
    }

    /// True if this request logged a subject in ([`Session::login`]) and the commit is still to
    /// come; false for a plain [`Session::rotate`].
    pub fn login_pending(&self) -> bool {
        self.privilege.as_ref().is_some_and(|p| p.subject.is_some())
    }

    /// True if this request called [`Session::logout`].
    pub fn logout_requested(&self) -> bool {
        self.destroy
    }

    /// For engines: the commit wrote `record`; the client must now hold `token` (when `Some`).
    pub fn finish_commit(&mut self, record: Record, token: Option<String>) {
        self.committed(record, None);
        self.issued = token.map(String::into_boxed_str);
    }

    /// For engines: the session is destroyed or was found gone.
    pub fn finish_gone(&mut self) {
        self.gone();
    }

    /// The token the client must be sent after the last commit (a new session, a login, a
    /// rotation; for stateless sessions, any re-sealed state). This is a secret: it goes to the
    /// client and nowhere else.
    pub fn issued_token(&self) -> Option<&str> {
        self.issued.as_deref()
    }

    /// The session ID to send to the client: `None` until a new session is committed, and the
    /// new ID once a login or rotation is committed.
    pub fn id(&self) -> Option<&SessionId> {
        self.id.as_ref()
    }

    /// The store key (and so the handle) of the stored session, `None` while it is unsaved.
    pub fn key(&self) -> Option<Key> {
        // The record carries the key of the ID (the engine checks it on load and sets both
        // together on commit), so no hash is computed here.
        debug_assert!(
            self.id
                .as_ref()
                .is_none_or(|id| id.key() == self.record.key)
        );
        self.id.as_ref().map(|_| self.record.key)
    }

    /// True until the session has been written to the store.
    pub fn is_new(&self) -> bool {
        self.state == State::New
    }

    /// True once the session was destroyed (by [`Session::logout`]) or found gone at commit.
    pub fn is_gone(&self) -> bool {
        self.state == State::Gone
    }

    /// The record as this request sees it: as loaded, with this request's changes applied.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The logged-in subject, including a login made by this request.
    pub fn subject(&self) -> Option<&str> {
        self.record.subject.as_deref()
    }

    /// The secret CSRF tokens are derived from (the new one already, after [`Session::login`]).
    pub fn csrf_secret(&self) -> &[u8; 32] {
        &self.record.csrf_secret
    }

    /// True when a commit has nothing to do: the session was loaded (or already ended) and this
    /// request changed nothing, asked for no new ID or logout, and no touch is due. Every engine
    /// answers [`Commit::Unchanged`](crate::Commit::Unchanged) for it without a store call, so a
    /// caller may skip the commit.
    pub fn is_clean(&self) -> bool {
        match self.state {
            State::Gone => true,
            State::Stored => !self.is_modified() && !self.touch_due,
            State::New => false,
        }
    }

    /// True if the commit has something to write (data changes, a login, a rotation or a
    /// logout).
    pub fn is_modified(&self) -> bool {
        !self.changes.is_empty()
            || self.changed_new
            || self.privilege.is_some()
            || self.destroy
            || (self.keep && self.state == State::New)
    }

    /// Asks for a new session to be stored at commit even if nothing is put in it: for example
    /// because a page carries a CSRF token derived from its secret, which must still be there on
    /// the next request. No effect on a session that is already stored.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// True if the commit will record activity even though nothing else changed.
    pub fn touch_due(&self) -> bool {
        self.touch_due
    }

    /// Reads the value under `key`.
    ///
    /// # Errors
    ///
    /// [`DataError::Deserialize`] if the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DataError> {
        self.record
            .data
            .get_raw(key)
            .map(|json| {
                serde_json::from_str(json).map_err(|source| DataError::Deserialize {
                    key: key.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// The JSON text stored under `key`.
    pub fn get_raw(&self, key: &str) -> Option<&str> {
        self.record.data.get_raw(key)
    }

    /// Sets `key` to `value` (a blind write: on a conflict the value is written as it is).
    ///
    /// # Errors
    ///
    /// [`DataError::Serialize`] if `value` does not serialize to JSON.
    pub fn insert<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), DataError> {
        let json = to_json(key, value)?;
        if self.state == State::New {
            // Not logged (see `changed_new`), so neither the key nor the value is copied.
            self.record.data.set_raw(key, json);
            self.changed_new = true;
            return Ok(());
        }
        self.push(Change::Set(key.into(), json))
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let present = self.record.data.get_raw(key).is_some();
        // Removing is recorded even when absent here: another request may set it meanwhile,
        // and this request's intent is "absent".
        self.push(Change::Remove(key.into()))
            .expect("removing cannot fail");
        present
    }

    /// Removes every data entry.
    pub fn clear(&mut self) {
        self.push(Change::Clear).expect("clearing cannot fail");
    }

    /// Read-modify-write of one value: `f` gets the current value (or `None`) and returns the
    /// new one (`None` removes the key). On a commit conflict `f` runs again on the value the
    /// other request committed, so no update is lost.
    ///
    /// `f` may run more than once; it must not have side effects.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use tessera_core::{MemoryStore, Sessions};
    ///
    /// let sessions = Sessions::new(MemoryStore::new());
    /// let mut session = sessions.start();
    /// session.update("visits", |n: Option<u64>| Some(n.unwrap_or(0) + 1))?;
    /// session.update("cart", |cart: Option<Vec<String>>| {
    ///     let mut cart = cart.unwrap_or_default();
    ///     cart.push("apple".into());
    ///     Some(cart)
    /// })?;
    /// sessions.commit(&mut session).await?;
    /// assert_eq!(session.get::<u64>("visits")?, Some(1));
    /// # Ok::<_, tessera_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`DataError`] if the stored value is not a `T` or the new value does not serialize.
    pub fn update<T, F>(&mut self, key: &str, f: F) -> Result<(), DataError>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(Option<T>) -> Option<T> + Send + Sync + 'static,
    {
        let owned_key: Box<str> = key.into();
        let step_key = owned_key.clone();
        let step = move |current: Option<&str>| -> Result<Option<Box<str>>, DataError> {
            let current = current
                .map(|json| {
                    serde_json::from_str::<T>(json).map_err(|source| DataError::Deserialize {
                        key: step_key.to_string(),
                        source,
                    })
                })
                .transpose()?;
            f(current).map(|next| to_json(&step_key, &next)).transpose()
        };
        self.push(Change::Update(owned_key, Arc::new(step)))
    }

    /// Logs `subject` in: at commit the session gets a new ID (the old one stops working at
    /// once), a new CSRF secret, `authenticated_at` and a fresh absolute deadline. The data is
    /// carried over.
    pub fn login(&mut self, subject: impl Into<Arc<str>>) {
        self.change_privilege(Some(subject.into()));
    }

    /// Gives the session a new ID (and CSRF secret) at commit without changing the subject: for
    /// any privilege change other than a login (a role granted, a password changed).
    pub fn rotate(&mut self) {
        self.change_privilege(None);
    }

    fn change_privilege(&mut self, subject: Option<Arc<str>>) {
        let at = self.now;
        let privilege = Privilege {
            subject: subject.or_else(|| self.privilege.as_ref().and_then(|p| p.subject.clone())),
            csrf_secret: crate::engine::random_secret(),
            at,
        };
        privilege.apply(&mut self.record);
        self.privilege = Some(Box::new(privilege));
    }

    /// Destroys the session at commit: the record is deleted; the client should be told to
    /// forget the ID.
    pub fn logout(&mut self) {
        self.destroy = true;
    }

    fn push(&mut self, change: Change) -> Result<(), DataError> {
        change.apply(&mut self.record.data)?;
        if self.state == State::New {
            self.changed_new = true;
        } else {
            self.changes.push(change);
        }
        Ok(())
    }

    /// Re-applies this request's changes to a freshly loaded record (after a conflict).
    pub(crate) fn rebase(&mut self, fresh: Record) -> Result<(), DataError> {
        let mut record = fresh;
        for change in &self.changes {
            change.apply(&mut record.data)?;
        }
        if let Some(privilege) = &self.privilege {
            privilege.apply(&mut record);
        }
        self.base_version = record.version;
        self.record = record;
        Ok(())
    }

    /// Forgets the change log after a successful commit.
    pub(crate) fn committed(&mut self, record: Record, id: Option<SessionId>) {
        self.base_version = record.version;
        self.record = record;
        self.issued = id.as_ref().map(|id| id.expose().into_boxed_str());
        if id.is_some() {
            self.id = id;
        }
        self.state = State::Stored;
        self.changes.clear();
        self.changed_new = false;
        self.privilege = None;
        self.touch_due = false;
    }

    pub(crate) fn gone(&mut self) {
        self.state = State::Gone;
        self.issued = None;
        self.changes.clear();
        self.changed_new = false;
        self.privilege = None;
        self.touch_due = false;
    }
}

impl Privilege {
    /// What a privilege change does to the record itself (the new key is set at commit).
    fn apply(&self, record: &mut Record) {
        if let Some(subject) = &self.subject {
            record.subject = Some(subject.clone());
            record.authenticated_at = Some(self.at);
        }
        record.csrf_secret = self.csrf_secret;
    }
}

fn to_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Box<str>, DataError> {
    serde_json::to_string(value)
        .map(String::into_boxed_str)
        .map_err(|source| DataError::Serialize {
            key: key.to_owned(),
            source,
        })
}
