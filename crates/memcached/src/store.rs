//! The Memcached store: the [`Store`] operations on top of `gets`/`add`/`cas`/`delete`.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tessera_core::{Capabilities, Key, Record, Store, StoreError, Timestamp};

use crate::error::MemcachedError;
use crate::options::MemcachedOptions;
use crate::pool::Pool;
use crate::protocol::{Command, Item, Reply, StoreReply, Verb};

/// Memcached reads an expiry of up to 30 days as relative seconds and anything larger as an
/// absolute Unix time.
const RELATIVE_LIMIT: u64 = 30 * 24 * 60 * 60;
/// How often `update`, `touch` and `rotate` re-read and retry when `cas` answers `EXISTS`.
const CAS_RETRIES: usize = 16;

/// Sessions in Memcached. See the [crate docs](crate) for what it guarantees and what it
/// cannot do (no listing by subject).
pub struct MemcachedStore {
    pool: Pool,
    options: MemcachedOptions,
}

impl fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl MemcachedStore {
    /// Connects to `memcached://host[:port]` (port 11211 by default) with default
    /// [`MemcachedOptions`], and checks that the server answers.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use tessera_core::Sessions;
    /// use tessera_memcached::MemcachedStore;
    ///
    /// let sessions = Sessions::new(MemcachedStore::connect("memcached://127.0.0.1:11211").await?);
    /// # let _ = sessions;
    /// # Ok::<_, tessera_core::StoreError>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server does not answer within the connect timeout;
    /// [`StoreError::Backend`] with a [`MemcachedError`] for a malformed URL or bad options.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, MemcachedOptions::default()).await
    }

    /// Connects with the given options.
    ///
    /// # Errors
    ///
    /// As [`MemcachedStore::connect`].
    pub async fn connect_with(url: &str, options: MemcachedOptions) -> Result<Self, StoreError> {
        options.validate().map_err(StoreError::backend)?;
        let addr = parse_url(url).map_err(StoreError::backend)?;
        let store = Self {
            pool: Pool::new(addr, options.pool_size),
            options,
        };
        let reply = store
            .run_with(store.options.connect_timeout, Command::Version)
            .await?;
        match reply {
            Reply::Version => Ok(store),
            _ => Err(mismatch()),
        }
    }

    /// The options the store was built with.
    pub fn options(&self) -> &MemcachedOptions {
        &self.options
    }

    fn key(&self, key: &Key) -> String {
        let mut name = String::with_capacity(self.options.prefix.len() + 65);
        name.push_str(&self.options.prefix);
        name.push(':');
        for b in key.as_bytes() {
            name.push_str(&format!("{b:02x}"));
        }
        name
    }

    async fn run(&self, command: Command<'_>) -> Result<Reply, StoreError> {
        self.run_with(self.options.operation_timeout, command).await
    }

    /// Runs one command on a pooled connection, bounded by `limit` (waiting for a connection
    /// included). A read-only or idempotent command that fails on a connection that had been
    /// idle is retried once on a fresh one: after a server restart every idle connection is
    /// dead, and the first request should not pay for that.
    async fn run_with(&self, limit: Duration, command: Command<'_>) -> Result<Reply, StoreError> {
        let attempt = async {
            let mut retried = false;
            loop {
                let mut lease = self.pool.get().await?;
                let reused = lease.reused;
                match lease.conn.exec(command).await {
                    Ok(reply) => {
                        lease.release();
                        return Ok(reply);
                    }
                    Err(error) => {
                        drop(lease);
                        if error.is_unavailable() {
                            self.pool.clear_idle();
                            if reused && command.idempotent() && !retried {
                                retried = true;
                                continue;
                            }
                        }
                        return Err(error);
                    }
                }
            }
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) if error.is_unavailable() => Err(StoreError::unavailable(error)),
            Ok(Err(error)) => Err(StoreError::backend(error)),
            Err(_) => Err(StoreError::unavailable(MemcachedError::Timeout(limit))),
        }
    }

    async fn gets(&self, name: &str) -> Result<Option<Item>, StoreError> {
        match self.run(Command::Gets(name)).await? {
            Reply::Item(item) => Ok(item),
            _ => Err(mismatch()),
        }
    }

    async fn store(
        &self,
        verb: Verb,
        name: &str,
        exptime: i64,
        data: &[u8],
    ) -> Result<StoreReply, StoreError> {
        match self.run(Command::Store(verb, name, exptime, data)).await? {
            Reply::Stored(stored) => Ok(stored),
            _ => Err(mismatch()),
        }
    }

    async fn remove(&self, name: &str) -> Result<(), StoreError> {
        match self.run(Command::Delete(name)).await? {
            Reply::Deleted => Ok(()),
            _ => Err(mismatch()),
        }
    }

    /// The live record under `key` with its CAS token.
    async fn read(
        &self,
        name: &str,
        key: &Key,
        now: Timestamp,
    ) -> Result<Option<(Record, u64)>, StoreError> {
        let Some(item) = self.gets(name).await? else {
            return Ok(None);
        };
        let record = match Record::decode(&item.data) {
            Ok(record) if record.key == *key => record,
            Ok(_) => {
                tracing::warn!(key = %key.short(), "record stored under another key treated as absent");
                return Ok(None);
            }
            Err(error) => {
                tracing::warn!(key = %key.short(), %error, "undecodable session record treated as absent");
                return Ok(None);
            }
        };
        Ok(record.is_live(now).then_some((record, item.cas)))
    }
}

#[async_trait]
impl Store for MemcachedStore {
    fn name(&self) -> &'static str {
        "memcached"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(false, true, false)
    }

    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        let name = self.key(&record.key);
        let data = record.encode();
        match self
            .store(Verb::Add, &name, exptime(record.deadline()), &data)
            .await?
        {
            StoreReply::Stored => Ok(()),
            StoreReply::NotStored => Err(StoreError::Duplicate),
            _ => Err(mismatch()),
        }
    }

    async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let name = self.key(key);
        Ok(self.read(&name, key, now).await?.map(|(record, _)| record))
    }

    async fn update(
        &self,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let name = self.key(&record.key);
        let data = record.encode();
        for _ in 0..CAS_RETRIES {
            let (current, cas) = self
                .read(&name, &record.key, now)
                .await?
                .ok_or(StoreError::NotFound)?;
            if current.version != expected_version {
                return Err(StoreError::Conflict);
            }
            match self
                .store(Verb::Cas(cas), &name, exptime(record.deadline()), &data)
                .await?
            {
                StoreReply::Stored => return Ok(()),
                // Changed since `gets` (perhaps only touched): look again.
                StoreReply::Exists => continue,
                StoreReply::NotFound => return Err(StoreError::NotFound),
                StoreReply::NotStored => return Err(mismatch()),
            }
        }
        Err(StoreError::Conflict)
    }

    async fn touch(
        &self,
        key: &Key,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let name = self.key(key);
        for _ in 0..CAS_RETRIES {
            let Some((mut record, cas)) = self.read(&name, key, now).await? else {
                return Ok(false);
            };
            record.last_seen_at = now;
            record.idle_deadline = idle_deadline.min(record.absolute_deadline);
            match self
                .store(
                    Verb::Cas(cas),
                    &name,
                    exptime(record.deadline()),
                    &record.encode(),
                )
                .await?
            {
                StoreReply::Stored => return Ok(true),
                StoreReply::Exists => continue,
                StoreReply::NotFound => return Ok(false),
                StoreReply::NotStored => return Err(mismatch()),
            }
        }
        // Every attempt lost to a concurrent write, and the record was live each time: those
        // writes carry their own activity stamps, so the session is alive and recently used.
        Ok(true)
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.remove(&self.key(key)).await
    }

    async fn rotate(
        &self,
        old_key: &Key,
        expected_version: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let old_name = self.key(old_key);
        let new_name = self.key(&new.key);
        let data = new.encode();
        for _ in 0..CAS_RETRIES {
            let (current, cas) = self
                .read(&old_name, old_key, now)
                .await?
                .ok_or(StoreError::NotFound)?;
            if current.version != expected_version {
                return Err(StoreError::Conflict);
            }
            match self
                .store(Verb::Add, &new_name, exptime(new.deadline()), &data)
                .await?
            {
                StoreReply::Stored => {}
                StoreReply::NotStored => return Err(StoreError::Duplicate),
                _ => return Err(mismatch()),
            }
            // Delete the old record only if it is still what we checked: `cas` it to an empty
            // value that has already expired (the text protocol's `delete` takes no CAS token).
            let outcome = self.store(Verb::Cas(cas), &old_name, EXPIRED, b"").await;
            let error = match outcome {
                Ok(StoreReply::Stored) => return Ok(()),
                Ok(StoreReply::Exists) => None,
                Ok(StoreReply::NotFound) => Some(StoreError::NotFound),
                Ok(StoreReply::NotStored) => Some(mismatch()),
                Err(error) => Some(error),
            };
            // The new key was never handed out: take it back before answering or retrying.
            if let Err(undo) = self.remove(&new_name).await {
                tracing::warn!(key = %new.key.short(), error = %undo, "could not undo a failed rotation");
                return Err(error.unwrap_or(undo));
            }
            if let Some(error) = error {
                return Err(error);
            }
        }
        Err(StoreError::Conflict)
    }

    async fn list_subject(
        &self,
        _subject: &str,
        _now: Timestamp,
    ) -> Result<Vec<Record>, StoreError> {
        Err(StoreError::Unsupported {
            store: "memcached",
            operation: "listing sessions by subject",
        })
    }

    async fn delete_subject(
        &self,
        _subject: &str,
        _except: Option<&Key>,
        _now: Timestamp,
    ) -> Result<u64, StoreError> {
        Err(StoreError::Unsupported {
            store: "memcached",
            operation: "deleting sessions by subject",
        })
    }

    async fn purge_expired(&self, _now: Timestamp, _limit: usize) -> Result<u64, StoreError> {
        // Memcached drops each item at its expiry time by itself.
        Ok(0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self.run(Command::Version).await? {
            Reply::Version => Ok(()),
            _ => Err(mismatch()),
        }
    }
}

/// The expiry of an item that must be gone at once.
const EXPIRED: i64 = -1;

/// A deadline as a Memcached expiry: absolute Unix seconds, rounded up (Memcached must not drop
/// a record before its deadline; liveness itself is checked against the caller's `now`).
/// Deadlines within 30 days of the epoch would be read as *relative* seconds, and 0 as "never":
/// they are long past, so they become "already expired". Memcached keeps expiries as 32-bit
/// seconds, so later deadlines are capped at 2038-01-19.
fn exptime(deadline: Timestamp) -> i64 {
    let seconds = deadline.as_millis().div_ceil(1000);
    if seconds <= RELATIVE_LIMIT {
        EXPIRED
    } else {
        i64::try_from(seconds.min(i32::MAX as u64)).unwrap_or(i64::from(i32::MAX))
    }
}

/// `memcached://host[:port]` (also `memcache://`) to `host:port`.
fn parse_url(url: &str) -> Result<String, MemcachedError> {
    let rest = url
        .strip_prefix("memcached://")
        .or_else(|| url.strip_prefix("memcache://"))
        .ok_or(MemcachedError::InvalidUrl)?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ', ',']) {
        return Err(MemcachedError::InvalidUrl);
    }
    let has_port = match host.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((head, port)) => !head.is_empty() && !port.contains(']') && !port.is_empty(),
        None => false,
    };
    if has_port {
        let port = host.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
        port.parse::<u16>()
            .map_err(|_| MemcachedError::InvalidUrl)?;
        Ok(host.to_owned())
    } else {
        Ok(format!("{host}:11211"))
    }
}

/// A reply of the wrong kind for the command sent (a bug, or not a Memcached server).
fn mismatch() -> StoreError {
    StoreError::backend(MemcachedError::Protocol("reply does not match the command"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_times_are_absolute_seconds_rounded_up() {
        assert_eq!(
            exptime(Timestamp::from_millis(1_700_000_000_001)),
            1_700_000_001
        );
        assert_eq!(
            exptime(Timestamp::from_millis(1_700_000_000_000)),
            1_700_000_000
        );
        // Would read as relative (or as "never" for 0): long past, so expired at once.
        assert_eq!(exptime(Timestamp::ZERO), EXPIRED);
        assert_eq!(
            exptime(Timestamp::from_millis(RELATIVE_LIMIT * 1000)),
            EXPIRED
        );
        assert_eq!(
            exptime(Timestamp::from_millis((RELATIVE_LIMIT + 1) * 1000)),
            (RELATIVE_LIMIT + 1) as i64
        );
        assert_eq!(
            exptime(Timestamp::from_millis(u64::MAX)),
            i64::from(i32::MAX)
        );
    }

    #[test]
    fn urls_name_one_server() {
        assert_eq!(
            parse_url("memcached://127.0.0.1:11211").unwrap(),
            "127.0.0.1:11211"
        );
        assert_eq!(parse_url("memcached://cache").unwrap(), "cache:11211");
        assert_eq!(parse_url("memcache://cache:99/").unwrap(), "cache:99");
        assert_eq!(parse_url("memcached://[::1]").unwrap(), "[::1]:11211");
        assert_eq!(parse_url("memcached://[::1]:7").unwrap(), "[::1]:7");
        for bad in [
            "redis://x:1",
            "memcached://",
            "memcached://a:b",
            "memcached://a:1,b:2",
            "memcached://u:p@a:1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
