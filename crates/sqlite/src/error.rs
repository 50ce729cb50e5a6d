//! What opening the store can fail with, beyond what the [`Store`](tessera_core::Store)
//! operations report, and how SQLite errors map onto [`StoreError`].

use rusqlite::ffi;
use tessera_core::StoreError;

/// The database file's schema could not be brought to the version this build uses.
///
/// [`SqliteStore::open`](crate::SqliteStore::open) returns it inside
/// [`StoreError::Backend`]; find it with `source()` and `downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The file was migrated by a newer Tessera; this one refuses to touch it rather than guess.
    #[error(
        "the session database has schema version {found}; this build supports up to {supported}"
    )]
    TooNew {
        /// The version recorded in the file.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// SQLite failed while migrating.
    #[error("migrating the session database failed")]
    Sql(#[from] rusqlite::Error),
}

/// Maps a driver error: lock contention, a full disk and files that cannot be opened are
/// outages (503, may pass); the rest are backend failures.
pub(crate) fn store_error(error: rusqlite::Error) -> StoreError {
    if is_outage(&error) {
        StoreError::unavailable(error)
    } else {
        StoreError::backend(error)
    }
}

/// True for the errors that mean "the database cannot be used right now".
pub(crate) fn is_outage(error: &rusqlite::Error) -> bool {
    use ffi::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, SystemIoFailure};
    matches!(
        error.sqlite_error_code(),
        Some(DatabaseBusy | DatabaseLocked | CannotOpen | DiskFull | SystemIoFailure)
    )
}

/// True when `error` is a primary-key clash (the key exists).
pub(crate) fn is_duplicate(error: &rusqlite::Error) -> bool {
    error
        .sqlite_error()
        .is_some_and(|e| e.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// The thread that owns a connection is gone (it could not start) or dropped the job (it
/// panicked while running it).
#[derive(Debug, thiserror::Error)]
#[error("the sqlite session store's connection thread stopped")]
pub(crate) struct WorkerStopped;
