//! The in-process store: sharded, with an expiry index and a bound on its size.

use std::collections::{BTreeMap, HashMap, btree_map};
use std::hash::Hasher;
use std::sync::Arc;

use async_trait::async_trait;
use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};

use crate::error::StoreError;
use crate::id::Key;
use crate::record::{Activity, Record};
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

/// One lock's worth of records.
///
/// The table holds only the entries: an entry's key is read from its own encoding (bytes 1..33
/// of every encoded record, see [`Record::encode`]), so the 32-byte key is kept once, not in a
/// separate map key. The expiry index holds (deadline, 8 bytes of the key) with a count, which
/// is enough to find the entries again: purging removes every entry with that hash *and* that
/// deadline, and any two such entries are dead at the same time anyway.
#[derive(Default)]
struct Shard {
    table: HashTable<Entry>,
    expiry: BTreeMap<(Timestamp, u64), u32>,
}

/// The hash of a key: 8 of its bytes. Keys are SHA-256 outputs of server-generated IDs, so they
/// are already uniform, and no client can choose which keys get inserted (an unknown ID is only
/// ever looked up), so there is no hash flooding to defend against. Bytes 8..16 are used because
/// byte 0 picks the shard.
fn hash_of(key: &[u8; 32]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&key[8..16]);
    u64::from_le_bytes(word)
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
        // A fresh allocation of exactly the encoded size (shrinking the encoder's Vec in place
        // would leave a hole behind every record).
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let blob = SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            record.encode_into(scratch);
            let blob = Box::<[u8]>::from(scratch.as_slice());
            // Keep a big record's buffer from staying allocated on this thread.
            if scratch.capacity() > 4096 {
                *scratch = Vec::new();
            }
            blob
        });
        debug_assert_eq!(&blob[1..33], record.key.as_bytes());
        Self {
            blob,
            last_seen_at: record.last_seen_at,
            idle_deadline: record.idle_deadline,
            absolute_deadline: record.absolute_deadline,
            version: record.version,
        }
    }

    fn key_bytes(&self) -> &[u8; 32] {
        self.blob[1..33]
            .try_into()
            .expect("an encoded record starts with its key")
    }

    fn key(&self) -> Key {
        Key::from_bytes(*self.key_bytes())
    }

    fn hash(&self) -> u64 {
        hash_of(self.key_bytes())
    }

    fn deadline(&self) -> Timestamp {
        self.idle_deadline.min(self.absolute_deadline)
    }

    fn is_live(&self, now: Timestamp) -> bool {
        now < self.deadline()
    }

    fn decode(&self) -> Option<Record> {
        let activity = Activity {
            last_seen_at: self.last_seen_at,
            idle_deadline: self.idle_deadline,
            absolute_deadline: self.absolute_deadline,
            version: self.version,
        };
        match Record::decode_own_with(&self.blob, activity) {
            Ok(record) => Some(record),
            Err(error) => {
                let key = self.key();
                tracing::error!(session = %key.short(), %error, "undecodable session record ignored");
                None
            }
        }
    }

    fn subject(&self) -> Option<Arc<str>> {
        self.subject_str().map(Arc::from)
    }

    /// The subject, read straight from the encoding (no decode of the rest).
    fn subject_str(&self) -> Option<&str> {
        crate::record::encoded_subject(&self.blob)
    }
}

impl Shard {
    fn len(&self) -> usize {
        self.table.len()
    }

    fn get(&self, key: &Key) -> Option<&Entry> {
        let bytes = key.as_bytes();
        self.table.find(hash_of(bytes), |e| e.key_bytes() == bytes)
    }

    fn contains(&self, key: &Key) -> bool {
        self.get(key).is_some()
    }

    fn live(&self, key: &Key, now: Timestamp) -> Option<&Entry> {
        self.get(key).filter(|e| e.is_live(now))
    }

    fn index(&mut self, deadline: Timestamp, hash: u64) {
        *self.expiry.entry((deadline, hash)).or_insert(0) += 1;
    }

    fn unindex(&mut self, deadline: Timestamp, hash: u64) {
        if let btree_map::Entry::Occupied(mut slot) = self.expiry.entry((deadline, hash)) {
            *slot.get_mut() -= 1;
            if *slot.get() == 0 {
                slot.remove();
            }
        }
    }

    /// Inserts or replaces the entry for `entry`'s key.
    fn insert(&mut self, entry: Entry) {
        let key = entry.key();
        self.remove(&key);
        let hash = entry.hash();
        self.index(entry.deadline(), hash);
        self.table.insert_unique(hash, entry, Entry::hash);
    }

    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let bytes = key.as_bytes();
        let hash = hash_of(bytes);
        let found = self
            .table
            .find_entry(hash, |e| e.key_bytes() == bytes)
            .ok()?;
        let (entry, _) = found.remove();
        self.unindex(entry.deadline(), hash);
        Some(entry)
    }

    /// Records activity on a live entry; false if it is gone or dead.
    fn touch(&mut self, key: &Key, idle_deadline: Timestamp, now: Timestamp) -> bool {
        let bytes = key.as_bytes();
        let hash = hash_of(bytes);
        let Some(entry) = self
            .table
            .find_mut(hash, |e| e.key_bytes() == bytes)
            .filter(|e| e.is_live(now))
        else {
            return false;
        };
        let old = entry.deadline();
        entry.last_seen_at = now;
        entry.idle_deadline = idle_deadline.min(entry.absolute_deadline);
        let new = entry.deadline();
        if old != new {
            self.unindex(old, hash);
            self.index(new, hash);
        }
        true
    }

    /// How many entries are dead at `now` (purged or not yet).
    fn dead(&self, now: Timestamp) -> usize {
        let dead: u64 = self
            .expiry
            .range(..=(now, u64::MAX))
            .map(|(_, &n)| u64::from(n))
            .sum();
        usize::try_from(dead).unwrap_or(usize::MAX)
    }

    /// Removes up to `limit` records dead at `now`, earliest deadline first; returns their keys
    /// and subjects.
    fn purge(&mut self, now: Timestamp, limit: usize) -> Vec<(Key, Option<Arc<str>>)> {
        let mut purged = Vec::new();
        while purged.len() < limit {
            let Some((&(deadline, hash), _)) = self.expiry.first_key_value() else {
                break;
            };
            if deadline > now {
                break;
            }
            let matches = |e: &Entry| e.hash() == hash && e.deadline() == deadline;
            match self.table.find_entry(hash, matches) {
                Ok(found) => {
                    let (entry, _) = found.remove();
                    self.unindex(deadline, hash);
                    purged.push((entry.key(), entry.subject()));
                }
                // The index is kept exactly in step with the table; an index entry without a
                // record would be a bug, and dropping it is the safe repair.
                Err(_) => {
                    self.expiry.remove(&(deadline, hash));
                }
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
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Whether no records are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn load_live(&self, key: &Key, now: Timestamp) -> Option<Record> {
        let shard = self.shard(key).read();
        shard.live(key, now).and_then(Entry::decode)
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

    /// Adds a key that cannot be in the index yet (a fresh key from a create or a rotation),
    /// without scanning the subject's list.
    fn index_new_key(&self, subject: &Arc<str>, key: Key) {
        let mut map = self.subjects(subject).lock();
        map.entry(subject.clone()).or_default().push(key);
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
        if shard.len() < self.shard_capacity {
            return;
        }
        let over = shard.len() + 1 - self.shard_capacity;
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
            if shard.contains(&record.key) {
                return Err(StoreError::Duplicate);
            }
            self.make_room(&mut shard, record.last_seen_at);
            shard.insert(Entry::new(record));
        }
        if let Some(subject) = &record.subject {
            self.index_new_key(subject, record.key);
        }
        Ok(())
    }

    async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        Ok(self.load_live(key, now))
    }

    fn load_now(&self, key: &Key, now: Timestamp) -> Option<Result<Option<Record>, StoreError>> {
        Some(Ok(self.load_live(key, now)))
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
            let changed = entry.subject_str() != record.subject.as_deref();
            let old_subject = if changed { entry.subject() } else { None };
            shard.insert(Entry::new(record));
            changed.then_some(old_subject)
        };
        if let Some(old_subject) = old_subject {
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
        Ok(self.shard(key).write().touch(key, idle_deadline, now))
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
                    if shard.contains(&new.key) {
                        return Err(StoreError::Duplicate);
                    }
                    let old = first.remove(old_key).expect("checked above");
                    self.make_room(&mut shard, now);
                    shard.insert(Entry::new(new));
                    old
                }
                None => {
                    if first.contains(&new.key) {
                        return Err(StoreError::Duplicate);
                    }
                    let old = first.remove(old_key).expect("checked above");
                    first.insert(Entry::new(new));
                    old
                }
            };
            target.subject()
        };
        if let Some(old) = old_subject {
            self.unindex_subject(&old, old_key);
        }
        if let Some(subject) = &new.subject {
            self.index_new_key(subject, new.key);
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
                shard.live(&key, now).and_then(Entry::decode)
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
            live += shard.len().saturating_sub(shard.dead(now));
        }
        Ok(Some(live as u64))
    }
}

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
    async fn keys_sharing_hash_bytes_are_kept_apart() {
        // Same shard byte and same hash bytes, different keys and deadlines.
        let store = MemoryStore::new();
        let mut a = record_at(100);
        let mut b = record_at(200);
        let mut bytes = [7u8; 32];
        a.key = Key::from_bytes(bytes);
        bytes[31] = 8;
        b.key = Key::from_bytes(bytes);
        store.create(&a).await.unwrap();
        store.create(&b).await.unwrap();
        let t = |ms| Timestamp::from_millis(ms);
        assert!(store.touch(&b.key, t(300), t(50)).await.unwrap());
        assert_eq!(store.count_live(t(150)).await.unwrap(), Some(1));
        assert_eq!(store.purge_expired(t(150), 10).await.unwrap(), 1);
        assert!(store.load(&a.key, t(10)).await.unwrap().is_none());
        assert_eq!(
            store
                .load(&b.key, t(150))
                .await
                .unwrap()
                .unwrap()
                .idle_deadline,
            t(300)
        );
        assert_eq!(store.purge_expired(t(300), 10).await.unwrap(), 1);
        assert!(store.is_empty());
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
