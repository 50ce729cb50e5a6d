//! What can go wrong before a store exists: bad URLs and options, and timeouts.

use std::time::Duration;

/// Why a [`RedisStore`](crate::RedisStore) could not be set up or an operation gave up.
///
/// These travel inside [`StoreError::Backend`](tessera_core::StoreError::Backend) (setup
/// mistakes) or [`StoreError::Unavailable`](tessera_core::StoreError::Unavailable)
/// (timeouts), so the `source()` chain names the cause. Messages never contain a URL, which
/// may hold a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The URL's scheme is not `redis://`, `rediss://`, `redis+unix://`, `unix://`,
    /// `redis+cluster://` or `rediss+cluster://`.
    #[error(
        "not a Redis URL (expected redis://, rediss://, redis+cluster:// or rediss+cluster://)"
    )]
    UnknownScheme,
    /// A `redis+cluster://` URL or a node list with no node in it.
    #[error("a Redis Cluster needs at least one node address")]
    NoClusterNodes,
    /// The key prefix contains `{` or `}`, which would change the cluster hash tag of every key.
    #[error("the Redis key prefix must not contain '{{' or '}}'")]
    InvalidPrefix,
    /// A pool size of zero.
    #[error("the Redis connection count must be at least 1")]
    NoConnections,
    /// The server did not answer within the operation timeout.
    #[error("no answer from Redis within {0:?}")]
    Timeout(Duration),
    /// A CA file was given ([`RedisOptions::ca_file`](crate::RedisOptions::ca_file) or
    /// `ssl_ca_certs=`) for a URL without TLS (`redis://`, `redis+cluster://`).
    #[error(
        "a CA file was given but the Redis URL does not use TLS (use rediss:// or rediss+cluster://)"
    )]
    CaFileWithoutTls,
    /// The CA file could not be read, or holds no PEM certificate.
    #[error("cannot load the Redis CA certificates from {}", path.display())]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A `rediss://...#insecure` URL: certificate verification cannot be turned off.
    #[error(
        "TLS certificate verification cannot be turned off (#insecure); give the CA with ssl_ca_certs= instead"
    )]
    InsecureTls,
    /// The server refused a command (its own words, e.g. `WRONGTYPE ...`, `OOM ...`).
    #[error("Redis refused a command: {0}")]
    Refused(String),
    /// A reply of a type the command never answers with.
    #[error("unexpected reply type from Redis")]
    MalformedReply,
    /// A subject longer than the store's value header can describe.
    #[error("subjects longer than {0} bytes cannot be stored in Redis")]
    SubjectTooLong(usize),
    /// A script answered with a value it never returns (a different script under the same
    /// SHA, or a server bug).
    #[error("unexpected reply {0} from a Tessera script")]
    UnexpectedReply(i64),
}
