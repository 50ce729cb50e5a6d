//! How driver errors become [`StoreError`]s, and this crate's own errors.

use mysql_async::{DriverError, Error as MyError, IoError};
use tessera_core::StoreError;

/// A setting or schema state that stops the store from starting. Returned inside
/// [`StoreError::Backend`] (retrying does not help).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The table name is not a plain lowercase identifier of at most
    /// [`MAX_TABLE_NAME`](crate::MAX_TABLE_NAME) characters.
    #[error("invalid table name {0:?}: use lowercase letters, digits and _, at most 64 characters")]
    InvalidTableName(String),
    /// The URL could not be parsed.
    #[error("invalid MySQL URL")]
    InvalidUrl(#[source] mysql_async::UrlError),
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
    /// `ssl-mode` is not one of `DISABLED`, `PREFERRED`, `REQUIRED`, `VERIFY_CA`,
    /// `VERIFY_IDENTITY`.
    #[error(
        "unknown ssl-mode {0:?}: use DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY"
    )]
    InvalidSslMode(String),
    /// `ssl-mode=VERIFY_CA` (verify the chain but not the host name) is not available: the
    /// driver cannot skip only the name check with this rustls version.
    #[error(
        "ssl-mode=VERIFY_CA is not supported: use VERIFY_IDENTITY (or REQUIRED) with a certificate that names the host"
    )]
    VerifyCaUnsupported,
    /// The `ssl-ca` file could not be read or holds no PEM certificate.
    #[error("cannot load the CA certificates (ssl-ca) from {}", path.display())]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another process held the migration lock for too long.
    #[error("timed out waiting for the migration lock")]
    MigrationLock,
}

impl From<ConfigError> for StoreError {
    fn from(error: ConfigError) -> Self {
        StoreError::backend(error)
    }
}

/// A record this store cannot keep. Returned inside [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The `subject` column holds at most [`MAX_SUBJECT_CHARS`](crate::MAX_SUBJECT_CHARS)
    /// characters (so that it can be indexed).
    #[error("subject of {chars} characters is longer than the 255 this store indexes")]
    SubjectTooLong {
        /// The subject's length in characters.
        chars: usize,
    },
}

/// The operation did not finish within the configured timeout.
#[derive(Debug, thiserror::Error)]
#[error("MySQL did not answer within {0:?}")]
pub(crate) struct TimedOut(pub(crate) std::time::Duration);

/// Server error codes that mean "not now" rather than "never": too many connections (1040),
/// shutting down (1053), lock wait timeout (1205), deadlock (1213), connection killed
/// (1927, MariaDB), statement time limits (1969 MariaDB, 3024 MySQL), read-only while failing
/// over (1290, 1792).
const TRANSIENT_CODES: &[u16] = &[1040, 1053, 1205, 1213, 1290, 1792, 1927, 1969, 3024];

/// Server error code for a duplicate key.
const DUPLICATE_KEY: u16 = 1062;

/// Server error code for a deadlock (the transaction was rolled back and may be retried).
pub(crate) const DEADLOCK: u16 = 1213;

/// Maps a driver error: I/O errors, closed connections and pools, and transient server
/// errors are [`StoreError::Unavailable`]; everything else is [`StoreError::Backend`].
pub(crate) fn from_my(error: MyError) -> StoreError {
    let unavailable = match &error {
        // A refused certificate or a failed TLS set-up: configuration, retrying cannot help.
        MyError::Io(IoError::Tls(_)) => false,
        MyError::Io(IoError::Io(io)) => !io
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>()),
        MyError::Driver(DriverError::ConnectionClosed | DriverError::PoolDisconnected) => true,
        MyError::Server(server) => TRANSIENT_CODES.contains(&server.code),
        _ => false,
    };
    if unavailable {
        StoreError::unavailable(error)
    } else {
        StoreError::backend(error)
    }
}

/// True if `error` is a duplicate-key violation.
pub(crate) fn is_duplicate(error: &MyError) -> bool {
    server_code(error) == Some(DUPLICATE_KEY)
}

/// The server's error code, if the server answered with an error.
pub(crate) fn server_code(error: &MyError) -> Option<u16> {
    match error {
        MyError::Server(server) => Some(server.code),
        _ => None,
    }
}
