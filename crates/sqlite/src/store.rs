//! The SQLite implementation of the [`Store`] contract.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tessera_core::{Capabilities, Key, Record, Store, StoreError, Timestamp};

use crate::error::{is_duplicate, is_outage, store_error};
use crate::options::SqliteOptions;
use crate::pool::Pool;

/// Sessions in one SQLite file: the embedded default of `tessera serve`.
///
/// Cheap to clone (one `Arc`); clones share the connections. Each connection lives on a thread
/// of its own (one writer, [`SqliteOptions::pool_size`] readers) and every operation is sent to
/// one of them, so no SQLite call ever blocks the async executor. Opening runs on tokio's blocking
/// pool, so [`SqliteStore::open`] needs a tokio runtime; the operations need none.
///
/// See the [crate docs](crate) for the table layout and how each operation keeps the contract.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use tessera_core::Sessions;
/// use tessera_sqlite::SqliteStore;
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(dir.path().join("sessions.db")).await?;
/// let sessions = Sessions::new(store);
/// let mut session = sessions.start();
/// session.insert("theme", "dark")?;
/// sessions.commit(&mut session).await?;
/// # Ok::<_, tessera_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
    path: Option<Arc<Path>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database file at `path` with [`SqliteOptions::default`], creating it if it does
    /// not exist, switching it to WAL mode and migrating its schema to this version.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the file cannot be opened or is locked;
    /// [`StoreError::Backend`] when the schema cannot be migrated (the source is a
    /// [`SchemaError`](crate::SchemaError), for instance a file written by a newer version).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens the database file at `path` with the given options (see [`SqliteStore::open`]).
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path: PathBuf = path.as_ref().to_owned();
        let opened_path: Arc<Path> = Arc::from(path.as_path());
        let pool = tokio::task::spawn_blocking(move || Pool::open(&path, &options))
            .await
            .map_err(StoreError::backend)?
            .map_err(open_error)?;
        Ok(Self {
            pool: Arc::new(pool),
            path: Some(opened_path),
        })
    }

    /// A private database in memory, gone when the last clone is dropped (for tests and
    /// examples). One connection serves reads and writes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if SQLite cannot create it.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteOptions::default();
        let pool = tokio::task::spawn_blocking(move || Pool::in_memory(&options))
            .await
            .map_err(StoreError::backend)?
            .map_err(open_error)?;
        Ok(Self {
            pool: Arc::new(pool),
            path: None,
        })
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// Keeps the [`SchemaError`](crate::SchemaError) as the source either way; a locked or
/// unopenable file is an outage.
fn open_error(error: crate::SchemaError) -> StoreError {
    if matches!(&error, crate::SchemaError::Sql(e) if is_outage(e)) {
        StoreError::unavailable(error)
    } else {
        StoreError::backend(error)
    }
}

// Statements. `?now` is always compared with `deadline`, the earlier of the two deadlines:
// a row is live while `now < deadline`.
const INSERT: &str = "INSERT INTO tessera_sessions
    (key, subject, last_seen_at, idle_deadline, absolute_deadline, version, record)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const LOAD: &str = "SELECT record, last_seen_at, idle_deadline, version
    FROM tessera_sessions WHERE key = ?1 AND deadline > ?2";
const LIVE_VERSION: &str = "SELECT version FROM tessera_sessions WHERE key = ?1 AND deadline > ?2";
const UPDATE: &str = "UPDATE tessera_sessions
    SET subject = ?2, last_seen_at = ?3, idle_deadline = ?4, absolute_deadline = ?5,
        version = ?6, record = ?7
    WHERE key = ?1 AND version = ?8 AND deadline > ?9";
/// [`UPDATE`] for the common case where the subject did not change: it leaves the subject
/// index alone, which saves writing one index page per commit. Tried first; when it matches
/// nothing, the full statement runs.
const UPDATE_SAME_SUBJECT: &str = "UPDATE tessera_sessions
    SET last_seen_at = ?3, idle_deadline = ?4, absolute_deadline = ?5, version = ?6, record = ?7
    WHERE key = ?1 AND version = ?8 AND deadline > ?9 AND subject IS ?2";
const TOUCH: &str = "UPDATE tessera_sessions
    SET last_seen_at = ?3, idle_deadline = min(?2, absolute_deadline)
    WHERE key = ?1 AND deadline > ?3";
const DELETE: &str = "DELETE FROM tessera_sessions WHERE key = ?1";
const DELETE_VERSION: &str =
    "DELETE FROM tessera_sessions WHERE key = ?1 AND version = ?2 AND deadline > ?3";
const LIST_SUBJECT: &str = "SELECT record, last_seen_at, idle_deadline, version, key
    FROM tessera_sessions WHERE subject = ?1 AND deadline > ?2";
const DELETE_SUBJECT: &str = "DELETE FROM tessera_sessions
    WHERE subject = ?1 AND deadline > ?2 AND (?3 IS NULL OR key <> ?3)";
const PURGE: &str = "DELETE FROM tessera_sessions WHERE key IN (
    SELECT key FROM tessera_sessions WHERE deadline <= ?1 ORDER BY deadline LIMIT ?2)";
const COUNT_LIVE: &str = "SELECT count(*) FROM tessera_sessions WHERE deadline > ?1";

/// A timestamp as an SQLite integer. Times past `i64::MAX` ms (never, in practice; only a
/// saturated "no deadline") are kept as `i64::MAX`, which orders the same against any real `now`.
fn millis(t: Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

/// Reads back a column written by [`millis`]; `encoded` is the value in the record blob, which
/// is exact where the column saturated.
fn timestamp(column: i64, encoded: Timestamp) -> Timestamp {
    if column == i64::MAX && encoded.as_millis() >= i64::MAX as u64 {
        encoded
    } else {
        Timestamp::from_millis(u64::try_from(column).unwrap_or(0))
    }
}

/// Versions are compared only for equality, so the bit pattern is kept as it is.
fn version_column(version: u64) -> i64 {
    version as i64
}

/// The record in a row of `record, last_seen_at, idle_deadline, version`, with the columns a
/// touch changes taking precedence over the blob. A blob that does not decode (or belongs to
/// another key) is logged and treated as no session.
fn record_from_row(key: &Key, row: &Row<'_>) -> rusqlite::Result<Option<Record>> {
    let blob = row.get_ref(0)?.as_blob()?;
    let mut record = match Record::decode(blob) {
        Ok(record) if record.key == *key => record,
        Ok(_) => {
            tracing::error!(store = "sqlite", session = %key.short(), "session record stored under another key ignored");
            return Ok(None);
        }
        Err(error) => {
            tracing::error!(store = "sqlite", session = %key.short(), %error, "undecodable session record ignored");
            return Ok(None);
        }
    };
    record.last_seen_at = timestamp(row.get(1)?, record.last_seen_at);
    record.idle_deadline = timestamp(row.get(2)?, record.idle_deadline);
    record.version = row.get::<_, i64>(3)? as u64;
    Ok(Some(record))
}

/// After a compare-and-swap matched no row: `Conflict` if the record is live at another
/// version, `NotFound` if it is gone or dead.
fn cas_failure(conn: &Connection, key: &Key, now: i64) -> Result<StoreError, StoreError> {
    let live = conn
        .prepare_cached(LIVE_VERSION)
        .and_then(|mut s| {
            s.query_row(params![key.as_bytes(), now], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map_err(store_error)?;
    Ok(match live {
        Some(_) => StoreError::Conflict,
        None => StoreError::NotFound,
    })
}

fn insert(conn: &Connection, record: &Record, blob: &[u8]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(INSERT).map_err(store_error)?;
    let inserted = stmt.execute(params![
        record.key.as_bytes(),
        record.subject.as_deref(),
        millis(record.last_seen_at),
        millis(record.idle_deadline),
        millis(record.absolute_deadline),
        version_column(record.version),
        blob,
    ]);
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate(&e) => Err(StoreError::Duplicate),
        Err(e) => Err(store_error(e)),
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::FULL
    }

    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        let record = record.clone();
        self.pool
            .write(move |conn| {
                let blob = record.encode();
                insert(conn, &record, &blob)
            })
            .await
    }

    async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let key = *key;
        self.pool
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(LOAD).map_err(store_error)?;
                let found = stmt
                    .query_row(params![key.as_bytes(), millis(now)], |row| {
                        record_from_row(&key, row)
                    })
                    .optional()
                    .map_err(store_error)?;
                Ok(found.flatten())
            })
            .await
    }

    async fn update(
        &self,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let record = record.clone();
        self.pool
            .write(move |conn| {
                let blob = record.encode();
                let params = params![
                    record.key.as_bytes(),
                    record.subject.as_deref(),
                    millis(record.last_seen_at),
                    millis(record.idle_deadline),
                    millis(record.absolute_deadline),
                    version_column(record.version),
                    blob,
                    version_column(expected_version),
                    millis(now),
                ];
                let mut changed = 0;
                for sql in [UPDATE_SAME_SUBJECT, UPDATE] {
                    let mut stmt = conn.prepare_cached(sql).map_err(store_error)?;
                    changed = stmt.execute(params).map_err(store_error)?;
                    if changed == 1 {
                        break;
                    }
                }
                if changed == 1 {
                    Ok(())
                } else {
                    Err(cas_failure(conn, &record.key, millis(now))?)
                }
            })
            .await
    }

    async fn touch(
        &self,
        key: &Key,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let key = *key;
        self.pool
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(TOUCH).map_err(store_error)?;
                let changed = stmt
                    .execute(params![key.as_bytes(), millis(idle_deadline), millis(now)])
                    .map_err(store_error)?;
                Ok(changed == 1)
            })
            .await
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let key = *key;
        self.pool
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(DELETE).map_err(store_error)?;
                stmt.execute([key.as_bytes()]).map_err(store_error)?;
                Ok(())
            })
            .await
    }

    async fn rotate(
        &self,
        old_key: &Key,
        expected_version: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let old_key = *old_key;
        let new = new.clone();
        self.pool
            .write(move |conn| {
                let blob = new.encode();
                // Both steps under one savepoint (inside the writer's batch transaction, or its
                // own transaction when alone): no reader ever sees both keys or neither, and any
                // error below rolls the delete back (dropping `tx` without committing it).
                let tx = conn.savepoint().map_err(store_error)?;
                let removed = tx
                    .prepare_cached(DELETE_VERSION)
                    .and_then(|mut s| {
                        s.execute(params![
                            old_key.as_bytes(),
                            version_column(expected_version),
                            millis(now)
                        ])
                    })
                    .map_err(store_error)?;
                if removed != 1 {
                    return Err(cas_failure(&tx, &old_key, millis(now))?);
                }
                insert(&tx, &new, &blob)?;
                tx.commit().map_err(store_error)
            })
            .await
    }

    async fn list_subject(&self, subject: &str, now: Timestamp) -> Result<Vec<Record>, StoreError> {
        let subject = subject.to_owned();
        self.pool
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(LIST_SUBJECT).map_err(store_error)?;
                let mut rows = stmt
                    .query(params![subject, millis(now)])
                    .map_err(store_error)?;
                let mut records = Vec::new();
                while let Some(row) = rows.next().map_err(store_error)? {
                    let key_bytes: [u8; 32] = row.get(4).map_err(store_error)?;
                    if let Some(record) =
                        record_from_row(&Key::from_bytes(key_bytes), row).map_err(store_error)?
                    {
                        records.push(record);
                    }
                }
                Ok(records)
            })
            .await
    }

    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&Key>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let subject = subject.to_owned();
        let except = except.copied();
        self.pool
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(DELETE_SUBJECT).map_err(store_error)?;
                let removed = stmt
                    .execute(params![
                        subject,
                        millis(now),
                        except.as_ref().map(Key::as_bytes)
                    ])
                    .map_err(store_error)?;
                Ok(removed as u64)
            })
            .await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(PURGE).map_err(store_error)?;
                let removed = stmt
                    .execute(params![millis(now), limit])
                    .map_err(store_error)?;
                Ok(removed as u64)
            })
            .await
    }

    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        self.pool
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(COUNT_LIVE).map_err(store_error)?;
                let n: i64 = stmt
                    .query_row([millis(now)], |r| r.get(0))
                    .map_err(store_error)?;
                Ok(Some(u64::try_from(n).unwrap_or(0)))
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.pool
            .read(|conn| {
                conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                    .map_err(store_error)?;
                Ok(())
            })
            .await
    }
}
