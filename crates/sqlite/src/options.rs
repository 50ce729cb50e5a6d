//! How a [`SqliteStore`](crate::SqliteStore) opens its file.

use std::time::Duration;

/// Settings for [`SqliteStore::open_with`](crate::SqliteStore::open_with).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tessera_sqlite::SqliteOptions;
///
/// let options = SqliteOptions::default()
///     .pool_size(2)
///     .busy_timeout(Duration::from_secs(1));
/// assert_eq!(options.pool_size, 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// How many read-only connections serve loads and listings, beside the one connection that
    /// does every write. WAL mode lets readers run while the writer writes. `0` sends reads
    /// through the writer connection too (one connection in all). Default: 2. Measured on two
    /// cores (`BENCHMARKS.md`): separate readers served about 1.4x the loads of reads through
    /// the writer; 1, 2 and 4 readers did alike.
    pub pool_size: usize,
    /// How long a statement waits for a lock held by another process before it fails with
    /// [`StoreError::Unavailable`](tessera_core::StoreError::Unavailable). Default: 5 s.
    pub busy_timeout: Duration,
    /// The most writes the writer thread commits in one transaction (group commit: the writes
    /// already queued when it starts a transaction share it). `1` commits each write on its own.
    /// Default: 128. Measured in `BENCHMARKS.md` ("SQLite store").
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            pool_size: 2,
            busy_timeout: Duration::from_secs(5),
            max_batch: 128,
        }
    }
}

impl SqliteOptions {
    /// Sets [`SqliteOptions::pool_size`].
    pub fn pool_size(mut self, readers: usize) -> Self {
        self.pool_size = readers;
        self
    }

    /// Sets [`SqliteOptions::busy_timeout`].
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets [`SqliteOptions::max_batch`] (at least 1).
    pub fn max_batch(mut self, writes: usize) -> Self {
        self.max_batch = writes.max(1);
        self
    }
}
