//! The contract every session store keeps.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::id::Key;
use crate::record::Record;
use crate::time::Timestamp;

/// What a store can and cannot do, so callers (and the conformance suite) know what to expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// `list_subject` and `delete_subject` work (false: they return
    /// [`StoreError::Unsupported`]).
    pub subject_index: bool,
    /// The backend deletes expired records by itself (Redis, Memcached); `purge_expired` may
    /// then find nothing to do.
    pub native_expiry: bool,
    /// `count_live` returns a number.
    pub count: bool,
}

impl Capabilities {
    /// Everything supported, no native expiry (the SQL stores and the memory store).
    pub const FULL: Self = Self {
        subject_index: true,
        native_expiry: false,
        count: true,
    };

    /// Builds a capability set.
    pub const fn new(subject_index: bool, native_expiry: bool, count: bool) -> Self {
        Self {
            subject_index,
            native_expiry,
            count,
        }
    }
}

/// A place to keep session records, keyed by [`Key`].
///
/// Every backend gives these operations the same meaning, and proves it by passing the
/// conformance suite (`tessera_core::testing`, feature `testing`). A record is *live* at `now`
/// when `now < min(idle_deadline, absolute_deadline)`; a record that is not live is never
/// returned, updated or touched, whether or not the backend has removed it yet.
///
/// The trait is object-safe: the engine holds an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and errors ("memory", "sqlite", ...).
    fn name(&self) -> &'static str;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities {
        Capabilities::FULL
    }

    /// Inserts `record` if its key is absent.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] if the key exists (live or not yet purged): never an overwrite.
    async fn create(&self, record: &Record) -> Result<(), StoreError>;

    /// The live record under `key`, or `None` if it is absent or past either deadline.
    ///
    /// # Errors
    ///
    /// Only backend failures. A record that cannot be decoded is `None` (and logged).
    async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError>;

    /// [`Store::load`] answered at once, by a backend that never waits for it (the memory
    /// store): `Some` with what `load` would return, or `None` for "call `load`" (the default,
    /// and what every backend that does I/O answers). The engine asks this first, so an
    /// in-process store costs no boxed future per load. A wrapper that does not forward it
    /// stays correct: its loads take the async path.
    fn load_now(&self, _key: &Key, _now: Timestamp) -> Option<Result<Option<Record>, StoreError>> {
        None
    }

    /// Replaces the live record under `record.key` if its version is `expected_version`
    /// (compare-and-swap). The engine passes `record.version == expected_version + 1`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] if the version moved; [`StoreError::NotFound`] if the record is
    /// gone or expired. Never creates a record.
    async fn update(
        &self,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Records activity on a live record: sets `last_seen_at` to `now` and its idle deadline to
    /// `idle_deadline`, capped at the absolute deadline. Does not change the version.
    ///
    /// Returns false if the record is gone or expired (it is not revived).
    async fn touch(
        &self,
        key: &Key,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Removes the record; removing an absent one is not an error.
    async fn delete(&self, key: &Key) -> Result<(), StoreError>;

    /// Replaces the live record `old_key` (at `expected_version`) by `new`, which has a new key:
    /// the new key appears and the old one disappears as one step where the backend allows it,
    /// and the old key never loads again either way.
    ///
    /// # Errors
    ///
    /// As [`Store::update`] for the old record, and [`StoreError::Duplicate`] if the new key
    /// exists.
    async fn rotate(
        &self,
        old_key: &Key,
        expected_version: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// The live records whose subject is `subject`, in no particular order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unsupported`] where [`Capabilities::subject_index`] is false.
    async fn list_subject(&self, subject: &str, now: Timestamp) -> Result<Vec<Record>, StoreError>;

    /// Deletes every record of `subject` except `except` ("log out everywhere", or everywhere else).
    /// Returns how many live records it removed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unsupported`] where [`Capabilities::subject_index`] is false.
    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&Key>,
        now: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Removes up to `limit` records that are dead at `now`; returns how many it removed.
    /// Callers loop until it returns less than `limit`.
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError>;

    /// How many live records there are, where [`Capabilities::count`] says the backend can
    /// tell cheaply; `None` otherwise.
    async fn count_live(&self, _now: Timestamp) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Checks that the backend answers (for readiness probes).
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<S: Store + ?Sized> Store for $ty {
            fn name(&self) -> &'static str { (**self).name() }
            fn capabilities(&self) -> Capabilities { (**self).capabilities() }
            async fn create(&self, record: &Record) -> Result<(), StoreError> {
                (**self).create(record).await
            }
            async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
                (**self).load(key, now).await
            }
            fn load_now(&self, key: &Key, now: Timestamp) -> Option<Result<Option<Record>, StoreError>> {
                (**self).load_now(key, now)
            }
            async fn update(&self, record: &Record, expected: u64, now: Timestamp) -> Result<(), StoreError> {
                (**self).update(record, expected, now).await
            }
            async fn touch(&self, key: &Key, idle: Timestamp, now: Timestamp) -> Result<bool, StoreError> {
                (**self).touch(key, idle, now).await
            }
            async fn delete(&self, key: &Key) -> Result<(), StoreError> {
                (**self).delete(key).await
            }
            async fn rotate(&self, old: &Key, expected: u64, new: &Record, now: Timestamp) -> Result<(), StoreError> {
                (**self).rotate(old, expected, new, now).await
            }
            async fn list_subject(&self, subject: &str, now: Timestamp) -> Result<Vec<Record>, StoreError> {
                (**self).list_subject(subject, now).await
            }
            async fn delete_subject(&self, subject: &str, except: Option<&Key>, now: Timestamp) -> Result<u64, StoreError> {
                (**self).delete_subject(subject, except, now).await
            }
            async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
                (**self).purge_expired(now, limit).await
            }
            async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
                (**self).count_live(now).await
            }
            async fn ping(&self) -> Result<(), StoreError> {
                (**self).ping().await
            }
        }
    )*};
}

forward_store!(Arc<S>, Box<S>);

/// For other wrappers in this crate that only forward (they implement `Deref` to the store).
#[cfg(feature = "testing")]
pub(crate) use forward_store;
