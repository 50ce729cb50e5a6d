//! What both stateless engines share: the session lifecycle over a token codec, with the same
//! expiry rules as server-side sessions and revocation checks on every load.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::{
    ClientInfo, Clock, Commit, Data, Error, Key, Policy, Record, Session, StoreError, SystemClock,
    Timestamp,
};

use crate::error::TokenError;
use crate::material::random;
use crate::revocation::Revocation;

/// Turns a record into a token and back. `open` answers `None` for anything it did not seal
/// itself, with no reason given.
pub(crate) trait Codec: Clone + Send + Sync + 'static {
    /// The token for `record` (its key is the token id, `jti`).
    fn seal(&self, record: &Record, now: Timestamp) -> Result<String, TokenError>;
    /// The record inside a token this codec sealed, or `None`.
    fn open(&self, token: &str, now: Timestamp) -> Option<Record>;
}

/// The token id (`jti`) as text: the record key in base64url.
pub(crate) fn jti(record: &Record) -> String {
    record.key.handle()
}

#[derive(Clone)]
pub(crate) struct Core<C> {
    pub(crate) codec: C,
    pub(crate) policy: Policy,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) revocation: Option<Revocation>,
}

impl<C: Codec> Core<C> {
    pub(crate) fn new(codec: C) -> Self {
        Self {
            codec,
            policy: Policy::default(),
            clock: Arc::new(SystemClock),
            revocation: None,
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn start(&self, client: ClientInfo) -> Session {
        let now = self.now();
        let absolute_deadline = now.saturating_add(self.policy.absolute);
        Session::unsaved(Record {
            // Replaced by a fresh token id at commit.
            key: Key::from_bytes([0; 32]),
            subject: None,
            data: Data::new(),
            created_at: now,
            authenticated_at: None,
            last_seen_at: now,
            idle_deadline: now.saturating_add(self.policy.idle).min(absolute_deadline),
            absolute_deadline,
            version: 0,
            csrf_secret: random::<32>().expect("the OS random number generator failed"),
            client,
        })
    }

    pub(crate) async fn load(&self, token: &str) -> Result<Option<Session>, Error> {
        let now = self.now();
        let Some(record) = self.codec.open(token, now) else {
            return Ok(None);
        };
        if !record.is_live(now) {
            return Ok(None);
        }
        if let Some(revocation) = &self.revocation {
            let revoked = revocation
                .is_revoked(
                    &jti(&record),
                    record.subject.as_deref(),
                    record.created_at,
                    now,
                )
                .await?;
            if revoked {
                return Ok(None);
            }
        }
        let touch_due = now.since(record.last_seen_at) >= self.policy.touch_interval;
        Ok(Some(Session::restored(record, touch_due, now)))
    }

    pub(crate) async fn commit(&self, session: &mut Session) -> Result<Commit, Error> {
        if session.is_gone() {
            return Ok(Commit::Unchanged);
        }
        let now = self.now();
        if session.is_new() {
            if session.logout_requested() {
                session.finish_gone();
                return Ok(Commit::Unchanged);
            }
            if !session.is_modified() {
                return Ok(Commit::Unchanged);
            }
            let mut record = session.record().clone();
            record.key = fresh_jti()?;
            record.created_at = now;
            record.version = 1;
            self.stamp(&mut record, now);
            let token = self.codec.seal(&record, now)?;
            session.finish_commit(record, Some(token));
            return Ok(Commit::Created);
        }
        if session.logout_requested() {
            let record = session.record();
            if let Some(revocation) = &self.revocation {
                revocation
                    .deny(&jti(record), record.absolute_deadline, now)
                    .await?;
            }
            tracing::debug!(token = %record.key.short(), "stateless session logged out");
            session.finish_gone();
            return Ok(Commit::Destroyed);
        }
        let mut record = session.record().clone();
        let mut retired = None;
        let outcome = if session.privilege_changed() {
            // Only a login restarts the absolute timeout; a plain rotation keeps it.
            let login = session.login_pending();
            retired = Some((jti(&record), record.absolute_deadline));
            record.key = fresh_jti()?;
            record.created_at = now;
            if login {
                record.absolute_deadline = now.saturating_add(self.policy.absolute);
            }
            Commit::Rotated
        } else if session.is_modified() {
            Commit::Updated
        } else if session.touch_due() {
            Commit::Touched
        } else {
            return Ok(Commit::Unchanged);
        };
        record.version += 1;
        self.stamp(&mut record, now);
        let token = self.codec.seal(&record, now)?;
        // The old token line dies at once, like an old session ID at login.
        if let (Some((old, until)), Some(revocation)) = (retired, &self.revocation) {
            revocation.deny(&old, until, now).await?;
        }
        session.finish_commit(record, Some(token));
        Ok(outcome)
    }

    fn stamp(&self, record: &mut Record, now: Timestamp) {
        record.last_seen_at = now;
        record.idle_deadline = now
            .saturating_add(self.policy.idle)
            .min(record.absolute_deadline);
    }

    pub(crate) async fn revoke_subject(&self, subject: &str) -> Result<(), Error> {
        let Some(revocation) = &self.revocation else {
            return Err(Error::Store(StoreError::Unsupported {
                store: "stateless token",
                operation: "revoking a subject without a revocation store",
            }));
        };
        let now = self.now();
        let keep_until = now
            .saturating_add(self.policy.absolute)
            .saturating_add(Duration::from_secs(60));
        revocation.revoke_subject(subject, now, keep_until).await
    }
}

fn fresh_jti() -> Result<Key, Error> {
    random::<32>().map(Key::from_bytes).map_err(Error::Random)
}

/// Implements [`tessera_core::Engine`] and the builder methods shared by both engines.
macro_rules! stateless_engine {
    ($engine:ident, $codec:ty) => {
        impl $engine {
            fn edit(mut self, f: impl FnOnce(&mut crate::lifecycle::Core<$codec>)) -> Self {
                f(std::sync::Arc::make_mut(&mut self.core));
                self
            }

            /// The same engine under another policy (idle and absolute timeouts, touch
            /// interval), applied exactly as server-side sessions apply it.
            pub fn with_policy(self, policy: tessera_core::Policy) -> Self {
                self.edit(|core| core.policy = policy)
            }

            /// The same engine with another clock (tests move a
            /// [`ManualClock`](tessera_core::ManualClock)).
            pub fn with_clock(self, clock: impl tessera_core::Clock) -> Self {
                let clock: std::sync::Arc<dyn tessera_core::Clock> = std::sync::Arc::new(clock);
                self.edit(|core| core.clock = clock)
            }

            /// The same engine with revocation checks on every load, and logouts and
            /// privilege changes recorded in the deny list. Without it, a logout only clears
            /// the client's copy: any other copy of the token stays valid until it expires.
            pub fn with_revocation(self, revocation: crate::Revocation) -> Self {
                self.edit(|core| core.revocation = Some(revocation))
            }

            /// The revocation in use, if any.
            pub fn revocation(&self) -> Option<&crate::Revocation> {
                self.core.revocation.as_ref()
            }

            /// "Log out everywhere": every token of `subject` issued before now stops
            /// working, on this instance at once and on others within the revocation
            /// staleness window.
            ///
            /// # Errors
            ///
            /// [`tessera_core::Error::Store`] when the store fails, or
            /// [`tessera_core::StoreError::Unsupported`] when the engine has no revocation.
            pub async fn revoke_subject(&self, subject: &str) -> Result<(), tessera_core::Error> {
                self.core.revoke_subject(subject).await
            }
        }

        #[async_trait::async_trait]
        impl tessera_core::Engine for $engine {
            fn start(&self, client: tessera_core::ClientInfo) -> tessera_core::Session {
                self.core.start(client)
            }

            async fn load(
                &self,
                token: &str,
            ) -> Result<Option<tessera_core::Session>, tessera_core::Error> {
                self.core.load(token).await
            }

            async fn commit(
                &self,
                session: &mut tessera_core::Session,
            ) -> Result<tessera_core::Commit, tessera_core::Error> {
                self.core.commit(session).await
            }

            fn policy(&self) -> &tessera_core::Policy {
                &self.core.policy
            }

            fn now(&self) -> tessera_core::Timestamp {
                self.core.now()
            }
        }
    };
}

pub(crate) use stateless_engine;
