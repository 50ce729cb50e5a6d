//! The in-process store: sharded, with an expiry index and a bound on its size.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};

use crate::error::StoreError;
use crate::id::Key;
use crate::record::Record;
use crate::store::{Capabilities, Store};
use crate::time::Timestamp;

/// Sessions kept in this process's memory.
///
/// For one process (tests, development, single-instance apps): nothing survives a restart and
/// nothing is shared between instances; use a database store for that.
///
/// How it keeps the [`Store`] contract cheaply:
/// - **Sharded**: records are spread over independent locks by key, so requests on different
///   sessions do not wait for each other.
/// - **Compact**: each record is kept encoded ([`Record::encode`]), with the fields that change
///   on every touch kept beside it, about 450 bytes per session with a 200-byte payload
///   (`BENCHMARKS.md`).
/// - **Expiry index**: each shard keeps its records ordered by deadline, so
///   [`purge_expired`](Store::purge_expired) costs O(expired), not O(all). Expired records
///   never load, purged or not; [`Sessions::spawn_purger`](crate::Sessions::spawn_purger)
///   frees their memory in the background.
/// - **Bounded**: with [`MemoryStore::with_capacity_limit`], a shard that is full when a
///   session is created first drops its expired records and then, if still full, *evicts the
///   session closest to its deadline* (the least recently active one, in practice), like a
///   cache. Creating a session therefore never fails for lack of room, and the process never
///   grows past the bound; the evicted user sees an early idle timeout.
/// - **Subject index**: a map from subject to keys for device lists and "log out everywhere",
///   kept in step with creates, rotations and deletions.
///
/// # Example
///
/// ```
/// use tessera_core::{MemoryStore, Sessions};
///
/// let sessions = Sessions::new(MemoryStore::new().with_capacity_limit(100_000));
/// # let _ = sessions;
/// ```
pub struct MemoryStore {
    shards: Box<[RwLock<Shard>]>,
    subjects: Box<[Mutex<SubjectIndex>]>,
    shard_capacity: usize,
}

/// Subject → keys of its sessions (may hold keys of records since deleted; pruned on use).
type SubjectIndex = HashMap<Arc<str>, Vec<Key>>;

#[derive(Default)]
struct Shard {
    records: HashMap<Key, Entry, KeyHasher>,
    /// Every record's (deadline, key), oldest first.
    expiry: BTreeSet<(Timestamp, Key)>,
}

/// A stored record: the encoded bytes plus the fields that change without a full rewrite.
struct Entry {
    blob: Box<[u8]>,
    last_seen_at: Timestamp,
    idle_deadline: Timestamp,
    absolute_deadline: Timestamp,
    version: u64,
}

impl Entry {
    fn new(record: &Record) -> Self {
        Self {
            blob: record.encode().into_boxed_slice(),
            last_seen_at: record.last_seen_at,
            idle_deadline: record.idle_deadline,
            absolute_deadline: record.absolute_deadline,
            version: record.version,
        }
    }

    fn deadline(&self) -> Timestamp {
        self.idle_deadline.min(self.absolute_deadline)
    }

    fn is_live(&self, now: Timestamp) -> bool {
        now < self.deadline()
    }

    fn decode(&self, key: &Key) -> Option<Record> {
        match Record::decode(&self.blob) {
            Ok(mut record) => {
                record.last_seen_at = self.last_seen_at;
                record.idle_deadline = self.idle_deadline;
                record.absolute_deadline = self.absolute_deadline;
                record.version = self.version;
                Some(record)
            }
            Err(error) => {
                tracing::error!(session = %key.short(), %error, "undecodable session record ignored");
                None
            }
        }
    }

    fn subject(&self) -> Option<Arc<str>> {
        Record::decode(&self.blob).ok().and_then(|r| r.subject)
    }
}

impl Shard {
    fn insert(&mut self, key: Key, entry: Entry) {
        self.expiry.insert((entry.deadline(), key));
        if let Some(old) = self.records.insert(key, entry) {
            self.expiry.remove(&(old.deadline(), key));
        }
    }

    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.records.remove(key)?;
        self.expiry.remove(&(entry.deadline(), *key));
        Some(entry)
    }

    fn live(&self, key: &Key, now: Timestamp) -> Option<&Entry> {
        self.records.get(key).filter(|e| e.is_live(now))
    }

    /// Removes up to `limit` records dead at `now`; returns their keys and subjects.
    fn purge(&mut self, now: Timestamp, limit: usize) -> Vec<(Key, Option<Arc<str>>)> {
        let mut purged = Vec::new();
        while purged.len() < limit {
            let Some(&(deadline, key)) = self.expiry.first() else {
                break;
            };
            if deadline > now {
                break;
            }
            self.expiry.pop_first();
            if let Some(entry) = self.records.remove(&key) {
                purged.push((key, entry.subject()));
            }
        }
        purged
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

const SHARDS: usize = 64;

impl MemoryStore {
    /// An empty, unbounded store.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            subjects: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_capacity: usize::MAX,
        }
    }

    /// Bounds the store to about `max_sessions` records (each of its 64 shards holds at most
    /// `max_sessions / 64`, rounded up). See the type's docs for what happens at the bound.
    pub fn with_capacity_limit(mut self, max_sessions: usize) -> Self {
        self.shard_capacity = max_sessions.div_ceil(SHARDS).max(1);
        self
    }

    /// How many records are held, live or not yet purged.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().records.len()).sum()
    }

    /// Whether no records are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &Key) -> &RwLock<Shard> {
        &self.shards[usize::from(key.as_bytes()[0]) % SHARDS]
    }

    fn subjects(&self, subject: &str) -> &Mutex<SubjectIndex> {
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(subject.as_bytes());
        &self.subjects[(hasher.finish() % SHARDS as u64) as usize]
    }

    fn index_subject(&self, subject: &Arc<str>, key: Key) {
        let mut map = self.subjects(subject).lock();
        let keys = map.entry(subject.clone()).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }

    fn unindex_subject(&self, subject: &str, key: &Key) {
        let mut map = self.subjects(subject).lock();
        if let Some(keys) = map.get_mut(subject) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                map.remove(subject);
            }
        }
    }

    /// Makes room in a full shard: expired records first, then the one nearest its deadline.
    fn make_room(&self, shard: &mut Shard, now: Timestamp) {
        if shard.records.len() < self.shard_capacity {
            return;
        }
        let over = shard.records.len() + 1 - self.shard_capacity;
        let mut dropped = shard.purge(now, over);
        if dropped.len() < over {
            dropped.extend(shard.purge(Timestamp::from_millis(u64::MAX), over - dropped.len()));
            tracing::warn!(
                capacity = self.shard_capacity * SHARDS,
                "memory store full: evicted the least recently active session"
            );
        }
        for (key, subject) in dropped {
            if let Some(subject) = subject {
                self.unindex_subject(&subject, &key);
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::FULL
    }

    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        {
            let mut shard = self.shard(&record.key).write();
            if shard.records.contains_key(&record.key) {
                return Err(StoreError::Duplicate);
            }
            self.make_room(&mut shard, record.last_seen_at);
            shard.insert(record.key, Entry::new(record));
        }
        if let Some(subject) = &record.subject {
            self.index_subject(subject, record.key);
        }
        Ok(())
    }

    async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let shard = self.shard(key).read();
        Ok(shard.live(key, now).and_then(|e| e.decode(key)))
    }

    async fn update(
        &self,
        record: &Record,
        expected: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let old_subject = {
            let mut shard = self.shard(&record.key).write();
            let entry = shard.live(&record.key, now).ok_or(StoreError::NotFound)?;
            if entry.version != expected {
                return Err(StoreError::Conflict);
            }
            let old_subject = entry.subject();
            shard.insert(record.key, Entry::new(record));
            old_subject
        };
        if old_subject != record.subject {
            if let Some(old) = old_subject {
                self.unindex_subject(&old, &record.key);
            }
            if let Some(new) = &record.subject {
                self.index_subject(new, record.key);
            }
        }
        Ok(())
    }

    async fn touch(
        &self,
        key: &Key,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut guard = self.shard(key).write();
        let shard = &mut *guard;
        let Some(entry) = shard.records.get_mut(key).filter(|e| e.is_live(now)) else {
            return Ok(false);
        };
        shard.expiry.remove(&(entry.deadline(), *key));
        entry.last_seen_at = now;
        entry.idle_deadline = idle_deadline.min(entry.absolute_deadline);
        shard.expiry.insert((entry.deadline(), *key));
        Ok(true)
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let removed = self.shard(key).write().remove(key);
        if let Some(subject) = removed.and_then(|e| e.subject()) {
            self.unindex_subject(&subject, key);
        }
        Ok(())
    }

    async fn rotate(
        &self,
        old_key: &Key,
        expected: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let old_subject = {
            let (old_index, new_index) = (
                usize::from(old_key.as_bytes()[0]) % SHARDS,
                usize::from(new.key.as_bytes()[0]) % SHARDS,
            );
            // Both shards are locked (in index order, so two rotations cannot deadlock) for the
            // whole step: no reader sees both keys or neither.
            let (mut first, second) = if old_index == new_index {
                (self.shards[old_index].write(), None)
            } else {
                let (lo, hi) = (old_index.min(new_index), old_index.max(new_index));
                let a = self.shards[lo].write();
                let b = self.shards[hi].write();
                if lo == old_index {
                    (a, Some(b))
                } else {
                    (b, Some(a))
                }
            };
            let entry = first.live(old_key, now).ok_or(StoreError::NotFound)?;
            if entry.version != expected {
                return Err(StoreError::Conflict);
            }
            let target = match second {
                Some(mut shard) => {
                    if shard.records.contains_key(&new.key) {
                        return Err(StoreError::Duplicate);
                    }
                    let old = first.remove(old_key).expect("checked above");
                    self.make_room(&mut shard, now);
                    shard.insert(new.key, Entry::new(new));
                    old
                }
                None => {
                    if first.records.contains_key(&new.key) {
                        return Err(StoreError::Duplicate);
                    }
                    let old = first.remove(old_key).expect("checked above");
                    first.insert(new.key, Entry::new(new));
                    old
                }
            };
            target.subject()
        };
        if let Some(old) = old_subject {
            self.unindex_subject(&old, old_key);
        }
        if let Some(subject) = &new.subject {
            self.index_subject(subject, new.key);
        }
        Ok(())
    }

    async fn list_subject(&self, subject: &str, now: Timestamp) -> Result<Vec<Record>, StoreError> {
        let keys = self
            .subjects(subject)
            .lock()
            .get(subject)
            .cloned()
            .unwrap_or_default();
        let mut records = Vec::with_capacity(keys.len());
        let mut stale = Vec::new();
        for key in keys {
            let found = {
                let shard = self.shard(&key).read();
                shard.live(&key, now).and_then(|e| e.decode(&key))
            };
            match found {
                Some(record) if record.subject.as_deref() == Some(subject) => records.push(record),
                _ => stale.push(key),
            }
        }
        for key in stale {
            self.unindex_subject(subject, &key);
        }
        Ok(records)
    }

    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&Key>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let keys = self
            .subjects(subject)
            .lock()
            .get(subject)
            .cloned()
            .unwrap_or_default();
        let mut removed = 0;
        for key in keys.iter().filter(|k| Some(*k) != except) {
            let mut shard = self.shard(key).write();
            let ours = shard
                .records
                .get(key)
                .is_some_and(|e| e.subject().as_deref() == Some(subject));
            if ours {
                let entry = shard.remove(key).expect("present");
                if entry.is_live(now) {
                    removed += 1;
                }
            }
            drop(shard);
            self.unindex_subject(subject, key);
        }
        Ok(removed)
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let mut total = 0usize;
        for shard in self.shards.iter() {
            if total >= limit {
                break;
            }
            let purged = shard.write().purge(now, limit - total);
            total += purged.len();
            for (key, subject) in purged {
                if let Some(subject) = subject {
                    self.unindex_subject(&subject, &key);
                }
            }
        }
        Ok(total as u64)
    }

    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        let mut live = 0usize;
        for shard in self.shards.iter() {
            let shard = shard.read();
            let dead = shard
                .expiry
                .range(..(now, Key::from_bytes([0xff; 32])))
                .count();
            live += shard.records.len() - dead.min(shard.records.len());
        }
        Ok(Some(live as u64))
    }
}

/// Hashes a [`Key`] by taking 8 of its bytes. Keys are SHA-256 outputs of server-generated IDs,
/// so they are already uniform, and no client can choose which keys get inserted (an unknown
/// ID is only ever looked up), so there is no hash-flooding risk to defend against.
#[derive(Default)]
struct KeyHashState(u64);

impl Hasher for KeyHashState {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]`'s Hash writes a length prefix (via write_usize) and then the bytes.
        if bytes.len() >= 16 {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[8..16]);
            self.0 = u64::from_le_bytes(word);
        } else {
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }
    }

    fn write_usize(&mut self, _: usize) {}
}

type KeyHasher = BuildHasherDefault<KeyHashState>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;
    use crate::record::tests::sample;

    fn record_at(deadline: u64) -> Record {
        let mut r = sample(SessionId::generate().key());
        r.subject = None;
        r.last_seen_at = Timestamp::from_millis(0);
        r.idle_deadline = Timestamp::from_millis(deadline);
        r.absolute_deadline = Timestamp::from_millis(deadline + 1000);
        r
    }

    #[tokio::test]
    async fn a_full_store_evicts_the_session_nearest_its_deadline() {
        // One record per shard: fill one shard and watch what the next create does.
        let store = MemoryStore::new().with_capacity_limit(SHARDS);
        let mut same_shard = Vec::new();
        while same_shard.len() < 3 {
            let r = record_at(100 + same_shard.len() as u64 * 100);
            if r.key.as_bytes()[0] as usize % SHARDS == 0 {
                same_shard.push(r);
            }
        }
        let now = Timestamp::from_millis(10);
        store.create(&same_shard[1]).await.unwrap();
        store.create(&same_shard[0]).await.unwrap();
        // Capacity 1: the victim is chosen among the records already there, before the insert.
        assert!(store.load(&same_shard[1].key, now).await.unwrap().is_none());
        assert!(store.load(&same_shard[0].key, now).await.unwrap().is_some());
        store.create(&same_shard[2]).await.unwrap();
        assert!(store.load(&same_shard[0].key, now).await.unwrap().is_none());
        assert!(store.load(&same_shard[2].key, now).await.unwrap().is_some());
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn a_full_store_drops_expired_sessions_before_live_ones() {
        let store = MemoryStore::new().with_capacity_limit(2 * SHARDS);
        let mut same_shard = Vec::new();
        while same_shard.len() < 3 {
            let r = record_at(if same_shard.is_empty() { 1000 } else { 50 });
            if r.key.as_bytes()[0] as usize % SHARDS == 7 {
                same_shard.push(r);
            }
        }
        // [0] lives until 1000, [1] and [2] die at 50; at time 60 [1] is dead.
        store.create(&same_shard[0]).await.unwrap();
        store.create(&same_shard[1]).await.unwrap();
        let mut third = same_shard[2].clone();
        third.last_seen_at = Timestamp::from_millis(60);
        third.idle_deadline = Timestamp::from_millis(2000);
        third.absolute_deadline = Timestamp::from_millis(3000);
        store.create(&third).await.unwrap();
        let now = Timestamp::from_millis(60);
        assert!(store.load(&same_shard[0].key, now).await.unwrap().is_some());
        assert!(store.load(&third.key, now).await.unwrap().is_some());
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn purge_visits_only_expired_entries() {
        let store = MemoryStore::new();
        for i in 0..100 {
            store
                .create(&record_at(if i < 10 { 5 } else { 1_000 }))
                .await
                .unwrap();
        }
        assert_eq!(
            store.count_live(Timestamp::from_millis(6)).await.unwrap(),
            Some(90)
        );
        assert_eq!(
            store
                .purge_expired(Timestamp::from_millis(6), 4)
                .await
                .unwrap(),
            4
        );
        assert_eq!(
            store
                .purge_expired(Timestamp::from_millis(6), 100)
                .await
                .unwrap(),
            6
        );
        assert_eq!(store.len(), 90);
    }
}
