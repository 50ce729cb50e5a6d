//! Tessera's session store for Memcached: sessions shared by many app servers through a
//! cache that expires them by itself. For deployments that already run Memcached and can live
//! without device lists and "log out everywhere" (see below); otherwise prefer Redis.
//!
//! # Example
//!
//! ```no_run
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use tessera_core::{Commit, Sessions};
//! use tessera_memcached::{MemcachedOptions, MemcachedStore};
//!
//! let options = MemcachedOptions::default().key_prefix("shop").pool_size(8);
//! let store = MemcachedStore::connect_with("memcached://127.0.0.1:11211", options).await?;
//! let sessions = Sessions::new(store);
//!
//! let mut session = sessions.start();
//! session.insert("cart", &["tea"])?;
//! assert_eq!(sessions.commit(&mut session).await?, Commit::Created);
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! # Feature flags
//!
//! None.
//!
//! # What it does, and what it cannot do
//!
//! - One item per session, `PREFIX:KEYHEX`, holding
//!   [`Record::encode`](tessera_core::Record::encode).
//! - **create** is `add` (never overwrites: an existing key is
//!   [`Duplicate`](tessera_core::StoreError::Duplicate)).
//! - **update** is `gets`, then a check that the record is live at the passed `now` and at the
//!   expected version, then `cas` with the `gets` token. `EXISTS` (someone wrote in between)
//!   re-reads and checks again, at most 16 times, and then answers `Conflict` (the engine
//!   reloads and replays). **touch** is the same with the activity fields; it never revives and
//!   never moves past the absolute deadline. A touch that loses all 16 rounds to concurrent
//!   writes of a record that was live every time answers `true` without writing: those writes
//!   stamped the activity themselves.
//! - **Native expiry**: every write sets the item's expiry to the record's earlier deadline, as
//!   absolute Unix seconds rounded up. Memcached reads expiries of up to 30 days as *relative*
//!   seconds, so an absolute time is always larger than that; deadlines in that range (or 0,
//!   "never") are long past and are sent as "already expired". Memcached keeps expiry times as
//!   32-bit seconds, so a deadline after 2038-01-19 is capped there. `purge_expired` has
//!   nothing to do and returns 0.
//! - **rotate** is: `gets` the old record and check it; `add` the new one (`Duplicate` if the
//!   key exists); then delete the old one *only if unchanged* by `cas`-ing it, with the token
//!   from the first step, to an empty value that has already expired (the text protocol's
//!   `delete` takes no CAS token). If that `cas` fails the new item is deleted again, and the
//!   call answers `Conflict`/`NotFound` (or re-checks, when only a touch got in between). So the
//!   old record disappears atomically with its version check; for one round trip both keys
//!   exist, but nobody holds the new ID yet. If the connection dies between the steps, the call
//!   fails, the old session stays, and the new item is an orphan that expires at its deadline.
//! - **No subject index**: Memcached cannot list or scan keys, so
//!   [`list_subject`](tessera_core::Store::list_subject) and
//!   [`delete_subject`](tessera_core::Store::delete_subject) return
//!   [`StoreError::Unsupported`](tessera_core::StoreError::Unsupported), and
//!   [`Capabilities::subject_index`](tessera_core::Capabilities) is false: no device lists and
//!   no "log out everywhere" on this store.
//! - **Evictions**: Memcached is a cache; under memory pressure it evicts items, which logs
//!   those users out early. Size it so that it does not.
//!
//! # Faults
//!
//! Every operation, waiting for a pooled connection included, is bounded by
//! [`MemcachedOptions::operation_timeout`] (default 2 s): a dead or hung server gives
//! [`StoreError::Unavailable`](tessera_core::StoreError::Unavailable), never a hang. A connection
//! that failed or timed out is closed, never reused, and an I/O error closes every idle
//! connection too, so the store reconnects by itself when the server is back.
//!
//! # Client
//!
//! A small client of our own for the six text-protocol commands it needs (`gets`, `add`, `cas`,
//! `delete`, `version`) over a tokio `TcpStream`, with a bounded pool. The maintained async
//! crates do not fit: `async-memcached` offers no `gets`/`cas` in its text-protocol API and is
//! a single connection without a pool, and `memcache` is blocking. The subset is small, fully
//! specified, and each reply is parsed strictly (a reply that does not fit is an error and
//! closes the connection).

mod error;
mod options;
mod pool;
mod protocol;
mod store;

pub use error::MemcachedError;
pub use options::MemcachedOptions;
pub use store::MemcachedStore;
