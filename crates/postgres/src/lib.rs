//! A PostgreSQL session store for Tessera, so that many app servers (or many `tessera serve`
//! instances) behind a load balancer share their sessions, with no sticky sessions.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tessera_core::{Commit, Sessions};
//! use tessera_postgres::{Options, PostgresStore};
//!
//! let store = PostgresStore::connect_with(
//!     "postgres://postgres@127.0.0.1:5432/app",
//!     Options::default()
//!         .pool_size(32)
//!         .operation_timeout(Duration::from_secs(2))
//!         .table("sessions"),
//! )
//! .await?;
//! let sessions = Sessions::new(store);
//! let mut session = sessions.start();
//! session.login("alice");
//! assert_eq!(sessions.commit(&mut session).await?, Commit::Created);
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! None. TLS to the server is not built in yet: the store connects with `NoTls`, so a URL
//! with `sslmode=require` fails to connect (`prefer`, the default, falls back to plain TCP).
//! Run it over a trusted network, a Unix socket, or a TLS tunnel.
//!
//! # Schema
//!
//! One table (default `tessera_sessions`, see [`Options::table`]), created and migrated by
//! [`PostgresStore::migrate`] (run by `connect` unless [`Options::migrate_on_connect`] is
//! off). Its schema version is recorded in `tessera_schema_versions`, one row per table.
//!
//! | column | type | |
//! |---|---|---|
//! | `session_key` | `BYTEA` primary key | the 32-byte [`Key`](tessera_core::Key) (never the session ID) |
//! | `subject` | `TEXT` null, indexed | for device lists and "log out everywhere" |
//! | `last_seen_at`, `idle_deadline`, `absolute_deadline` | `BIGINT` | ms since the epoch |
//! | `expires_at` | `BIGINT`, indexed | `min(idle_deadline, absolute_deadline)` |
//! | `version` | `BIGINT` | the record's version, for compare-and-swap |
//! | `record` | `BYTEA` | [`Record::encode`](tessera_core::Record::encode) |
//!
//! On load, the columns that [`touch`](tessera_core::Store::touch) changes without rewriting
//! the blob (`last_seen_at`, `idle_deadline`, and also `absolute_deadline` and `version`)
//! override the blob's copies. A blob that does not decode is logged and read as "no
//! session"; it never panics.
//!
//! # How each operation keeps the store contract
//!
//! Every operation is one statement, so one round trip and one implicit transaction:
//! - `create`: a plain `INSERT`; a unique violation is [`StoreError::Duplicate`], never an
//!   overwrite.
//! - `load`: by primary key, `expires_at > now`.
//! - `update`: `UPDATE ... WHERE session_key = $1 AND version = $expected AND expires_at >
//!   now` in a CTE, with an `EXISTS` on the same snapshot that tells
//!   [`StoreError::Conflict`] (a live row with another version) from
//!   [`StoreError::NotFound`].
//! - `touch`: one conditional `UPDATE` that matches only a live row (an expired session is
//!   never revived) and sets the idle deadline to `LEAST(new, absolute_deadline)`.
//! - `rotate`: a CTE that CAS-deletes the old row and inserts the new one only if the delete
//!   happened; a duplicate new key aborts the whole statement, so the old row stays.
//! - `list_subject` / `delete_subject`: through the partial index on `subject`.
//! - `purge_expired`: deletes at most `limit` rows found through the `expires_at` index,
//!   oldest first, `FOR UPDATE SKIP LOCKED` so purgers on several instances do not block one
//!   another.
//! - `count_live`: an index range count. `ping`: `SELECT 1`.
//!
//! # Errors and timeouts
//!
//! Every call runs under [`Options::operation_timeout`] (waiting for a pooled connection
//! included); new connections under [`Options::connect_timeout`]. A refused or lost
//! connection, a pool or operation timeout, server shutdown (`57P0x`), connection errors
//! (`08xxx`) and resource exhaustion (`53xxx`) are [`StoreError::Unavailable`] (the HTTP layer
//! answers 503); any other server error is [`StoreError::Backend`]. Both keep the driver's
//! error as their source.
//!
//! # Why tokio-postgres and deadpool-postgres
//!
//! [`tokio-postgres`](https://docs.rs/tokio-postgres) is the maintained, pure-Rust async
//! PostgreSQL client underneath most of the ecosystem; it pipelines statements and caches
//! prepared statements per connection. [`deadpool-postgres`](https://docs.rs/deadpool-postgres)
//! is a small pool built for it, with wait/create/recycle timeouts and a per-connection
//! statement cache. Together they compile far less code than `sqlx` (no macros, no
//! query-checking machinery, no runtime abstraction), which matters because CI builds the
//! whole workspace on two cores; we write our SQL by hand anyway.
//!
//! [`StoreError::Duplicate`]: tessera_core::StoreError::Duplicate
//! [`StoreError::Conflict`]: tessera_core::StoreError::Conflict
//! [`StoreError::NotFound`]: tessera_core::StoreError::NotFound
//! [`StoreError::Unavailable`]: tessera_core::StoreError::Unavailable
//! [`StoreError::Backend`]: tessera_core::StoreError::Backend

mod error;
mod options;
mod schema;
mod store;

pub use error::ConfigError;
pub use options::{DEFAULT_TABLE, MAX_TABLE_NAME, Options};
pub use schema::{SCHEMA_TABLE, SCHEMA_VERSION};
pub use store::PostgresStore;
