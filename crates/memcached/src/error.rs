//! What the Memcached client can fail with.

use std::io;
use std::time::Duration;

/// Why a Memcached operation or setup failed.
///
/// Travels inside [`StoreError`](tessera_core::StoreError): I/O errors and timeouts as
/// [`StoreError::Unavailable`](tessera_core::StoreError::Unavailable), the rest as
/// [`StoreError::Backend`](tessera_core::StoreError::Backend), so `source()` names the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemcachedError {
    /// The URL is not `memcached://host[:port]`.
    #[error("not a Memcached URL (expected memcached://host:port)")]
    InvalidUrl,
    /// The key prefix is longer than 180 bytes or holds whitespace or control characters,
    /// which Memcached keys cannot contain.
    #[error(
        "the Memcached key prefix must be at most 180 bytes without whitespace or control characters"
    )]
    InvalidPrefix,
    /// A pool size of zero.
    #[error("the Memcached pool size must be at least 1")]
    NoConnections,
    /// The connection failed.
    #[error("Memcached connection failed")]
    Io(#[from] io::Error),
    /// No answer (or no free connection) within the operation timeout.
    #[error("no answer from Memcached within {0:?}")]
    Timeout(Duration),
    /// The server said `ERROR`, `CLIENT_ERROR ...` or `SERVER_ERROR ...`.
    #[error("Memcached refused the command: {0}")]
    Server(String),
    /// The server's reply does not follow the text protocol.
    #[error("malformed reply from Memcached: {0}")]
    Protocol(&'static str),
}

impl MemcachedError {
    /// True when the server could not be reached or did not answer in time.
    pub(crate) fn is_unavailable(&self) -> bool {
        matches!(self, Self::Io(_) | Self::Timeout(_))
    }
}
