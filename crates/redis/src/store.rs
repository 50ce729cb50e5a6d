//! The Redis store: connection handling and the [`Store`] operations.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, stream};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ErrorKind, FromRedisValue, RedisFuture, ScriptInvocation, ServerErrorKind,
    TlsCertificates, Value,
};
use tessera_core::{Capabilities, Key, Record, Store, StoreError, Timestamp};

use crate::error::RedisStoreError;
use crate::keys::{Keys, slot};
use crate::options::RedisOptions;
use crate::scripts;

/// How many per-record requests `list_subject`, `delete_subject` and the index sweep keep in
/// flight at once.
const FAN_OUT: usize = 32;

/// The latest time any deadline is written as (the last millisecond of the year 9999): keeps
/// every number the scripts compare exact in Lua's doubles and valid for `PEXPIREAT`.
const MAX_MILLIS: u64 = 253_402_300_799_999;
// Exact in a Lua double.
const _: () = assert!(MAX_MILLIS < (1 << 53));

/// Sessions in Redis, standalone or Redis Cluster. See the [crate docs](crate) for the data
/// layout and what each operation guarantees.
///
/// Cheap to share: wrap it in an `Arc` (the engine does). All connections are multiplexed,
/// reconnect by themselves after an outage, and every operation is bounded by
/// [`RedisOptions::operation_timeout`].
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    options: RedisOptions,
    /// Where `purge_expired`'s sweep over subject indexes resumes (a `SCAN` cursor).
    sweep_cursor: Mutex<u64>,
}

enum Conn {
    Single {
        pool: Box<[ConnectionManager]>,
        next: AtomicUsize,
    },
    Cluster(ClusterConnection),
}

/// One connection handle for one operation: both kinds are cheap clones of shared,
/// multiplexed connections.
#[derive(Clone)]
enum Handle {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
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
        let client = if url.starts_with("rediss://") {
            match certificates(&options)? {
                Some(certs) => redis::Client::build_with_tls(url.as_str(), certs),
                None => redis::Client::open(url.as_str()),
            }
        } else if options.ca_file.is_some() {
            return Err(StoreError::backend(RedisStoreError::CaFileWithoutTls));
        } else {
            redis::Client::open(url.as_str())
        }
        .map_err(StoreError::backend)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.operation_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let mut pool = Vec::with_capacity(options.connections);
        for _ in 0..options.connections {
            let manager = bounded(
                options.connect_timeout,
                ConnectionManager::new_with_config(client.clone(), config.clone()),
            )
            .await?;
            pool.push(manager);
        }
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

    fn handle(&self) -> Handle {
        match &self.conn {
            Conn::Single { pool, next } => {
                let i = if pool.len() == 1 {
                    0
                } else {
                    next.fetch_add(1, Ordering::Relaxed) % pool.len()
                };
                Handle::Single(pool[i].clone())
            }
            Conn::Cluster(c) => Handle::Cluster(c.clone()),
        }
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.handle();
        bounded(self.options.operation_timeout, cmd.query_async(&mut conn)).await
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        script: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.handle();
        bounded(
            self.options.operation_timeout,
            script.invoke_async(&mut conn),
        )
        .await
    }

    /// Adds `key` to `subject`'s index (always before the record itself is written, so that
    /// "log out everywhere" can never miss a record that exists).
    async fn index(&self, subject: &str, record: &Record) -> Result<(), StoreError> {
        let mut script = scripts::INDEX_ADD.prepare_invoke();
        script
            .key(self.keys.subject(subject))
            .arg(&record.key.as_bytes()[..])
            .arg(clamp(record.absolute_deadline));
        self.invoke::<i64>(&script).await.map(drop)
    }

    /// Removes index members whose records are gone or belong to someone else, sparing those
    /// younger than the grace period. Failure is logged, not returned: the caller's answer
    /// does not depend on it.
    async fn prune(&self, set: &str, candidates: &[Vec<u8>]) {
        if candidates.is_empty() {
            return;
        }
        let mut script = scripts::INDEX_PRUNE.prepare_invoke();
        script.key(set).arg(grace_millis(self.options.index_grace));
        for member in candidates {
            script.arg(member.as_slice());
        }
        if let Err(error) = self.invoke::<i64>(&script).await {
            tracing::debug!(%error, "could not prune a subject index; it will be retried lazily");
        }
    }

    async fn members(&self, set: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        self.query(redis::cmd("ZRANGE").arg(set).arg(0).arg(-1))
            .await
    }

    async fn load_raw(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        type Fields = (
            Option<Vec<u8>>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let (blob, version, idle, last_seen): Fields = self
            .query(
                redis::cmd("HMGET")
                    .arg(self.keys.session(key))
                    .arg("b")
                    .arg("v")
                    .arg("i")
                    .arg("l"),
            )
            .await?;
        let Some(blob) = blob else {
            return Ok(None);
        };
        let record = match decode(key, &blob, version, idle, last_seen) {
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
        let (next, sets): (u64, Vec<String>) = self
            .query(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(self.keys.subject_pattern())
                    .arg("COUNT")
                    .arg(limit),
            )
            .await?;
        *self.sweep_cursor.lock().unwrap_or_else(|e| e.into_inner()) = next;
        let mut budget = limit;
        for set in sets {
            if budget == 0 {
                break;
            }
            let members: Vec<Vec<u8>> = self
                .query(redis::cmd("ZRANGE").arg(&set).arg(0).arg(budget - 1))
                .await?;
            budget -= members.len().min(budget);
            let checks = members.iter().map(|member| async move {
                match key_of(member) {
                    Some(key) => self
                        .query::<bool>(redis::cmd("EXISTS").arg(self.keys.session(&key)))
                        .await
                        .map(|exists| (!exists).then(|| member.clone())),
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

    /// Rotation across two slots (a cluster): create the new key, then delete the old one with
    /// a version check, and undo the create if that check fails.
    async fn rotate_across_slots(
        &self,
        old_key: &Key,
        expected_version: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let new_name = self.keys.session(&new.key);
        let mut create = scripts::CREATE.prepare_invoke();
        create.key(&new_name);
        record_args(&mut create, new);
        if self.invoke::<i64>(&create).await? == 0 {
            return Err(StoreError::Duplicate);
        }
        let mut delete = scripts::DELETE_IF_VERSION.prepare_invoke();
        delete
            .key(self.keys.session(old_key))
            .arg(now.as_millis())
            .arg(expected_version);
        let outcome = match self.invoke::<i64>(&delete).await {
            Ok(1) => return Ok(()),
            Ok(0) => StoreError::Conflict,
            Ok(-1) => StoreError::NotFound,
            Ok(other) => StoreError::backend(RedisStoreError::UnexpectedReply(other)),
            Err(error) => error,
        };
        // The new key was never handed to anyone: take it back. If even that fails, it holds
        // an unreachable record that expires by itself at its deadline.
        if let Err(error) = self.query::<i64>(redis::cmd("DEL").arg(&new_name)).await {
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
        let mut script = scripts::CREATE.prepare_invoke();
        script.key(self.keys.session(&record.key));
        record_args(&mut script, record);
        match self.invoke::<i64>(&script).await? {
            1 => Ok(()),
            0 => Err(StoreError::Duplicate),
            other => Err(StoreError::backend(RedisStoreError::UnexpectedReply(other))),
        }
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
        let name = self.keys.session(&record.key);
        let mut indexed = false;
        loop {
            let mut script = scripts::UPDATE.prepare_invoke();
            script.key(&name).arg(now.as_millis()).arg(expected_version);
            record_args(&mut script, record);
            script.arg(if indexed { "1" } else { "0" });
            match self.invoke::<i64>(&script).await? {
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
        let mut script = scripts::TOUCH.prepare_invoke();
        script
            .key(self.keys.session(key))
            .arg(now.as_millis())
            .arg(clamp(idle_deadline));
        Ok(self.invoke::<i64>(&script).await? == 1)
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        // The subject index keeps the member; lists prune it lazily.
        self.query::<i64>(redis::cmd("DEL").arg(self.keys.session(key)))
            .await
            .map(drop)
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
        let old_name = self.keys.session(old_key);
        let new_name = self.keys.session(&new.key);
        if self.is_cluster() && slot(old_name.as_bytes()) != slot(new_name.as_bytes()) {
            return self
                .rotate_across_slots(old_key, expected_version, new, now)
                .await;
        }
        let mut script = scripts::ROTATE.prepare_invoke();
        script
            .key(&old_name)
            .key(&new_name)
            .arg(now.as_millis())
            .arg(expected_version);
        record_args(&mut script, new);
        match self.invoke::<i64>(&script).await? {
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
                let mut script = scripts::DELETE_IF_SUBJECT.prepare_invoke();
                script
                    .key(self.keys.session(&key))
                    .arg(subject)
                    .arg(now.as_millis());
                Ok((member, self.invoke::<i64>(&script).await?))
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
            if let Err(error) = self
                .query::<i64>(redis::cmd("ZREM").arg(&set).arg(deleted))
                .await
            {
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
        let reply: String = self.query(&redis::cmd("PING")).await?;
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

fn clamp(time: Timestamp) -> u64 {
    time.as_millis().min(MAX_MILLIS)
}

fn grace_millis(grace: Duration) -> u64 {
    u64::try_from(grace.as_millis()).unwrap_or(MAX_MILLIS)
}

/// The eight record arguments shared by the create, update and rotate scripts.
fn record_args(script: &mut ScriptInvocation<'_>, record: &Record) {
    let idle = clamp(record.idle_deadline);
    let absolute = clamp(record.absolute_deadline);
    script
        .arg(record.encode())
        .arg(record.version)
        .arg(idle)
        .arg(absolute)
        .arg(clamp(record.last_seen_at))
        .arg(idle.min(absolute));
    match &record.subject {
        Some(subject) => script.arg("1").arg(&**subject),
        None => script.arg("0").arg(""),
    };
}

fn key_of(member: &[u8]) -> Option<Key> {
    <[u8; 32]>::try_from(member).ok().map(Key::from_bytes)
}

/// The blob with the fields that scripts change on their own laid over it.
fn decode(
    key: &Key,
    blob: &[u8],
    version: Option<String>,
    idle: Option<String>,
    last_seen: Option<String>,
) -> Result<Record, &'static str> {
    let mut record = Record::decode(blob).map_err(|_| "malformed blob")?;
    if record.key != *key {
        return Err("blob stored under another key");
    }
    let number = |field: Option<String>| -> Result<u64, &'static str> {
        field
            .ok_or("missing field")?
            .parse()
            .map_err(|_| "non-numeric field")
    };
    record.version = number(version)?;
    record.idle_deadline = Timestamp::from_millis(number(idle)?);
    record.last_seen_at = Timestamp::from_millis(number(last_seen)?);
    Ok(record)
}

// The trait object the engine holds must be shareable.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Arc<RedisStore>>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::SessionId;
    use tessera_core::testing::fresh_record;

    #[test]
    fn hash_fields_override_the_blob() {
        let record = fresh_record(Some("alice"));
        let blob = record.encode();
        let touched = decode(
            &record.key,
            &blob,
            Some("7".into()),
            Some("123".into()),
            Some("45".into()),
        )
        .unwrap();
        assert_eq!(touched.version, 7);
        assert_eq!(touched.idle_deadline, Timestamp::from_millis(123));
        assert_eq!(touched.last_seen_at, Timestamp::from_millis(45));
        assert_eq!(touched.data, record.data);
    }

    #[test]
    fn damaged_records_are_refused() {
        let record = fresh_record(None);
        let blob = record.encode();
        let other = SessionId::generate().key();
        let ok = || (Some("1".into()), Some("2".into()), Some("3".into()));
        let (v, i, l) = ok();
        assert!(decode(&other, &blob, v, i, l).is_err());
        let (v, i, l) = ok();
        assert!(decode(&record.key, &blob[..blob.len() - 1], v, i, l).is_err());
        assert!(decode(&record.key, &blob, None, Some("2".into()), Some("3".into())).is_err());
        assert!(
            decode(
                &record.key,
                &blob,
                Some("x".into()),
                Some("2".into()),
                Some("3".into())
            )
            .is_err()
        );
    }

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
