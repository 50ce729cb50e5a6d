//! The connections: one writer, a few readers, each used by one blocking thread at a time.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};
use rusqlite::{Connection, OpenFlags};

use crate::error::SchemaError;
use crate::options::SqliteOptions;
use crate::schema;

/// Every write goes through `writer`, so writes never wait on SQLite's own file lock within
/// this process and a failed compare-and-swap can be told apart (conflict or gone) with no
/// other writer in between. Reads take any free reader: WAL mode lets them run while the
/// writer writes, and each sees the last committed state when its statement starts.
pub(crate) struct Pool {
    writer: Mutex<Connection>,
    readers: Box<[Mutex<Connection>]>,
    next: AtomicUsize,
}

impl Pool {
    /// Opens (creating if needed) the file at `path`, switches it to WAL, migrates it, and opens
    /// the readers. Blocking.
    pub(crate) fn open(path: &Path, options: &SqliteOptions) -> Result<Self, SchemaError> {
        let mut writer = Connection::open(path)?;
        configure(&writer, options)?;
        // WAL is a property of the file: set once here, every later connection inherits it.
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "sqlite session store could not switch to WAL mode");
        }
        // NORMAL in WAL mode: a commit survives a crash of the process, and the last
        // transactions before a power loss may be rolled back (never corrupted). FULL would
        // add an fsync to every commit.
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        schema::migrate(&mut writer)?;
        let readers = (0..options.pool_size)
            .map(|_| {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI;
                let reader = Connection::open_with_flags(path, flags)?;
                configure(&reader, options)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<_, SchemaError>>()?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
            next: AtomicUsize::new(0),
        })
    }

    /// A private in-memory database: one connection does everything (readers on another
    /// connection would not see it).
    pub(crate) fn in_memory(options: &SqliteOptions) -> Result<Self, SchemaError> {
        let mut writer = Connection::open_in_memory()?;
        configure(&writer, options)?;
        schema::migrate(&mut writer)?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers: Box::new([]),
            next: AtomicUsize::new(0),
        })
    }

    /// The writer connection (waits for it).
    pub(crate) fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock()
    }

    /// A reader connection: the first free one, else waits for one in turn (or the writer when
    /// there are no readers).
    pub(crate) fn reader(&self) -> MutexGuard<'_, Connection> {
        if self.readers.is_empty() {
            return self.writer.lock();
        }
        if let Some(free) = self.readers.iter().find_map(|r| r.try_lock()) {
            return free;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[turn].lock()
    }
}

fn configure(conn: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    // Room for every statement the store prepares, so none is ever re-parsed.
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}
