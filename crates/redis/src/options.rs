//! Settings for a [`RedisStore`](crate::RedisStore).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::RedisStoreError;

/// How a [`RedisStore`](crate::RedisStore) names its keys and talks to the server.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tessera_redis::RedisOptions;
///
/// let options = RedisOptions::default()
///     .key_prefix("shop")
///     .connections(2)
///     .operation_timeout(Duration::from_millis(500));
/// assert_eq!(options.prefix(), "shop");
/// ```
#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub(crate) prefix: String,
    pub(crate) connections: usize,
    pub(crate) operation_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) index_grace: Duration,
    pub(crate) ca_file: Option<PathBuf>,
}

impl Default for RedisOptions {
    /// Prefix `tessera`, one multiplexed connection, 2 s per operation, 2 s to connect,
    /// 5 minutes of index grace.
    fn default() -> Self {
        Self {
            prefix: "tessera".to_owned(),
            connections: 1,
            operation_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            index_grace: Duration::from_secs(5 * 60),
            ca_file: None,
        }
    }
}

impl RedisOptions {
    /// The start of every key name (`PREFIX:{...}`), so several applications can share one
    /// server. Must not contain `{` or `}` (checked at connect).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many multiplexed connections a standalone store opens and spreads requests over
    /// (default 1: one pipelined connection already carries many concurrent requests). A
    /// cluster store keeps one multiplexed connection per node and ignores this.
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// The longest one command may wait for its reply, including waiting for a reconnect; past
    /// it the operation fails with [`StoreError::Unavailable`](tessera_core::StoreError) and the
    /// connection it waited on is dropped (the next command opens a new one). Most operations
    /// are one command; the few that take more (a login that indexes the subject first) may
    /// take up to this long per command. Also the cluster driver's response timeout.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The longest one attempt to open a connection may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a subject-index entry is protected from lazy pruning after it was added. The
    /// index is written before the record it points to, so a fresh entry whose record is not
    /// there yet may belong to a create still in flight; it must outlast any operation timeout.
    pub fn index_grace(mut self, grace: Duration) -> Self {
        self.index_grace = grace;
        self
    }

    /// A PEM file of CA certificates to trust for `rediss://` (a private CA, or a managed
    /// service's), instead of the default roots (see [TLS](crate#tls)). The URL parameter
    /// `ssl_ca_certs=PATH` sets the same thing. Connecting without TLS with a CA file set is an
    /// error ([`RedisStoreError::CaFileWithoutTls`]), so a forgotten `s` in `rediss://` is
    /// noticed.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The CA file set with [`RedisOptions::ca_file`], if any.
    pub fn ca_file_path(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    pub(crate) fn validate(&self) -> Result<(), RedisStoreError> {
        if self.prefix.contains(['{', '}']) {
            return Err(RedisStoreError::InvalidPrefix);
        }
        if self.connections == 0 {
            return Err(RedisStoreError::NoConnections);
        }
        Ok(())
    }
}
