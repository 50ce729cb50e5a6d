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
//! None. TLS to the server is always built in (rustls with the *ring* provider, the same
//! stack as `tessera serve`'s HTTPS; no OpenSSL, no C build) and chosen per URL.
//!
//! # TLS
//!
//! Two libpq parameters in the URL (`?sslmode=...&sslrootcert=...`) or key-value string:
//!
//! | `sslmode` | TLS | certificate chain | host name |
//! |---|---|---|---|
//! | absent, `disable` | no | | |
//! | `prefer` | if the server offers it, else plain TCP | verified | verified |
//! | `require` | required | verified | verified |
//! | `verify-ca` | required | verified | not checked |
//! | `verify-full` | required | verified | verified |
//!
//! `sslrootcert=/path/ca.pem` names a PEM bundle of the CA certificates to trust (a managed
//! database's CA, or your own); it replaces the default roots. Without it (or with
//! `sslrootcert=system`) the trusted roots are the Mozilla set compiled in from
//! [`webpki-roots`](https://docs.rs/webpki-roots): the same on every machine, in a
//! distroless or scratch container with no CA bundle too, with no files read at start-up;
//! a private CA is one `sslrootcert` away, so nothing is lost by not reading the system store.
//!
//! ```no_run
//! # async fn run() -> Result<(), tessera_core::StoreError> {
//! let store = tessera_postgres::PostgresStore::connect(
//!     "postgres://app@db.example.com/app?sslmode=verify-full&sslrootcert=/etc/tessera/db-ca.pem",
//! )
//! .await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! Where this differs from libpq, it is stricter or explicit, never weaker:
//! - A certificate is verified whenever TLS is used: `prefer` and `require` verify the chain
//!   and host name too (libpq only encrypts there), and `prefer` falls back to plain TCP only
//!   when the server says it has no TLS, never when verification fails. A self-signed server
//!   certificate needs its CA (or itself) as `sslrootcert`.
//! - With no `sslmode` the store does not try TLS (libpq would `prefer`): Debian and Ubuntu
//!   servers enable TLS with a self-signed "snakeoil" certificate, which verification would
//!   refuse, turning a working plain connection into an error. Ask for TLS with `sslmode`.
//! - `allow` is refused, as is any unknown mode. Client certificates (`sslcert`, `sslkey`) and
//!   channel binding (`channel_binding=require`) are not supported.
//!
//! A certificate the store refuses is a [`StoreError::Backend`] (retrying will not help), with
//! rustls's reason in the error chain (`invalid peer certificate: UnknownIssuer`, `... not valid
//! for name ...`); a server that cannot be reached is [`StoreError::Unavailable`].
//!
//! # Schema
//!
//! One table (default `tessera_sessions`, see [`Options::table`]), created and migrated by
//! [`PostgresStore::migrate`] (run by `connect` unless [`Options::migrate_on_connect`] is
//! off). Its schema version is recorded in `tessera_schema_versions`, one row per table; a
//! table dropped by hand (to end every session at once) is created again by the next
//! `migrate`, whatever its row says.
//!
//! | column | type | |
//! |---|---|---|
//! | `session_key` | `BYTEA` primary key | the 32-byte [`Key`](tessera_core::Key) (never the session ID) |
//! | `subject` | `TEXT` null, indexed | for device lists and "log out everywhere" |
//! | `last_seen_at`, `idle_deadline`, `absolute_deadline` | `BIGINT` | ms since the epoch |
//! | `expires_at` | `BIGINT` | `min(idle_deadline, absolute_deadline)`, the exact expiry |
//! | `version` | `BIGINT` | the record's version, for compare-and-swap |
//! | `record` | `BYTEA` | [`Record::encode`](tessera_core::Record::encode) |
//! | `expiry_slot` | `BIGINT`, generated, indexed | `expires_at / 300000`: the five-minute slot of the expiry |
//!
//! The table has fill factor 80, and its only indexes are the primary key, `expiry_slot` and
//! the partial index on `subject`. That is what makes an ordinary write (an update or a touch)
//! a HOT update: PostgreSQL writes the new row version on the same page and no index entry,
//! which it can do only when no indexed column changes and the page has room. Every write
//! moves `expires_at`, so it is not indexed; its slot changes only when the expiry crosses a
//! five-minute boundary (a session touched once a minute gets four HOT touches in five).
//! Liveness is always decided on the exact `expires_at`, never on the slot: the slot only
//! tells the purge where to look. Schema version 1 indexed `expires_at` itself, so every write
//! changed an index; [`PostgresStore::migrate`] brings a version 1 table to version 2 in place
//! (one table rewrite under the migration lock; every session is kept). Needs PostgreSQL 12
//! or later (generated columns).
//!
//! On load, the columns that [`touch`](tessera_core::Store::touch) changes without rewriting
//! the blob (`last_seen_at`, `idle_deadline`, and also `absolute_deadline` and `version`)
//! override the blob's copies. A blob that does not decode is logged and read as "no
//! session"; it never panics.
//!
//! # How each operation keeps the store contract
//!
//! Every operation is one statement, so one round trip and one implicit transaction (a
//! failed `update` adds a second, read-only one):
//! - `create`: a plain `INSERT`; a unique violation is [`StoreError::Duplicate`], never an
//!   overwrite.
//! - `load`: by primary key, `expires_at > now`.
//! - `update`: `UPDATE ... WHERE session_key = $1 AND version = $expected AND expires_at >
//!   now`, judged by the rows it changed. Only when it changed none does a second statement
//!   ask whether the row is live: live is [`StoreError::Conflict`] (another version), absent
//!   or dead is [`StoreError::NotFound`]. The row may change between the two, but a dead or
//!   deleted session never comes back, so the answer is one the compare-and-swap could have
//!   given at the second look.
//! - `touch`: one conditional `UPDATE` that matches only a live row (an expired session is
//!   never revived) and sets the idle deadline to `LEAST(new, absolute_deadline)`.
//! - `rotate`: a CTE that CAS-deletes the old row and inserts the new one only if the delete
//!   happened; a duplicate new key aborts the whole statement, so the old row stays.
//! - `list_subject` / `delete_subject`: through the partial index on `subject`.
//! - `purge_expired`: deletes at most `limit` rows with `expires_at <= now`, found through
//!   the `expiry_slot` index, oldest slot first (`expiry_slot <= now's slot`, then the exact
//!   `expires_at`), `FOR UPDATE SKIP LOCKED` so purgers on several instances do not block one
//!   another. Every row of an earlier slot is dead; besides its batch, a purge reads at most
//!   the live rows of now's own slot (those expiring within five minutes).
//! - `count_live`: `expires_at > now` over the slots from now's on. `ping`: `SELECT 1`.
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
mod tls;

pub use error::ConfigError;
pub use options::{DEFAULT_TABLE, MAX_TABLE_NAME, Options};
pub use schema::{SCHEMA_TABLE, SCHEMA_VERSION};
pub use store::PostgresStore;
