//! Tessera's session store for Redis, standalone or Redis Cluster: many app servers (or many
//! `tessera serve` instances) share their sessions through it, so a load balancer needs no
//! sticky sessions.
//!
//! # Example
//!
//! ```no_run
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use tessera_core::{Commit, Sessions};
//! use tessera_redis::{RedisOptions, RedisStore};
//!
//! // One server, or `redis+cluster://10.0.0.1:7001,10.0.0.2:7001` for a cluster.
//! let options = RedisOptions::default()
//!     .key_prefix("shop")
//!     .operation_timeout(Duration::from_millis(500));
//! let store = RedisStore::connect_url_with("redis://127.0.0.1:6379", options).await?;
//! let sessions = Sessions::new(store);
//!
//! let mut session = sessions.start();
//! session.login("alice");
//! assert_eq!(sessions.commit(&mut session).await?, Commit::Created);
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! # Feature flags
//!
//! None. TLS is always built in: `tokio-rustls` with the *ring* provider and `webpki-roots`
//! (and for a cluster the driver's `tokio-rustls-comp` and `tls-rustls-webpki-roots`), the same
//! stack as `tessera serve`'s HTTPS (no OpenSSL, no C build).
//!
//! # TLS
//!
//! `rediss://host:port` for one server, `rediss+cluster://host:port,host:port` for a cluster
//! (every node over TLS). The server's certificate chain and host name are always verified;
//! there is no way to turn that off (a `rediss://...#insecure` URL is refused with
//! [`RedisStoreError::InsecureTls`]; for a cluster the driver refuses it, as its
//! `tls-rustls-insecure` feature is not enabled). A `redis://` URL never uses TLS.
//!
//! The trusted roots are the Mozilla set compiled in from
//! [`webpki-roots`](https://docs.rs/webpki-roots): the same on every machine, in a distroless
//! or scratch container with no CA bundle too, and no files read at start-up. For a private or
//! managed-service CA, give its PEM bundle, which then replaces the default roots, as
//! `ssl_ca_certs=PATH` in the URL (redis-py's name) or with [`RedisOptions::ca_file`]:
//!
//! ```no_run
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use tessera_redis::RedisStore;
//!
//! let store = RedisStore::connect_url(
//!     "rediss://:secret@cache.example.com:6380/0?ssl_ca_certs=/etc/tessera/redis-ca.pem",
//! )
//! .await?;
//! # let _ = store;
//! # Ok::<_, tessera_core::StoreError>(()) }).unwrap();
//! ```
//!
//! A CA file with a URL that does not use TLS is refused
//! ([`RedisStoreError::CaFileWithoutTls`]), so a missing `s` is not a silent plain connection.
//! A refused certificate fails the connect at once with a
//! [`StoreError::Backend`](tessera_core::StoreError::Backend) whose chain gives rustls's reason
//! (`invalid peer certificate: UnknownIssuer`, `... not valid for name ...`). For a cluster, the
//! driver builds its TLS configuration from the process's rustls provider, so on the first TLS
//! connect the store installs ring's as the process default if none is installed yet. Client
//! certificates (mutual TLS) are not supported.
//!
//! # Data layout
//!
//! - **One string per session**, `PREFIX:{KEYHEX}:r2`: a 71-byte fixed-width text header
//!   (version as 20 digits; idle deadline, absolute deadline and last-seen time as 15-digit
//!   Unix milliseconds; a subject flag and the subject's length), the subject, then the whole
//!   record as [`Record::encode`](tessera_core::Record::encode) makes it. The scripts read the
//!   header by its offsets and never decode the record; a touch patches the idle deadline and
//!   last-seen time in place with one `SETRANGE`, and on load the header's values override
//!   the record's. A load is one `GET`; a create one `SET NX PXAT`. (Until this layout, a
//!   session was a hash named `PREFIX:{KEYHEX}`; those are not read, so upgrading from it
//!   signs every user out once, and Redis expires the old hashes at their deadlines.)
//! - **Native expiry**: every write sets `PEXPIREAT` to the earlier of the two deadlines, so
//!   Redis frees dead sessions itself and [`purge_expired`](tessera_core::Store::purge_expired)
//!   has no records to remove (it returns 0). On a standalone server it spends its call on one
//!   bounded step of a sweep over the subject indexes instead: a `SCAN` (`COUNT limit`) that
//!   resumes where the last call stopped, dropping members whose record no longer exists (at
//!   most `limit` looked at per call). On a cluster there is no such sweep (a keyspace scan
//!   would have to visit every master); indexes there are pruned by `list_subject` and
//!   `delete_subject` and expire as a whole with their longest-lived member. Liveness is still checked against the engine's `now` on
//!   every operation, so a record Redis has not removed yet is never returned, updated or
//!   touched.
//! - **One sorted set per subject**, `PREFIX:{SUBJECTHASH}:s` (the subject's SHA-256, so user
//!   names never appear in key names), members the records' raw keys, scored with the server's
//!   time when they were added. The set expires with its longest-lived member (each add
//!   moves its `PEXPIREAT` to at least the new member's absolute deadline).
//!
//! # What each operation guarantees
//!
//! - `create`: one `SET ... NX PXAT`, no script (an existing key is
//!   [`Duplicate`](tessera_core::StoreError::Duplicate), never overwritten).
//! - `update`, `touch`: one Lua script each, atomic on the server: check the record is live at
//!   the passed `now`, check the version (update), write, set the expiry. `touch` never revives
//!   and caps the idle deadline at the absolute one.
//! - `rotate`: on a standalone server (and on a cluster in the rare case both keys share a
//!   slot) **one script**: check old, refuse an existing new key, write new, delete old. On a
//!   cluster the two keys are random and almost always in different slots, and no script may
//!   span slots, so it is **create-new, then delete-old-if-version, undoing the create if that
//!   check fails**. What that gives: the old key disappears atomically with its version check
//!   (a concurrent update or rotation of the old record makes exactly one of them win); nobody
//!   can load the new key in between, because its ID has not been handed out yet; a `Conflict`,
//!   `NotFound` or `Duplicate` leaves both keys as they were. What it does not give: if the
//!   connection dies between the two steps, the call fails (`Unavailable`) and the old session
//!   stays valid while the new key is an orphan nobody holds the ID for, which Redis expires at
//!   its deadline; if the second step ran but its reply was lost, the old key is gone and the
//!   caller sees an error, so the user is logged out (fail closed, never two live sessions).
//! - **Subject index, index first**: a record is added to its subject's set *before* the record
//!   is written (create, rotate, and an update that changes the subject), so an existing record
//!   is always in its set and "log out everywhere" cannot miss it. The set is pruned lazily:
//!   `list_subject` and `delete_subject` drop members whose record is gone or belongs to someone
//!   else, but only members older than [`RedisOptions::index_grace`] (by the server's clock),
//!   because a younger one may belong to a write still on its way. `delete` does not touch the
//!   index. `delete_subject` deletes each record with a script that checks it still belongs to
//!   the subject, so a session re-logged-in as someone else is left alone.
//! - **Redis Cluster**: every key name carries a hash tag, each script touches one tag only, and
//!   `list_subject` / `delete_subject` issue one command per record (concurrently), so no
//!   command ever spans slots.
//!
//! # Faults
//!
//! Every command is bounded by [`RedisOptions::operation_timeout`] (default 2 s; nearly every
//! operation is one command): a server that is down or hung gives [`StoreError::Unavailable`](tessera_core::StoreError::Unavailable)
//! within that time, never a hang and never "no session". Connections reconnect by themselves
//! in the background, so the store recovers when the server comes back, without being
//! recreated ([`Store::ping`](tessera_core::Store::ping) tells when).
//!
//! # Limits
//!
//! - No `count_live` ([`Capabilities::count`](tessera_core::Capabilities) is false): counting
//!   one prefix's keys would need a keyspace scan.
//! - `list_subject` and `delete_subject` send one request per index member (at most 32 in
//!   flight): they are meant for the handful of sessions one subject has (see
//!   [`Policy`](tessera_core::Policy)'s per-subject limit), not for millions.
//! - Tested against one standalone server, a three-master cluster without replicas, and a
//!   failover in a one-master, one-replica cluster (`tests/failover.rs`): a coordinated
//!   `CLUSTER FAILOVER`, and the master killed followed by `CLUSTER FAILOVER TAKEOVER`. In both
//!   the same store object, with no reconnect of its own, loads the sessions written before
//!   (never reading one as absent), updates, creates and deletes on the new master; the driver
//!   follows `MOVED` and refreshes its slot map, within milliseconds of the promotion there.
//!   Not tested: an automatic failover voted by several masters, several shards failing over
//!   at once, or writes the old master acknowledged but had not yet replicated (Redis
//!   replication is asynchronous, so those are lost in a real failover).
//!
//! # Driver
//!
//! **Standalone: the store's own connection.** A session store sends a handful of fixed
//! commands (`GET`, `SET`, `DEL`, `EVALSHA`, a few index commands), so it speaks RESP2 itself over
//! [`RedisOptions::connections`] pipelined sockets: each request is encoded once, queued to the
//! socket's task, written together with whatever else is waiting in one `write`, and answered
//! in order from one `read` of replies. This replaced redis-rs's `ConnectionManager` because
//! the HTTP load benchmark showed the driver's generic machinery (a `combine`-based reply
//! parser that copies bulk strings byte by byte, a reply value tree converted again into Rust
//! types, a second timer per call) costing more CPU per session load than the rest of the
//! request; see `BENCHMARKS.md`. What it does: TCP (with `TCP_NODELAY`), TLS (rustls, above)
//! and Unix sockets; `AUTH` (with a user name for ACLs) and `SELECT` from the URL, parsed by
//! redis-rs so the URL syntax is the usual one; a socket that fails fails the requests on it
//! ([`StoreError::Unavailable`](tessera_core::StoreError::Unavailable): whether the command ran
//! is unknown) and the next request opens a new one; each request carries its deadline, and
//! when the oldest request waiting on a socket passes it (a read or a write that stalls), every
//! request on that socket fails and the socket is dropped, so a server that hangs without
//! closing is never waited on past the timeout (one timer per socket, re-armed only when it
//! fires, instead of one per request); command arguments, key names and session values are
//! written straight into the command's buffer; a malformed reply is an error, never a panic. Scripts run by `EVALSHA`, falling back to
//! `EVAL` (which also caches the script) on `NOSCRIPT`. RESP3 is not used.
//!
//! **Cluster: [`redis`](https://docs.rs/redis) (redis-rs)** with `cluster-async` and `script`,
//! default features off, for its slot map, `MOVED`/`ASK` redirections, topology refresh and
//! failover handling, which a session store has no reason to reimplement. The same commands are
//! handed to it argument by argument. Chosen over `fred` for its smaller dependency tree (CI
//! compiles the workspace on two cores).

mod conn;
mod error;
mod keys;
mod options;
mod resp;
mod scripts;
mod store;
mod value;

pub use error::RedisStoreError;
pub use options::RedisOptions;
pub use store::RedisStore;
