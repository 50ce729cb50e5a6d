//! Revocation of stateless tokens, kept in any Tessera [`Store`]: a deny list of token ids
//! (`jti`) and a per-subject "valid after" time.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tessera_core::{ClientInfo, Data, Error, Key, Record, Store, StoreError, Timestamp};

const JTI_DOMAIN: &[u8] = b"tessera-token/jti\0";
const VALID_AFTER_DOMAIN: &[u8] = b"tessera-token/valid-after\0";
const VALID_AFTER_FIELD: &str = "valid_after";
/// Bound on the compare-and-swap loop of a revocation write.
const MAX_ATTEMPTS: u32 = 16;

/// Revocation for stateless sessions, kept in any [`Store`] without store operations of its
/// own.
///
/// - **Deny list**: a token id (`jti`) is written as a record under the key
///   `SHA-256("tessera-token/jti\0" ‖ jti)`, whose deadlines are the token's own expiry, so
///   the store expires and purges it when the token could not be used anyway.
/// - **Valid after**: "log out everywhere" writes the time under
///   `SHA-256("tessera-token/valid-after\0" ‖ subject)` (data field `valid_after`, in
///   milliseconds), kept as long as a token issued before it could live. A session whose
///   current token line was issued (created, or last logged in / rotated) strictly before
///   that time is rejected. Re-sealing a session for activity keeps its issue time, so a
///   revoked session cannot escape by being touched.
///
/// Both records have no subject, so they never show up in a server-side device list, and the
/// domain-separated hashes can never equal a session key (the SHA-256 of a session ID).
///
/// # The cache and its staleness window
///
/// Lookups are cached in memory for [`Revocation::with_staleness`] (default 1 second): a
/// revocation written by *another* instance takes effect here at most that long after it
/// reached the store. Revocations written through this instance (logout, "log out
/// everywhere") take effect here at once. A staleness of zero disables the cache: every
/// request reads the store (two reads for a logged-in session, one for an anonymous one).
/// The cache holds at most [`Revocation::with_cache_capacity`] entries (default 10 000); when
/// full it first drops stale entries, then everything. A store that fails is an error (the
/// request fails with 503), never "not revoked".
///
/// Clones share the cache.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tessera_core::{MemoryStore, Timestamp};
/// use tessera_token::Revocation;
///
/// let revocation = Revocation::new(Arc::new(MemoryStore::new()))
///     .with_staleness(Duration::from_millis(500));
/// let now = Timestamp::from_millis(1_000_000);
/// let expires = Timestamp::from_millis(2_000_000);
///
/// revocation.deny("some-jti", expires, now).await?;
/// assert!(revocation.is_denied("some-jti", now).await?);
///
/// revocation.revoke_subject("alice", now, expires).await?;
/// let issued_before = Timestamp::from_millis(999_000);
/// assert!(revocation.is_revoked("other-jti", Some("alice"), issued_before, now).await?);
/// # Ok::<_, tessera_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Revocation {
    store: Arc<dyn Store>,
    staleness: Duration,
    capacity: usize,
    cache: Arc<Mutex<HashMap<Key, Cached>>>,
}

#[derive(Clone, Copy)]
struct Cached {
    value: Entry,
    fetched: Timestamp,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    Denied(bool),
    ValidAfter(Option<Timestamp>),
}

impl fmt::Debug for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocation")
            .field("store", &self.store.name())
            .field("staleness", &self.staleness)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Revocation {
    /// Revocation kept in `store`, with a 1-second cache of up to 10 000 entries.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            staleness: Duration::from_secs(1),
            capacity: 10_000,
            cache: Arc::default(),
        }
    }

    /// How long a lookup may be answered from the cache (zero: never, every check reads the
    /// store).
    pub fn with_staleness(mut self, staleness: Duration) -> Self {
        self.staleness = staleness;
        self
    }

    /// How many lookups the cache keeps at most (at least 1).
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The staleness window.
    pub fn staleness(&self) -> Duration {
        self.staleness
    }

    /// The store the revocations are kept in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The store key of the deny-list entry for `jti`.
    pub fn jti_key(jti: &str) -> Key {
        domain_key(JTI_DOMAIN, jti)
    }

    /// The store key of the "valid after" entry for `subject`.
    pub fn valid_after_key(subject: &str) -> Key {
        domain_key(VALID_AFTER_DOMAIN, subject)
    }

    /// Puts `jti` on the deny list until `until` (the token's expiry). Idempotent; a later
    /// `until` extends the entry.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails; [`Error::TooManyConflicts`] under extreme
    /// contention on the same entry.
    pub async fn deny(&self, jti: &str, until: Timestamp, now: Timestamp) -> Result<(), Error> {
        let key = Self::jti_key(jti);
        if until > now {
            self.put(key, now, until, None).await?;
        }
        self.remember(key, Entry::Denied(true), now);
        Ok(())
    }

    /// Whether `jti` is on the deny list.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails: never "not denied" by accident.
    pub async fn is_denied(&self, jti: &str, now: Timestamp) -> Result<bool, Error> {
        let key = Self::jti_key(jti);
        if let Some(Entry::Denied(denied)) = self.cached(&key, now) {
            return Ok(denied);
        }
        let denied = self.store.load(&key, now).await?.is_some();
        self.remember(key, Entry::Denied(denied), now);
        Ok(denied)
    }

    /// "Log out everywhere": every token of `subject` issued before `at` stops working. The
    /// entry is kept until `keep_until` (pass `at` + the absolute session timeout + any
    /// leeway: after that no token issued before `at` can be alive). The time never moves
    /// back: an earlier `at` than the stored one changes nothing.
    ///
    /// # Errors
    ///
    /// As [`Revocation::deny`].
    pub async fn revoke_subject(
        &self,
        subject: &str,
        at: Timestamp,
        keep_until: Timestamp,
    ) -> Result<(), Error> {
        let key = Self::valid_after_key(subject);
        let stored = self
            .put(
                key,
                at,
                keep_until.max(at.saturating_add(Duration::from_millis(1))),
                Some(at),
            )
            .await?;
        self.remember(key, Entry::ValidAfter(stored), at);
        tracing::info!(subject, "stateless sessions of the subject revoked");
        Ok(())
    }

    /// The subject's "valid after" time, if one is in force.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails.
    pub async fn valid_after(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, Error> {
        let key = Self::valid_after_key(subject);
        if let Some(Entry::ValidAfter(at)) = self.cached(&key, now) {
            return Ok(at);
        }
        let at = self
            .store
            .load(&key, now)
            .await?
            .and_then(|record| read_valid_after(&record));
        self.remember(key, Entry::ValidAfter(at), now);
        Ok(at)
    }

    /// Whether a token with this `jti`, of this `subject`, whose token line was issued at
    /// `issued_at`, is revoked (denied, or issued before the subject's "valid after").
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails.
    pub async fn is_revoked(
        &self,
        jti: &str,
        subject: Option<&str>,
        issued_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, Error> {
        if self.is_denied(jti, now).await? {
            return Ok(true);
        }
        if let Some(subject) = subject {
            if let Some(after) = self.valid_after(subject, now).await? {
                return Ok(issued_at < after);
            }
        }
        Ok(false)
    }

    /// Writes the entry under `key`, merging with what is there: the later deadline and the
    /// later "valid after" win. Returns the "valid after" now stored.
    async fn put(
        &self,
        key: Key,
        now: Timestamp,
        until: Timestamp,
        valid_after: Option<Timestamp>,
    ) -> Result<Option<Timestamp>, Error> {
        let mut blocked = false;
        for _ in 0..MAX_ATTEMPTS {
            let Some(existing) = self.store.load(&key, now).await? else {
                match self
                    .store
                    .create(&marker(key, now, until, valid_after))
                    .await
                {
                    Ok(()) => return Ok(valid_after),
                    Err(StoreError::Duplicate) if blocked => {
                        // A dead entry the store has not purged yet holds the key.
                        self.store.delete(&key).await?;
                    }
                    Err(StoreError::Duplicate) => blocked = true,
                    Err(other) => return Err(other.into()),
                }
                continue;
            };
            let old_after = read_valid_after(&existing);
            let merged_after = old_after.max(valid_after);
            let merged_until = existing.absolute_deadline.max(until);
            if merged_after == old_after && merged_until == existing.absolute_deadline {
                return Ok(merged_after);
            }
            let mut next = marker(key, now, merged_until, merged_after);
            next.created_at = existing.created_at;
            next.version = existing.version + 1;
            match self.store.update(&next, existing.version, now).await {
                Ok(()) => return Ok(merged_after),
                Err(StoreError::Conflict | StoreError::NotFound) => {}
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::TooManyConflicts)
    }

    fn cached(&self, key: &Key, now: Timestamp) -> Option<Entry> {
        if self.staleness.is_zero() {
            return None;
        }
        let cache = self.cache.lock();
        let cached = cache.get(key)?;
        self.is_fresh(cached, now).then_some(cached.value)
    }

    fn is_fresh(&self, cached: &Cached, now: Timestamp) -> bool {
        now >= cached.fetched && now.since(cached.fetched) < self.staleness
    }

    fn remember(&self, key: Key, value: Entry, now: Timestamp) {
        if self.staleness.is_zero() {
            return;
        }
        let mut cache = self.cache.lock();
        if cache.len() >= self.capacity && !cache.contains_key(&key) {
            cache.retain(|_, cached| self.is_fresh(cached, now));
            if cache.len() >= self.capacity {
                cache.clear();
            }
        }
        cache.insert(
            key,
            Cached {
                value,
                fetched: now,
            },
        );
    }

    #[cfg(test)]
    fn cache_len(&self) -> usize {
        self.cache.lock().len()
    }
}

fn domain_key(domain: &[u8], value: &str) -> Key {
    Key::from_bytes(
        Sha256::new()
            .chain_update(domain)
            .chain_update(value.as_bytes())
            .finalize()
            .into(),
    )
}

fn marker(key: Key, now: Timestamp, until: Timestamp, valid_after: Option<Timestamp>) -> Record {
    let mut data = Data::new();
    if let Some(at) = valid_after {
        data.set_json(VALID_AFTER_FIELD, &serde_json::json!(at.as_millis()));
    }
    Record {
        key,
        subject: None,
        data,
        created_at: now,
        authenticated_at: None,
        last_seen_at: now,
        idle_deadline: until,
        absolute_deadline: until,
        version: 1,
        csrf_secret: [0; 32],
        client: ClientInfo::default(),
    }
}

fn read_valid_after(record: &Record) -> Option<Timestamp> {
    record
        .data
        .get_raw(VALID_AFTER_FIELD)
        .and_then(|raw| raw.parse::<u64>().ok())
        .map(Timestamp::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::MemoryStore;

    fn t(secs: u64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn keys_are_domain_separated() {
        assert_ne!(Revocation::jti_key("x"), Revocation::valid_after_key("x"));
        assert_ne!(Revocation::jti_key("x"), Revocation::jti_key("y"));
    }

    #[test]
    fn denied_until_expiry_then_gone() {
        block_on(async {
            let store = Arc::new(MemoryStore::new());
            let rev = Revocation::new(store.clone()).with_staleness(Duration::ZERO);
            rev.deny("j1", t(100), t(10)).await.unwrap();
            assert!(rev.is_denied("j1", t(10)).await.unwrap());
            assert!(rev.is_denied("j1", t(99)).await.unwrap());
            assert!(!rev.is_denied("j2", t(10)).await.unwrap());
            assert!(!rev.is_denied("j1", t(100)).await.unwrap());
            // The entry is an ordinary expired record: purging removes it.
            assert_eq!(store.purge_expired(t(100), 10).await.unwrap(), 1);
            // A later deny of the same jti extends it; an earlier one does not shorten it.
            rev.deny("j3", t(50), t(10)).await.unwrap();
            rev.deny("j3", t(80), t(11)).await.unwrap();
            rev.deny("j3", t(60), t(12)).await.unwrap();
            assert!(rev.is_denied("j3", t(79)).await.unwrap());
            assert!(!rev.is_denied("j3", t(80)).await.unwrap());
            // Denying again after the entry expired (but before any purge) works.
            rev.deny("j3", t(200), t(90)).await.unwrap();
            assert!(rev.is_denied("j3", t(150)).await.unwrap());
        });
    }

    #[test]
    fn valid_after_only_moves_forward_and_is_invisible_to_device_lists() {
        block_on(async {
            let store = Arc::new(MemoryStore::new());
            let rev = Revocation::new(store.clone()).with_staleness(Duration::ZERO);
            assert_eq!(rev.valid_after("alice", t(1)).await.unwrap(), None);
            rev.revoke_subject("alice", t(10), t(1000)).await.unwrap();
            rev.revoke_subject("alice", t(5), t(1000)).await.unwrap();
            assert_eq!(rev.valid_after("alice", t(11)).await.unwrap(), Some(t(10)));
            rev.revoke_subject("alice", t(20), t(1000)).await.unwrap();
            assert_eq!(rev.valid_after("alice", t(21)).await.unwrap(), Some(t(20)));
            assert!(
                rev.is_revoked("j", Some("alice"), t(19), t(21))
                    .await
                    .unwrap()
            );
            assert!(
                !rev.is_revoked("j", Some("alice"), t(20), t(21))
                    .await
                    .unwrap()
            );
            assert!(!rev.is_revoked("j", Some("bob"), t(1), t(21)).await.unwrap());
            assert!(!rev.is_revoked("j", None, t(1), t(21)).await.unwrap());
            assert!(store.list_subject("alice", t(21)).await.unwrap().is_empty());
        });
    }

    #[test]
    fn another_instance_sees_a_revocation_after_the_staleness_window() {
        block_on(async {
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let here = Revocation::new(store.clone()).with_staleness(Duration::from_secs(2));
            let there = Revocation::new(store);
            assert!(!here.is_denied("j", t(10)).await.unwrap());
            there.deny("j", t(100), t(10)).await.unwrap();
            // Within the window the cached "not denied" answer stands...
            assert!(!here.is_denied("j", t(11)).await.unwrap());
            // ...and not a moment past it.
            assert!(here.is_denied("j", t(12)).await.unwrap());
            // Local writes are seen at once.
            assert!(!here.is_denied("k", t(12)).await.unwrap());
            here.deny("k", t(100), t(12)).await.unwrap();
            assert!(here.is_denied("k", t(12)).await.unwrap());
        });
    }

    #[test]
    fn the_cache_is_bounded() {
        block_on(async {
            let rev = Revocation::new(Arc::new(MemoryStore::new()))
                .with_staleness(Duration::from_secs(60))
                .with_cache_capacity(8);
            for i in 0..100 {
                rev.is_denied(&format!("j{i}"), t(10)).await.unwrap();
                assert!(rev.cache_len() <= 8);
            }
        });
    }
}
