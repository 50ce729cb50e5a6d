//! The Redis store: connection handling and the [`Store`] operations.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, stream};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    ConnectionAddr, ErrorKind, IntoConnectionInfo, ServerErrorKind, TlsCertificates, Value,
};
use tessera_core::{Capabilities, Key, Record, Store, StoreError, Timestamp};

use crate::conn::{Addr, ConnError, Connection, Endpoint};
use crate::error::RedisStoreError;
use crate::keys::{Keys, slot};
use crate::options::RedisOptions;
use crate::resp::{Command, Reply};
use crate::scripts::{self, Lua};
use crate::value;

/// How many per-record requests `list_subject`, `delete_subject` and the index sweep keep in
/// flight at once.
const FAN_OUT: usize = 32;

/// How many consecutive requests go to one pooled connection before the next takes over.
const RUN: usize = 16;

/// The latest time any deadline is written as (the last millisecond of the year 9999): keeps
/// every number the scripts compare exact in Lua's doubles and valid for `PEXPIREAT`.
const MAX_MILLIS: u64 = 253_402_300_799_999;
// Exact in a Lua double.
const _: () = assert!(MAX_MILLIS < (1 << 53));

/// Sessions in Redis, standalone or Redis Cluster. See the [crate docs](crate) for the data
/// layout and what each operation guarantees.
///
/// Cheap to share: wrap it in an `Arc` (the engine does). All connections are pipelined (one
/// socket carries many concurrent requests), reconnect by themselves after an outage, and every
/// operation is bounded by [`RedisOptions::operation_timeout`].
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    options: RedisOptions,
    /// Where `purge_expired`'s sweep over subject indexes resumes (a `SCAN` cursor).
    sweep_cursor: Mutex<u64>,
}

enum Conn {
    /// A standalone server: the store's own pipelined connections ([`crate::conn`]).
    Single {
        pool: Box<[Connection]>,
        next: AtomicUsize,
    },
    /// A cluster: the driver's client, which keeps the slot map and follows redirections.
    Cluster(ClusterConnection),
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No URL here: it may hold a password.
        f.debug_struct("RedisStore")
            .field("cluster", &self.is_cluster())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to a standalone Redis server with default [`RedisOptions`].
    ///
    /// `url` is `redis://[user:password@]host:port[/db]` (or `redis+unix:///path`), or
    /// `rediss://...[?ssl_ca_certs=PATH]` for TLS (see [TLS](crate#tls)).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use tessera_core::Sessions;
    /// use tessera_redis::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let sessions = Sessions::new(store);
    /// # let _ = sessions;
    /// # Ok::<_, tessera_core::StoreError>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server does not answer within the connect timeout;
    /// [`StoreError::Backend`] for a malformed URL or bad options.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to a standalone Redis server with the given options.
    ///
    /// # Errors
    ///
    /// As [`RedisStore::connect`].
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let (url, options) = take_ca_param(url, options);
        options.validate().map_err(StoreError::backend)?;
        let endpoint = Arc::new(endpoint(&url, &options)?);
        let pool: Vec<Connection> = (0..options.connections)
            .map(|_| Connection::new(Arc::clone(&endpoint), options.operation_timeout))
            .collect();
        let store = Self {
            conn: Conn::Single {
                pool: pool.into_boxed_slice(),
                next: AtomicUsize::new(0),
            },
            keys: Keys::new(&options.prefix),
            options,
            sweep_cursor: Mutex::new(0),
        };
        store.ping().await?;
        Ok(store)
    }

    /// Connects to a Redis Cluster through any of its nodes (`host:port` or `redis://host:port`
    /// each, or `rediss://host:port` for TLS, decided by the first node) with default
    /// [`RedisOptions`]; the rest of the cluster is discovered from them.
    ///
    /// # Errors
    ///
    /// As [`RedisStore::connect`], and [`RedisStoreError::NoClusterNodes`] (as
    /// [`StoreError::Backend`]) for an empty list.
    pub async fn connect_cluster(nodes: &[&str]) -> Result<Self, StoreError> {
        Self::connect_cluster_with(nodes, RedisOptions::default()).await
    }

    /// Connects to a Redis Cluster with the given options.
    ///
    /// # Errors
    ///
    /// As [`RedisStore::connect_cluster`].
    pub async fn connect_cluster_with(
        nodes: &[&str],
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        options.validate().map_err(StoreError::backend)?;
        let nodes: Vec<String> = nodes
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(|n| {
                if n.contains("://") {
                    n.to_owned()
                } else {
                    format!("redis://{n}")
                }
            })
            .collect();
        if nodes.is_empty() {
            return Err(StoreError::backend(RedisStoreError::NoClusterNodes));
        }
        // The driver takes TLS for every node from the first one's scheme.
        let tls = nodes[0].starts_with("rediss://");
        if options.ca_file.is_some() && !tls {
            return Err(StoreError::backend(RedisStoreError::CaFileWithoutTls));
        }
        let mut builder = ClusterClientBuilder::new(nodes);
        if tls {
            if let Some(certs) = certificates(&options)? {
                builder = builder.certs(certs);
            }
        }
        let client = builder
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.operation_timeout)
            .retries(2)
            .min_retry_wait(20)
            .max_retry_wait(500)
            .build()
            .map_err(StoreError::backend)?;
        let conn = bounded(options.connect_timeout, client.get_async_connection()).await?;
        let store = Self {
            conn: Conn::Cluster(conn),
            keys: Keys::new(&options.prefix),
            options,
            sweep_cursor: Mutex::new(0),
        };
        store.ping().await?;
        Ok(store)
    }

    /// Connects by URL, standalone or cluster, with default [`RedisOptions`]:
    /// `redis://host:port` (also `rediss://`, `redis+unix://`, `unix://`) for one server,
    /// `redis+cluster://host:port,host:port` for a cluster (each comma-separated node is read
    /// as `redis://NODE`, so credentials go on every node: `redis+cluster://:pw@a:7001,:pw@b:7001`),
    /// `rediss+cluster://...` for a cluster over TLS. `?ssl_ca_certs=PATH` names a CA bundle
    /// (see [TLS](crate#tls)).
    /// This is what `tessera serve --store URL` calls.
    ///
    /// # Errors
    ///
    /// As [`RedisStore::connect`] and [`RedisStore::connect_cluster`];
    /// [`RedisStoreError::UnknownScheme`] for any other scheme.
    pub async fn connect_url(url: &str) -> Result<Self, StoreError> {
        Self::connect_url_with(url, RedisOptions::default()).await
    }

    /// Connects by URL with the given options (see [`RedisStore::connect_url`]).
    ///
    /// # Errors
    ///
    /// As [`RedisStore::connect_url`].
    pub async fn connect_url_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let cluster = [
            ("redis+cluster://", "redis://"),
            ("rediss+cluster://", "rediss://"),
        ]
        .into_iter()
        .find_map(|(scheme, node_scheme)| Some((url.strip_prefix(scheme)?, node_scheme)));
        if let Some((_, node_scheme)) = cluster {
            let (url, options) = take_ca_param(url, options);
            let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
            let nodes: Vec<String> = rest
                .trim_end_matches('/')
                .split(',')
                .map(|node| format!("{node_scheme}{}", node.trim()))
                .filter(|node| node.len() > node_scheme.len())
                .collect();
            let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
            Self::connect_cluster_with(&nodes, options).await
        } else if ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            Self::connect_with(url, options).await
        } else {
            Err(StoreError::backend(RedisStoreError::UnknownScheme))
        }
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// The options the store was built with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// Sends one command and returns the reply as the server gave it, a refusal (`-ERR ...`)
    /// included; fails only when there is no reply (an outage, a timeout).
    async fn call_raw(&self, command: Command) -> Result<Reply, StoreError> {
        let limit = self.options.operation_timeout;
        match &self.conn {
            Conn::Single { pool, next } => {
                // Runs of consecutive requests share a connection, so that requests made
                // together leave in one write; the runs still spread over every connection.
                let i = if pool.len() == 1 {
                    0
                } else {
                    next.fetch_add(1, Ordering::Relaxed) / RUN % pool.len()
                };
                match pool[i].call(command).await {
                    Ok(reply) => Ok(reply),
                    Err(ConnError::TimedOut) => {
                        Err(StoreError::unavailable(RedisStoreError::Timeout(limit)))
                    }
                    Err(error) => Err(conn_error(error)),
                }
            }
            Conn::Cluster(cluster) => {
                let mut args = command.args();
                let mut cmd = redis::cmd(
                    std::str::from_utf8(args.next().unwrap_or_default()).unwrap_or_default(),
                );
                for arg in args {
                    cmd.arg(arg);
                }
                let mut cluster = cluster.clone();
                match tokio::time::timeout(limit, cmd.query_async::<Value>(&mut cluster)).await {
                    Ok(Ok(value)) => from_value(value),
                    Ok(Err(error))
                        if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) =>
                    {
                        Ok(Reply::Error("NOSCRIPT".to_owned()))
                    }
                    Ok(Err(error)) => Err(map_error(error)),
                    Err(_) => Err(StoreError::unavailable(RedisStoreError::Timeout(limit))),
                }
            }
        }
    }

    /// Sends one command and converts its reply; a refusal is an error.
    async fn query<T: FromReply>(&self, command: Command) -> Result<T, StoreError> {
        T::from_reply(refusal(self.call_raw(command).await?)?)
    }

    /// Runs a script by its SHA (`EVALSHA`), sending its source (`EVAL`, which also caches it)
    /// only if the server does not know it (a restarted server, a new node, `SCRIPT FLUSH`).
    async fn eval<T: FromReply>(
        &self,
        script: &Lua,
        keys: &[Name<'_>],
        args: impl Fn(&mut Command) + Send + Sync,
    ) -> Result<T, StoreError> {
        let build = |name: &str, body: &str| {
            // Room for a script call carrying a typical session value (header, record with a
            // small data map), so that building it does not grow the buffer.
            let mut command = Command::with_capacity(name, 640 + body.len());
            command.arg(body.as_bytes()).int(keys.len() as u64);
            for key in keys {
                match *key {
                    Name::Session(key) => command.arg_from(|out| self.keys.write_session(out, key)),
                    Name::Given(name) => command.arg(name),
                };
            }
            args(&mut command);
            command
        };
        let reply = match self.call_raw(build("EVALSHA", script.hash())).await? {
            Reply::Error(message) if message.starts_with("NOSCRIPT") => {
                self.call_raw(build("EVAL", script.source())).await?
            }
            reply => reply,
        };
        T::from_reply(refusal(reply)?)
    }

    /// Adds `key` to `subject`'s index (always before the record itself is written, so that
    /// "log out everywhere" can never miss a record that exists).
    async fn index(&self, subject: &str, record: &Record) -> Result<(), StoreError> {
        let set = self.keys.subject(subject);
        self.eval::<i64>(&scripts::INDEX_ADD, &[Name::Given(set.as_bytes())], |c| {
            c.arg(record.key.as_bytes())
                .int(clamp(record.absolute_deadline));
        })
        .await
        .map(drop)
    }

    /// Removes index members whose records are gone or belong to someone else, sparing those
    /// younger than the grace period. Failure is logged, not returned: the caller's answer
    /// does not depend on it.
    async fn prune(&self, set: &str, candidates: &[Vec<u8>]) {
        if candidates.is_empty() {
            return;
        }
        let grace = grace_millis(self.options.index_grace);
        let prune = self
            .eval::<i64>(&scripts::INDEX_PRUNE, &[Name::Given(set.as_bytes())], |c| {
                c.int(grace);
                for member in candidates {
                    c.arg(member);
                }
            })
            .await;
        if let Err(error) = prune {
            tracing::debug!(%error, "could not prune a subject index; it will be retried lazily");
        }
    }

    async fn members(&self, set: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut command = Command::new("ZRANGE");
        command.arg(set.as_bytes()).arg(b"0").arg(b"-1");
        self.query(command).await
    }

    async fn load_raw(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let mut command = Command::new("GET");
        command.arg_from(|out| self.keys.write_session(out, key));
        let Some(stored) = self.query::<Option<Vec<u8>>>(command).await? else {
            return Ok(None);
        };
        let record = match value::decode(key, &stored) {
            Ok(record) => record,
            Err(reason) => {
                tracing::warn!(key = %key.short(), reason, "undecodable session record treated as absent");
                return Ok(None);
            }
        };
        Ok(record.is_live(now).then_some(record))
    }

    /// One bounded step of a sweep over the subject indexes (standalone only): `SCAN` on from
    /// where the last step stopped, and drop members (at most `limit` looked at) whose record
    /// no longer exists, past the grace period.
    async fn sweep_indexes(&self, limit: usize) -> Result<(), StoreError> {
        let cursor = *self.sweep_cursor.lock().unwrap_or_else(|e| e.into_inner());
        let mut scan = Command::new("SCAN");
        scan.int(cursor)
            .arg(b"MATCH")
            .arg(self.keys.subject_pattern().as_bytes())
            .arg(b"COUNT")
            .int(limit as u64);
        let Scan { next, names } = self.query(scan).await?;
        // Key names are ASCII (the prefix is UTF-8 and the rest hex).
        let sets = names
            .into_iter()
            .filter_map(|name| String::from_utf8(name).ok());
        *self.sweep_cursor.lock().unwrap_or_else(|e| e.into_inner()) = next;
        let mut budget = limit;
        for set in sets {
            if budget == 0 {
                break;
            }
            let mut range = Command::new("ZRANGE");
            range.arg(set.as_bytes()).arg(b"0").int(budget as u64 - 1);
            let members: Vec<Vec<u8>> = self.query(range).await?;
            budget -= members.len().min(budget);
            let checks = members.iter().map(|member| async move {
                match key_of(member) {
                    Some(key) => {
                        let mut exists = Command::new("EXISTS");
                        exists.arg_from(|out| self.keys.write_session(out, &key));
                        self.query::<i64>(exists)
                            .await
                            .map(|n| (n == 0).then(|| member.clone()))
                    }
                    None => Ok(Some(member.clone())),
                }
            });
            let checks: Vec<_> = checks.collect();
            let gone: Vec<Option<Vec<u8>>> =
                stream::iter(checks).buffered(FAN_OUT).try_collect().await?;
            let gone: Vec<Vec<u8>> = gone.into_iter().flatten().collect();
            self.prune(&set, &gone).await;
        }
        Ok(())
    }

    /// Writes `record` under `name` unless the name exists (`SET NX`, no script), expiring at
    /// the earlier deadline.
    async fn set_new(&self, record: &Record) -> Result<(), StoreError> {
        check_fits(record)?;
        // Room for the name, the value and the options, so the buffer is allocated once.
        let mut command = Command::with_capacity("SET", 160 + value::len_hint(record));
        command
            .arg_from(|out| self.keys.write_session(out, &record.key))
            .arg_from(|out| value::encode_into(out, record, clamp))
            .arg(b"NX")
            .arg(b"PXAT")
            .int(expiry(record));
        match self.call_raw(command).await.and_then(refusal)? {
            Reply::Ok => Ok(()),
            Reply::Nil => Err(StoreError::Duplicate),
            _ => Err(StoreError::backend(RedisStoreError::MalformedReply)),
        }
    }

    /// Rotation across two slots (a cluster): create the new key, then delete the old one with
    /// a version check, and undo the create if that check fails.
    async fn rotate_across_slots(
        &self,
        old_key: &Key,
        expected_version: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.set_new(new).await?;
        let delete = self
            .eval::<i64>(
                &scripts::DELETE_IF_VERSION,
                &[Name::Session(old_key)],
                |c| {
                    c.int(now.as_millis())
                        .arg(&value::digits(expected_version, value::VERSION.len()));
                },
            )
            .await;
        let outcome = match delete {
            Ok(1) => return Ok(()),
            Ok(0) => StoreError::Conflict,
            Ok(-1) => StoreError::NotFound,
            Ok(other) => StoreError::backend(RedisStoreError::UnexpectedReply(other)),
            Err(error) => error,
        };
        // The new key was never handed to anyone: take it back. If even that fails, it holds
        // an unreachable record that expires by itself at its deadline.
        let mut undo = Command::new("DEL");
        undo.arg_from(|out| self.keys.write_session(out, &new.key));
        if let Err(error) = self.query::<i64>(undo).await {
            tracing::warn!(key = %new.key.short(), %error, "could not undo a failed rotation");
        }
        Err(outcome)
    }
}

#[async_trait]
impl Store for RedisStore {
    fn name(&self) -> &'static str {
        if self.is_cluster() {
            "redis-cluster"
        } else {
            "redis"
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(true, true, false)
    }

    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        if let Some(subject) = &record.subject {
            self.index(subject, record).await?;
        }
        self.set_new(record).await
    }

    async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.load_raw(key, now).await
    }

    async fn update(
        &self,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        check_fits(record)?;
        let mut indexed = false;
        loop {
            let updated = self
                .eval::<i64>(&scripts::UPDATE, &[Name::Session(&record.key)], |c| {
                    c.int(now.as_millis())
                        .arg(&value::digits(expected_version, value::VERSION.len()))
                        .arg_from(|out| value::encode_into(out, record, clamp))
                        .int(expiry(record))
                        .arg(if indexed { b"1" } else { b"0" });
                })
                .await;
            match updated? {
                1 => return Ok(()),
                0 => return Err(StoreError::Conflict),
                -1 => return Err(StoreError::NotFound),
                -3 if !indexed => {
                    let subject = record.subject.as_deref().unwrap_or_default();
                    self.index(subject, record).await?;
                    indexed = true;
                }
                other => {
                    return Err(StoreError::backend(RedisStoreError::UnexpectedReply(other)));
                }
            }
        }
    }

    async fn touch(
        &self,
        key: &Key,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let touched = self
            .eval::<i64>(&scripts::TOUCH, &[Name::Session(key)], |c| {
                c.int(now.as_millis())
                    .arg(&value::digits(clamp(idle_deadline), value::IDLE.len()))
                    .arg(&value::digits(clamp(now), value::IDLE.len()));
            })
            .await;
        Ok(touched? == 1)
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        // The subject index keeps the member; lists prune it lazily.
        let mut command = Command::new("DEL");
        command.arg_from(|out| self.keys.write_session(out, key));
        self.query::<i64>(command).await.map(drop)
    }

    async fn rotate(
        &self,
        old_key: &Key,
        expected_version: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if let Some(subject) = &new.subject {
            self.index(subject, new).await?;
        }
        // Names are built only to compare their slots, which only a cluster has.
        let slot_of = |key: &Key| slot(self.keys.session(key).as_bytes());
        if self.is_cluster() && slot_of(old_key) != slot_of(&new.key) {
            return self
                .rotate_across_slots(old_key, expected_version, new, now)
                .await;
        }
        check_fits(new)?;
        let rotated = self
            .eval::<i64>(
                &scripts::ROTATE,
                &[Name::Session(old_key), Name::Session(&new.key)],
                |c| {
                    c.int(now.as_millis())
                        .arg(&value::digits(expected_version, value::VERSION.len()))
                        .arg_from(|out| value::encode_into(out, new, clamp))
                        .int(expiry(new));
                },
            )
            .await;
        match rotated? {
            1 => Ok(()),
            0 => Err(StoreError::Conflict),
            -1 => Err(StoreError::NotFound),
            -2 => Err(StoreError::Duplicate),
            other => Err(StoreError::backend(RedisStoreError::UnexpectedReply(other))),
        }
    }

    async fn list_subject(&self, subject: &str, now: Timestamp) -> Result<Vec<Record>, StoreError> {
        let set = self.keys.subject(subject);
        let members = self.members(&set).await?;
        let loads: Vec<_> = members
            .iter()
            .map(|member| async move {
                match key_of(member) {
                    Some(key) => self.load_raw(&key, now).await,
                    None => Ok(None),
                }
            })
            .collect();
        let found: Vec<Option<Record>> =
            stream::iter(loads).buffered(FAN_OUT).try_collect().await?;
        let mut records = Vec::new();
        let mut stale = Vec::new();
        for (member, record) in members.into_iter().zip(found) {
            match record {
                Some(record) if record.subject.as_deref() == Some(subject) => records.push(record),
                _ => stale.push(member),
            }
        }
        self.prune(&set, &stale).await;
        Ok(records)
    }

    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&Key>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let set = self.keys.subject(subject);
        let members = self.members(&set).await?;
        let deletions = members
            .iter()
            .filter(|member| except.is_none_or(|k| member.as_slice() != k.as_bytes()))
            .map(|member| async move {
                let Some(key) = key_of(member) else {
                    return Ok::<_, StoreError>((member, -1));
                };
                let deleted = self
                    .eval::<i64>(&scripts::DELETE_IF_SUBJECT, &[Name::Session(&key)], |c| {
                        c.arg(subject.as_bytes()).int(now.as_millis());
                    })
                    .await;
                Ok((member, deleted?))
            })
            .collect::<Vec<_>>();
        let outcomes: Vec<(&Vec<u8>, i64)> = stream::iter(deletions)
            .buffered(FAN_OUT)
            .try_collect()
            .await?;
        let removed = outcomes.iter().filter(|(_, n)| *n == 1).count() as u64;
        let deleted: Vec<&[u8]> = outcomes
            .iter()
            .filter(|(_, n)| *n >= 0)
            .map(|(m, _)| m.as_slice())
            .collect();
        if !deleted.is_empty() {
            // Those records are gone for good (keys are never reused): drop them at once.
            let mut trim = Command::new("ZREM");
            trim.arg(set.as_bytes());
            for member in &deleted {
                trim.arg(member);
            }
            if let Err(error) = self.query::<i64>(trim).await {
                tracing::debug!(%error, "could not trim a subject index; it will be pruned lazily");
            }
        }
        let stale: Vec<Vec<u8>> = outcomes
            .iter()
            .filter(|(_, n)| *n < 0)
            .map(|(m, _)| m.to_vec())
            .collect();
        self.prune(&set, &stale).await;
        Ok(removed)
    }

    async fn purge_expired(&self, _now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        // Redis removes each record itself at its deadline (PEXPIREAT), so there are no records
        // to purge. What is left to tidy is index members whose record is gone.
        if !self.is_cluster() && limit > 0 {
            self.sweep_indexes(limit).await?;
        }
        Ok(0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let reply: String = self.query(Command::new("PING")).await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(StoreError::backend(RedisStoreError::UnexpectedReply(-1)))
        }
    }
}

/// Takes the `ssl_ca_certs=PATH` query parameter (redis-py's name) out of `url` into the
/// options; the driver does not know it.
fn take_ca_param(url: &str, options: RedisOptions) -> (String, RedisOptions) {
    let (url, fragment) = match url.split_once('#') {
        Some((url, fragment)) => (url, Some(fragment)),
        None => (url, None),
    };
    let Some((base, query)) = url.split_once('?') else {
        return (with_fragment(url.to_owned(), fragment), options);
    };
    let mut options = options;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("ssl_ca_certs", path)) => options = options.ca_file(percent_decode(path)),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (with_fragment(url, fragment), options)
}

fn with_fragment(url: String, fragment: Option<&str>) -> String {
    match fragment {
        Some(fragment) => format!("{url}#{fragment}"),
        None => url,
    }
}

/// A URL query value with its `%XX` escapes decoded (invalid UTF-8 replaced, never an error:
/// the value is then refused by whatever reads it).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The CA bundle of [`RedisOptions::ca_file`], checked to hold at least one PEM certificate,
/// for the driver; `None` to use the default roots. Installs ring as the process's rustls
/// provider if none is installed yet (the driver builds its TLS configuration from the
/// process default).
fn certificates(options: &RedisOptions) -> Result<Option<TlsCertificates>, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(path) = &options.ca_file else {
        return Ok(None);
    };
    let fail = |source: std::io::Error| {
        StoreError::backend(RedisStoreError::CaFile {
            path: path.clone(),
            source,
        })
    };
    let pem = std::fs::read(path).map_err(fail)?;
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| fail(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        found += 1;
    }
    if found == 0 {
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no PEM certificate in the file",
        )));
    }
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// A TLS handshake that failed on the certificate (an unknown CA, a wrong name, an expired
/// certificate): configuration, not an outage, so retrying cannot help.
fn is_certificate_error(error: &redis::RedisError) -> bool {
    use std::error::Error;
    // The driver keeps an I/O error as its source behind an `Arc<dyn Error>`, and tokio-rustls
    // puts the `rustls::Error` inside that `io::Error`.
    let Some(source) = error.source() else {
        return false;
    };
    let io = source
        .downcast_ref::<Arc<dyn Error + Send + Sync>>()
        .and_then(|shared| shared.downcast_ref::<std::io::Error>())
        .or_else(|| source.downcast_ref::<std::io::Error>());
    io.and_then(std::io::Error::get_ref)
        .is_some_and(|inner| inner.is::<rustls::Error>())
}

/// Runs a driver future with a deadline, mapping both failure kinds to [`StoreError`].
async fn bounded<T>(
    limit: Duration,
    future: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(map_error(error)),
        Err(_) => Err(StoreError::unavailable(RedisStoreError::Timeout(limit))),
    }
}

/// Unreachable, dropped, timed out, or a cluster in transition: [`StoreError::Unavailable`]
/// (retrying later may work). Anything else the server said: [`StoreError::Backend`].
fn map_error(error: redis::RedisError) -> StoreError {
    if is_certificate_error(&error) {
        return StoreError::backend(error);
    }
    let transient = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_cluster_error()
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                )
        );
    if transient {
        StoreError::unavailable(error)
    } else {
        StoreError::backend(error)
    }
}

/// The standalone connection settings of `url`: the driver parses the URL (the same syntax as
/// everywhere in the Redis world), the store connects with them itself.
fn endpoint(url: &str, options: &RedisOptions) -> Result<Endpoint, StoreError> {
    let info = url.into_connection_info().map_err(StoreError::backend)?;
    let addr = match info.addr() {
        ConnectionAddr::Tcp(host, port) => {
            if options.ca_file.is_some() {
                return Err(StoreError::backend(RedisStoreError::CaFileWithoutTls));
            }
            Addr::Tcp(host.clone(), *port)
        }
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            ..
        } => {
            if *insecure {
                return Err(StoreError::backend(RedisStoreError::InsecureTls));
            }
            Addr::Tls {
                host: host.clone(),
                port: *port,
                config: tls_config(options)?,
            }
        }
        ConnectionAddr::Unix(path) => {
            if options.ca_file.is_some() {
                return Err(StoreError::backend(RedisStoreError::CaFileWithoutTls));
            }
            Addr::Unix(path.clone())
        }
        _ => return Err(StoreError::backend(RedisStoreError::UnknownScheme)),
    };
    let settings = info.redis_settings();
    Ok(Endpoint {
        addr,
        username: settings.username().map(str::to_owned),
        password: settings.password().map(str::to_owned),
        db: settings.db(),
        connect_timeout: options.connect_timeout,
    })
}

/// The TLS client settings for `rediss://`: ring, the CA file's roots or webpki-roots,
/// certificate chain and host name always verified, no client certificate.
fn tls_config(options: &RedisOptions) -> Result<Arc<rustls::ClientConfig>, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match certificates(options)? {
        Some(TlsCertificates {
            root_cert: Some(pem),
            ..
        }) => {
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(StoreError::backend)?;
                roots.add(cert).map_err(StoreError::backend)?;
            }
        }
        _ => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(StoreError::backend)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connection failure: a refused certificate is configuration ([`StoreError::Backend`]);
/// a server that cannot be reached or stopped answering is an outage
/// ([`StoreError::Unavailable`]); a refused `AUTH` or `SELECT` is configuration unless the
/// server said it is only not ready yet.
fn conn_error(error: ConnError) -> StoreError {
    match &error {
        ConnError::Connect(_) if error.is_certificate() => StoreError::backend(error),
        ConnError::Connect(_) | ConnError::Lost(_) | ConnError::TimedOut => {
            StoreError::unavailable(error)
        }
        ConnError::Handshake(message) if is_transient(message) => StoreError::unavailable(error),
        ConnError::Handshake(_) | ConnError::Protocol(_) => StoreError::backend(error),
    }
}

/// Server refusals that mean "not now" rather than "never": loading its data set, a master
/// down or in failover, a read-only replica, a busy script.
fn is_transient(message: &str) -> bool {
    const NOT_NOW: [&str; 6] = [
        "LOADING",
        "MASTERDOWN",
        "READONLY",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "BUSY",
    ];
    let code = message.split(' ').next().unwrap_or_default();
    NOT_NOW.contains(&code)
}

/// A refusal (`-ERR ...`) as an error; any other reply as it is.
fn refusal(reply: Reply) -> Result<Reply, StoreError> {
    match reply {
        Reply::Error(message) if is_transient(&message) => {
            Err(StoreError::unavailable(RedisStoreError::Refused(message)))
        }
        Reply::Error(message) => Err(StoreError::backend(RedisStoreError::Refused(message))),
        reply => Ok(reply),
    }
}

/// A cluster reply in the store's own terms.
fn from_value(value: Value) -> Result<Reply, StoreError> {
    Ok(match value {
        Value::Nil => Reply::Nil,
        Value::Int(n) => Reply::Int(n),
        Value::BulkString(bytes) => Reply::Bulk(bytes),
        Value::SimpleString(text) if text == "OK" => Reply::Ok,
        Value::SimpleString(text) => Reply::Status(text),
        Value::Okay => Reply::Ok,
        Value::Array(items) => Reply::Array(
            items
                .into_iter()
                .map(from_value)
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(StoreError::backend(RedisStoreError::MalformedReply)),
    })
}

/// The shapes of reply the store expects, each checked.
trait FromReply: Sized {
    fn from_reply(reply: Reply) -> Result<Self, StoreError>;
}

fn malformed() -> StoreError {
    StoreError::backend(RedisStoreError::MalformedReply)
}

impl FromReply for i64 {
    fn from_reply(reply: Reply) -> Result<Self, StoreError> {
        match reply {
            Reply::Int(n) => Ok(n),
            _ => Err(malformed()),
        }
    }
}

impl FromReply for String {
    fn from_reply(reply: Reply) -> Result<Self, StoreError> {
        match reply {
            Reply::Ok => Ok("OK".to_owned()),
            Reply::Status(text) => Ok(text),
            Reply::Bulk(bytes) => String::from_utf8(bytes).map_err(|_| malformed()),
            _ => Err(malformed()),
        }
    }
}

impl FromReply for Option<Vec<u8>> {
    fn from_reply(reply: Reply) -> Result<Self, StoreError> {
        match reply {
            Reply::Nil => Ok(None),
            Reply::Bulk(bytes) => Ok(Some(bytes)),
            _ => Err(malformed()),
        }
    }
}

impl FromReply for Vec<u8> {
    fn from_reply(reply: Reply) -> Result<Self, StoreError> {
        match reply {
            Reply::Bulk(bytes) => Ok(bytes),
            _ => Err(malformed()),
        }
    }
}

impl<T: FromReply> FromReply for Vec<T> {
    fn from_reply(reply: Reply) -> Result<Self, StoreError> {
        match reply {
            Reply::Array(items) => items.into_iter().map(T::from_reply).collect(),
            _ => Err(malformed()),
        }
    }
}

impl<T: FromReply, const N: usize> FromReply for [T; N] {
    fn from_reply(reply: Reply) -> Result<Self, StoreError> {
        Vec::<T>::from_reply(reply)?
            .try_into()
            .map_err(|_| malformed())
    }
}

/// One `SCAN` step: the cursor to resume from and the names found.
struct Scan {
    next: u64,
    names: Vec<Vec<u8>>,
}

impl FromReply for Scan {
    fn from_reply(reply: Reply) -> Result<Self, StoreError> {
        let [cursor, names]: [Reply; 2] = match reply {
            Reply::Array(items) => items.try_into().map_err(|_| malformed())?,
            _ => return Err(malformed()),
        };
        let cursor = Vec::<u8>::from_reply(cursor)?;
        let next = std::str::from_utf8(&cursor)
            .ok()
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(malformed)?;
        Ok(Self {
            next,
            names: Vec::from_reply(names)?,
        })
    }
}

impl FromReply for Reply {
    fn from_reply(reply: Reply) -> Result<Self, StoreError> {
        Ok(reply)
    }
}

fn clamp(time: Timestamp) -> u64 {
    time.as_millis().min(MAX_MILLIS)
}

fn grace_millis(grace: Duration) -> u64 {
    u64::try_from(grace.as_millis()).unwrap_or(MAX_MILLIS)
}

/// What is stored for `record` (see [`crate::value`]).
/// Refuses a record whose subject is too long for the value's header.
fn check_fits(record: &Record) -> Result<(), StoreError> {
    if value::fits(record) {
        Ok(())
    } else {
        Err(StoreError::backend(RedisStoreError::SubjectTooLong(
            value::MAX_SUBJECT,
        )))
    }
}

/// A key argument of a script: a session's name, written straight into the command, or a name
/// at hand.
#[derive(Clone, Copy)]
enum Name<'a> {
    Session(&'a Key),
    Given(&'a [u8]),
}

/// When Redis may drop `record`: the earlier of its two deadlines.
fn expiry(record: &Record) -> u64 {
    clamp(record.idle_deadline).min(clamp(record.absolute_deadline))
}

fn key_of(member: &[u8]) -> Option<Key> {
    <[u8; 32]>::try_from(member).ok().map(Key::from_bytes)
}

// The trait object the engine holds must be shareable.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Arc<RedisStore>>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_clamped_to_the_year_9999() {
        assert_eq!(clamp(Timestamp::from_millis(u64::MAX)), MAX_MILLIS);
        assert_eq!(clamp(Timestamp::from_millis(5)), 5);
    }

    #[test]
    fn the_ca_parameter_is_taken_out_of_the_url() {
        let (url, options) = take_ca_param(
            "rediss://:pw@h:6380/0?ssl_ca_certs=%2Fetc%2Fca.pem&protocol=resp3#insecure",
            RedisOptions::default(),
        );
        assert_eq!(url, "rediss://:pw@h:6380/0?protocol=resp3#insecure");
        assert_eq!(
            options.ca_file_path(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        let (url, options) = take_ca_param("rediss+cluster://a:1,b:2", RedisOptions::default());
        assert_eq!(
            (url.as_str(), options.ca_file_path()),
            ("rediss+cluster://a:1,b:2", None)
        );
        let (url, options) =
            take_ca_param("rediss://h?ssl_ca_certs=/ca.pem", RedisOptions::default());
        assert_eq!(url, "rediss://h");
        assert!(options.ca_file_path().is_some());
    }
}
