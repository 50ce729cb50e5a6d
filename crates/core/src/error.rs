//! Error types, one per operation family.

use std::error::Error as StdError;

/// A boxed error from a backend driver, kept whole so its chain survives.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What a [`Store`](crate::Store) operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `create` found the key already present. Nothing was overwritten.
    #[error("a session with this key already exists")]
    Duplicate,
    /// `update` or `rotate` found a different version than expected.
    #[error("the session changed since it was loaded")]
    Conflict,
    /// `update` or `rotate` found no live record.
    #[error("the session no longer exists")]
    NotFound,
    /// The backend cannot do this operation at all (for example, listing by subject on
    /// Memcached).
    #[error("{operation} is not supported by the {store} store")]
    Unsupported {
        /// The store's name.
        store: &'static str,
        /// The operation asked for.
        operation: &'static str,
    },
    /// The backend is unreachable, timed out or refused: the request must fail (503), and may
    /// succeed later.
    #[error("the session store is unavailable")]
    Unavailable(#[source] BoxError),
    /// The backend answered with an error that retrying will not fix.
    #[error("the session store failed")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// Wraps a driver error that means "unreachable or timed out".
    pub fn unavailable(error: impl Into<BoxError>) -> Self {
        Self::Unavailable(error.into())
    }

    /// Wraps any other driver error.
    pub fn backend(error: impl Into<BoxError>) -> Self {
        Self::Backend(error.into())
    }

    /// True for the errors that mean the store could not be reached or used at all
    /// ([`StoreError::Unavailable`] and [`StoreError::Backend`]).
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Backend(_))
    }
}

/// Why an encoded record could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty record")]
    Empty,
    /// A format byte this version does not know.
    #[error("unknown record format {0}")]
    UnknownFormat(u8),
    /// The bytes do not follow the format.
    #[error("malformed record")]
    Malformed(#[source] postcard::Error),
    /// Bytes after the end of the record.
    #[error("trailing bytes after the record")]
    TrailingBytes,
    /// The same data key twice.
    #[error("duplicate key in session data")]
    DuplicateDataKey,
    /// A data value that is not JSON.
    #[error("session data value is not JSON")]
    Value(#[source] serde_json::Error),
}

/// A value could not be turned into or read back from the session's JSON data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// `insert` or `update` was given a value that does not serialize to JSON.
    #[error("cannot serialize the value for session key {key:?}")]
    Serialize {
        /// The data key.
        key: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The stored value does not deserialize into the type asked for.
    #[error("session key {key:?} does not hold the type asked for")]
    Deserialize {
        /// The data key.
        key: String,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },
}

/// What the engine ([`Sessions`](crate::Sessions)) can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed. [`StoreError::is_outage`] tells whether this is a 503.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A data value could not be (de)serialized.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The session was destroyed, revoked or expired while this request was working on it; its
    /// changes were dropped.
    #[error("the session ended while the request was using it")]
    SessionEnded,
    /// Login refused: the subject already has the most sessions the policy allows.
    #[error("the subject has reached the session limit")]
    LimitReached,
    /// The session does not fit where it has to travel (a stateless token past the cookie size
    /// limit). The application keeps too much in the session; the client was sent nothing.
    #[error("the session needs {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The bytes the session would need.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The commit lost the compare-and-swap race more times than the policy allows.
    #[error("too much contention on one session; the commit gave up")]
    TooManyConflicts,
    /// The OS random number generator failed.
    #[error("the OS random number generator failed")]
    Random(#[source] getrandom::Error),
}

impl Error {
    /// True when the cause is a store outage (answer 503, never "no session").
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_outage())
    }
}
