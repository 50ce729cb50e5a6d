//! Tessera's embedded session store: sessions in one SQLite file, the default of
//! `tessera serve`.
//!
//! [`SqliteStore`] implements [`tessera_core::Store`] and passes the store conformance suite.
//! It needs no server: one file (plus SQLite's `-wal` and `-shm` files beside it) holds every
//! session, and survives restarts. For several app instances on several machines use a shared
//! store (PostgreSQL, MySQL, Redis) instead.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use tessera_core::{Commit, Sessions};
//! use tessera_sqlite::SqliteStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path().join("sessions.db")).await?;
//! let sessions = Sessions::new(store);
//!
//! let mut session = sessions.start();
//! session.login("alice");
//! assert_eq!(sessions.commit(&mut session).await?, Commit::Created);
//! let token = session.id().unwrap().expose();
//! assert_eq!(sessions.load(&token).await?.unwrap().subject(), Some("alice"));
//! # Ok::<_, tessera_core::Error>(()) }).unwrap();
//! ```
//!
//! # Features
//!
//! None. SQLite itself is compiled in (rusqlite's `bundled` feature), so the store does not
//! depend on the system's SQLite version and needs no system library.
//!
//! # Design
//!
//! - **Driver: [`rusqlite`]**, the maintained, widely used synchronous binding, with SQLite
//!   compiled in. `sqlx` was not chosen: it adds a query layer and macros this store does not
//!   need, and its SQLite driver also ends up running each connection on a worker thread.
//! - **Blocking work off the executor, on threads of its own**: each connection is owned by a
//!   thread that takes jobs from a channel and answers on a oneshot. This was measured against
//!   `tokio::task::spawn_blocking` (`BENCHMARKS.md`, "SQLite store"): on the development
//!   machine a round trip through the blocking pool cost about 46 µs of CPU, a dedicated
//!   thread about 6.4 µs, the point SELECT itself about 5.5 µs.
//! - **WAL mode, one writer and a few readers** ([`SqliteOptions::pool_size`]). Readers run
//!   while the writer writes. All writes go through one connection, so they never fight over
//!   SQLite's file lock inside the process. `synchronous = NORMAL`: a commit survives a crash of
//!   the process; a power loss may lose the last few commits, never corrupt the file.
//! - **Group commit**: the writer thread runs every write already queued (up to 128) in one
//!   transaction, so concurrent requests share one WAL commit; a lone write runs alone, so
//!   nothing waits for company. A caller hears "done" only after its transaction committed; if
//!   it fails, every write in it fails with the error (an outage is
//!   [`StoreError::Unavailable`](tessera_core::StoreError::Unavailable)). Measured in
//!   `BENCHMARKS.md` ("SQLite store", concurrent commits).
//! - **Schema managed by the store**: a `tessera_schema` table records applied migrations;
//!   [`SqliteStore::open`] applies the missing ones in one transaction and refuses a file from a
//!   newer version ([`SchemaError::TooNew`]).
//! - **One table**, `tessera_sessions`, `WITHOUT ROWID`, keyed by the 32-byte key: `subject`
//!   (partial index), `last_seen_at`, `idle_deadline`, `absolute_deadline`, a generated
//!   `deadline` = the earlier of the two (indexed), `version`, and `record` = [`Record::encode`].
//!   On load, the columns a touch changes (`last_seen_at`, `idle_deadline`) and `version`
//!   override the blob's fields, so a touch never rewrites the blob.
//! - **Each operation is one statement where it can be**: create is a plain `INSERT` (the
//!   primary key refuses a duplicate; no SELECT first); update is
//!   `UPDATE ... WHERE key = ? AND version = ? AND deadline > now`; touch is one conditional
//!   `UPDATE` that never revives a dead row and caps the idle deadline at the absolute one;
//!   purge deletes a bounded batch found through the deadline index; rotate deletes the old row
//!   (at the expected version) and inserts the new one under one savepoint.
//! - **Damaged rows are no session**: a blob that does not decode is logged (with
//!   [`Key::short`](tessera_core::Key::short), never the whole key) and loads as `None`.
//! - **Errors**: a busy or locked database, a full disk or an unopenable file is
//!   [`StoreError::Unavailable`](tessera_core::StoreError::Unavailable) (the request fails with
//!   503); other SQLite errors are `Backend`. Sources are kept.
//!
//! [`Record::encode`]: tessera_core::Record::encode

mod error;
mod options;
mod pool;
mod schema;
mod store;

pub use error::SchemaError;
pub use options::SqliteOptions;
pub use schema::SCHEMA_VERSION;
pub use store::SqliteStore;
