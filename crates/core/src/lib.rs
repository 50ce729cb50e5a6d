//! The heart of Tessera: session IDs, records, policy, the [`Store`] contract, the
//! [`Sessions`] engine, the in-process [`MemoryStore`], and (feature `testing`) the conformance
//! suite every store passes.
//!
//! Core knows no HTTP and no backend: the transports (`tessera-http`), the stateless tokens
//! (`tessera-token`) and the database stores build on it. Most applications add the `tessera`
//! crate, which re-exports this one.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use tessera_core::{Commit, MemoryStore, Policy, Sessions};
//!
//! let sessions = Sessions::new(MemoryStore::new())
//!     .with_policy(Policy::default().idle_timeout(Duration::from_secs(30 * 60)));
//!
//! let mut session = sessions.start();
//! session.update("cart", |cart: Option<Vec<String>>| {
//!     let mut cart = cart.unwrap_or_default();
//!     cart.push("tea".into());
//!     Some(cart)
//! })?;
//! session.login("alice");
//! assert_eq!(sessions.commit(&mut session).await?, Commit::Created);
//!
//! let token = session.id().unwrap().expose();
//! let session = sessions.load(&token).await?.expect("live");
//! assert_eq!(session.subject(), Some("alice"));
//! assert_eq!(sessions.list_subject("alice").await?.len(), 1);
//! # Ok::<_, tessera_core::Error>(()) }).unwrap();
//! ```
//!
//! # Design
//!
//! - **IDs are 256-bit secrets; stores see only their SHA-256** ([`SessionId`], [`Key`]). A
//!   store dump holds no usable session, and the key doubles as a non-secret *handle* for device
//!   lists and revocation.
//! - **Strict**: a malformed ID costs no store call; an unknown one is never adopted.
//! - **The engine is the one place policy is applied**: idle and absolute deadlines on every
//!   load, touch throttling (a read-mostly session writes at most once per
//!   [`Policy::touch_interval`]), a new ID at every privilege change, per-subject limits.
//! - **No lost updates**: a commit is a compare-and-swap on the record's version; on conflict
//!   the engine reloads and replays the request's change log, re-running
//!   [`Session::update`] closures on the fresh value. A deleted session is never resurrected.
//! - **Values are JSON text**, serialized once when set; records are stored in one versioned
//!   binary encoding ([`Record::encode`]).
//! - **Time is injected** ([`Clock`], [`ManualClock`]): tests move time, they never sleep.
//!
//! # Features
//!
//! - `testing`: scaffolding for the backend crates' tests and benches ([`testing`]): the store
//!   conformance suite ([`store_conformance!`]), `CountingStore` (counts calls, fails them on
//!   demand), the store-level workload runner, the fault relay and other network faults, scoped
//!   stores that clean up after their test, and TLS fixtures (a throwaway CA and server
//!   certificate).

mod engine;
mod error;
mod id;
mod memory;
mod policy;
mod record;
mod session;
mod store;
mod time;

#[cfg(feature = "testing")]
pub mod testing;

pub use engine::{Commit, Engine, Loading, Sessions};
pub use error::{BoxError, DataError, DecodeError, Error, StoreError};
pub use id::{ENCODED_LEN, ID_BYTES, Key, SessionId};
pub use memory::MemoryStore;
pub use policy::{LimitAction, Policy};
pub use record::{ClientInfo, Data, FORMAT_V1, Record};
pub use session::Session;
pub use store::{Capabilities, Store};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
