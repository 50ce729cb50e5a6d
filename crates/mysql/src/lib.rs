//! A MySQL / MariaDB session store for Tessera, so that many app servers (or many `tessera
//! serve` instances) behind a load balancer share their sessions, with no sticky sessions.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tessera_core::{Commit, Sessions};
//! use tessera_mysql::{MySqlStore, Options};
//!
//! let store = MySqlStore::connect_with(
//!     "mysql://root@127.0.0.1:3306/app",
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
//! None. TLS to the server is always built in: the driver's `rustls-tls` with the *ring*
//! provider, the same stack as `tessera serve`'s HTTPS (no OpenSSL, no C build), chosen per
//! URL.
//!
//! # TLS
//!
//! Two URL parameters with the MySQL client's names (`ssl-mode`, `ssl-ca`; also spelled
//! `ssl_mode`, `ssl_ca`):
//!
//! | `ssl-mode` (any case) | TLS | certificate chain and host name |
//! |---|---|---|
//! | absent, `DISABLED` | no | |
//! | `PREFERRED` | if the server offers it, else plain TCP | verified |
//! | `REQUIRED` | required | verified |
//! | `VERIFY_IDENTITY` | required | verified |
//!
//! `ssl-ca=/path/ca.pem` names a PEM bundle of the CA certificates to trust (a managed
//! database's CA, or your own); it replaces the default roots, and is read and checked at
//! connect. Without it the trusted roots are the Mozilla set compiled in from
//! [`webpki-roots`](https://docs.rs/webpki-roots) (the driver's built-in roots): the same on
//! every machine, in a distroless or scratch container with no CA bundle too, with no files
//! read at start-up.
//!
//! ```no_run
//! # async fn run() -> Result<(), tessera_core::StoreError> {
//! let store = tessera_mysql::MySqlStore::connect(
//!     "mysql://app:pw@db.example.com/app?ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/tessera/db-ca.pem",
//! )
//! .await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! Where this differs from the MySQL client, it is stricter or explicit, never weaker:
//! - A certificate is verified whenever TLS is used: `PREFERRED` and `REQUIRED` verify the
//!   chain and host name too (the MySQL client only encrypts there), and `PREFERRED` falls
//!   back to plain TCP only when the server has no TLS at all (decided once, at connect),
//!   never when verification fails.
//! - With no `ssl-mode` the store does not use TLS (the MySQL client would prefer it): a
//!   server with a self-signed certificate (MariaDB 11.4+ makes one by itself) would
//!   otherwise turn a working plain connection into an error. Ask for TLS with `ssl-mode`.
//! - `VERIFY_CA` (chain without host name) is refused: the driver's way of skipping only the
//!   name check does not recognise rustls 0.23's error and would check the name anyway.
//! - With TLS the driver's `prefer_socket` is off, so a connection to a server on the same
//!   machine stays on TLS over TCP instead of moving to its Unix socket.
//! - Without `ssl-mode`, the driver's own parameters (`require_ssl=true`, ...) still apply;
//!   with it, they are replaced. Client certificates are not supported.
//!
//! A certificate the store refuses is a [`StoreError::Backend`] (retrying will not help), with
//! rustls's reason in the error chain (`invalid peer certificate: UnknownIssuer`, `... not valid
//! for name ...`). The driver builds its TLS configuration from the process's rustls provider,
//! so with TLS on the store installs ring's as the process default if none is installed yet.
//!
//! # Schema
//!
//! One InnoDB table (default `tessera_sessions`, see [`Options::table`]), created and migrated
//! by [`MySqlStore::migrate`] (run by `connect` unless [`Options::migrate_on_connect`] is
//! off). Its schema version is recorded in `tessera_schema_versions`, one row per table; a
//! table dropped by hand (to end every session at once) is created again by the next
//! `migrate`, whatever its row says.
//!
//! | column | type | |
//! |---|---|---|
//! | `session_key` | `VARBINARY(32)` primary key | the 32-byte [`Key`](tessera_core::Key) (never the session ID) |
//! | `subject` | `VARCHAR(255)` utf8mb4, binary collation, null, indexed | for device lists and "log out everywhere"; longer subjects are refused ([`RecordError::SubjectTooLong`]) |
//! | `last_seen_at`, `idle_deadline`, `absolute_deadline` | `BIGINT UNSIGNED` | ms since the epoch |
//! | `expires_at` | `BIGINT UNSIGNED`, indexed | `min(idle_deadline, absolute_deadline)` |
//! | `version` | `BIGINT UNSIGNED` | the record's version, for compare-and-swap |
//! | `record` | `MEDIUMBLOB` | [`Record::encode`](tessera_core::Record::encode) |
//!
//! On load, the columns that [`touch`](tessera_core::Store::touch) changes without rewriting
//! the blob (`last_seen_at`, `idle_deadline`, and also `absolute_deadline` and `version`)
//! override the blob's copies. A blob that does not decode is logged and read as "no
//! session"; it never panics.
//!
//! # How each operation keeps the store contract
//!
//! Connections use `READ COMMITTED` (no gap locks) and report *matched* rows as affected
//! (`CLIENT_FOUND_ROWS`). Pooled connections are kept open while idle (up to 5 minutes) and
//! are not reset between calls, so each call is one round trip on a warm connection with a
//! cached prepared statement. The driver's URL parameters still apply; note its
//! `prefer_socket` (default true), which moves a TCP connection to the server's local Unix
//! socket when the server is on the same machine.
//! - `create`: a plain `INSERT`; a duplicate key (1062) is [`StoreError::Duplicate`], never
//!   an overwrite.
//! - `load`: by primary key, `expires_at > now`.
//! - `update`: `UPDATE ... WHERE session_key = ? AND version = ? AND expires_at > now`; when
//!   it matches no row, a second query on the same connection tells
//!   [`StoreError::Conflict`] (a live row with another version) from
//!   [`StoreError::NotFound`]. The success path is one round trip.
//! - `touch`: one conditional `UPDATE` that matches only a live row (an expired session is
//!   never revived) and sets the idle deadline to `LEAST(new, absolute_deadline)`.
//! - `rotate`: one transaction: CAS-`DELETE` of the old row, `INSERT` of the new one; a
//!   duplicate new key rolls both back. A deadlock victim is retried (up to 3 times).
//! - `list_subject` / `delete_subject`: through the index on `subject`.
//! - `purge_expired`: `DELETE ... WHERE expires_at <= now ORDER BY expires_at LIMIT n`, walking
//!   the expiry index from its oldest end.
//! - `count_live`: an index range count. `ping`: the protocol's ping.
//!
//! # Errors and timeouts
//!
//! Every call runs under [`Options::operation_timeout`] (waiting for a pooled connection
//! included); the first connection at start under [`Options::connect_timeout`]. I/O errors,
//! closed connections, and transient server errors (too many connections, shutdown, lock wait
//! timeout, deadlock, statement time limit) are [`StoreError::Unavailable`] (the HTTP layer
//! answers 503); any other server error is [`StoreError::Backend`]. Both keep the driver's
//! error as their source.
//!
//! # Why mysql_async
//!
//! [`mysql_async`](https://docs.rs/mysql_async) is the long-maintained, pure-Rust, tokio-based
//! MySQL/MariaDB client with its own pool and a per-connection prepared-statement cache. With
//! default features off and the pure-Rust deflate backend (`minimal-rust`) it needs no C
//! toolchain and compiles less than `sqlx`'s MySQL driver (which brings `sqlx-core`, its
//! macros and an RSA implementation); we write our SQL by hand anyway, so `sqlx`'s query
//! checking would buy nothing here. CI builds the whole workspace on two cores, so the
//! smaller build matters.
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

pub use error::{ConfigError, RecordError};
pub use options::{DEFAULT_TABLE, MAX_TABLE_NAME, Options};
pub use schema::{SCHEMA_TABLE, SCHEMA_VERSION};
pub use store::{MAX_SUBJECT_CHARS, MySqlStore};
