//! How driver errors become [`StoreError`]s, and this crate's own configuration errors.

use deadpool_postgres::PoolError;
use tessera_core::StoreError;
use tokio_postgres::error::SqlState;

/// A setting or schema state that stops the store from starting. Returned inside
/// [`StoreError::Backend`] (retrying does not help).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The table name is not a plain lowercase identifier of at most
    /// [`MAX_TABLE_NAME`](crate::MAX_TABLE_NAME) characters.
    #[error("invalid table name {0:?}: use lowercase letters, digits and _, at most 48 characters")]
    InvalidTableName(String),
    /// The URL could not be parsed.
    #[error("invalid PostgreSQL URL")]
    InvalidUrl(#[source] tokio_postgres::Error),
    /// The table was migrated by a newer Tessera than this one.
    #[error("table {table} has schema version {found}; this build knows up to {known}")]
    NewerSchema {
        /// The table.
        table: String,
        /// The version recorded in the database.
        found: i32,
        /// The newest version this build can migrate to.
        known: i32,
    },
    /// `sslmode` is not one of `disable`, `prefer`, `require`, `verify-ca`, `verify-full`.
    #[error("unknown sslmode {0:?}: use disable, prefer, require, verify-ca or verify-full")]
    InvalidSslMode(String),
    /// The `sslrootcert` file could not be read or holds no usable PEM certificate.
    #[error("cannot load the CA certificates (sslrootcert) from {}", path.display())]
    RootCertificates {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS client configuration could not be built.
    #[error("cannot set up TLS")]
    Tls(#[source] rustls::Error),
    /// The pool could not be built.
    #[error("cannot build the connection pool")]
    Pool(#[source] deadpool_postgres::BuildError),
}

impl From<ConfigError> for StoreError {
    fn from(error: ConfigError) -> Self {
        StoreError::backend(error)
    }
}

/// The operation did not finish within the configured operation timeout.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL did not answer within {0:?}")]
pub(crate) struct TimedOut(pub(crate) std::time::Duration);

/// Maps a driver error: lost or refused connections, server shutdown and resource exhaustion
/// are [`StoreError::Unavailable`] (the caller answers 503 and may retry later); everything
/// else is [`StoreError::Backend`].
pub(crate) fn from_pg(error: tokio_postgres::Error) -> StoreError {
    if is_unavailable(&error) {
        StoreError::unavailable(error)
    } else {
        StoreError::backend(error)
    }
}

fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        // 08: connection exception; 53: insufficient resources (too many connections, disk
        // full, out of memory); 57P0x: the server is shutting down or cannot connect now.
        return code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0");
    }
    // No server answer at all: look for an I/O error (refused, reset, timed out) in the chain.
    // A TLS handshake refused by certificate verification also arrives as an I/O error, but
    // retrying cannot fix it: that one is a backend (configuration) error.
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return !io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>());
        }
        source = cause.source();
    }
    false
}

/// Maps a pool error: a timeout or a closed pool means unavailable; a connection that could not
/// be made is mapped like any driver error.
pub(crate) fn from_pool(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(error) => from_pg(error),
        PoolError::Timeout(_) | PoolError::Closed => StoreError::unavailable(error),
        other => StoreError::backend(other),
    }
}

/// True if `error` is a unique-key violation (a duplicate `INSERT`).
pub(crate) fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}
