//! Settings for a [`MemcachedStore`](crate::MemcachedStore).

use std::time::Duration;

use crate::error::MemcachedError;

/// How a [`MemcachedStore`](crate::MemcachedStore) names its keys and talks to the server.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tessera_memcached::MemcachedOptions;
///
/// let options = MemcachedOptions::default()
///     .key_prefix("shop")
///     .pool_size(8)
///     .operation_timeout(Duration::from_millis(500));
/// assert_eq!(options.prefix(), "shop");
/// ```
#[derive(Clone, Debug)]
pub struct MemcachedOptions {
    pub(crate) prefix: String,
    pub(crate) pool_size: usize,
    pub(crate) operation_timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

impl Default for MemcachedOptions {
    /// Prefix `tessera`, up to 16 connections, 2 s per operation, 2 s to connect.
    fn default() -> Self {
        Self {
            prefix: "tessera".to_owned(),
            pool_size: 16,
            operation_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

impl MemcachedOptions {
    /// The start of every key (`PREFIX:KEYHEX`), so several applications can share one server.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The most connections open at once; a request waits (within the operation timeout) for
    /// a free one beyond that.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// The longest one store operation may take, waiting for a connection included; past it
    /// the operation fails with [`StoreError::Unavailable`](tessera_core::StoreError).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The longest opening one connection may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), MemcachedError> {
        if self.prefix.len() > 180
            || self
                .prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(MemcachedError::InvalidPrefix);
        }
        if self.pool_size == 0 {
            return Err(MemcachedError::NoConnections);
        }
        Ok(())
    }
}
