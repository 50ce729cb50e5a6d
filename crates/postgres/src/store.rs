//! The PostgreSQL [`Store`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tessera_core::{Capabilities, Key, Record, Store, StoreError, Timestamp};
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{NoTls, Row};

use crate::error::{ConfigError, TimedOut, from_pg, from_pool, is_unique_violation};
use crate::options::Options;
use crate::schema;
use crate::tls;

/// Sessions in a PostgreSQL table, shared by every process that connects to it.
///
/// Cheap to clone: clones share one connection pool. See the [crate docs](crate) for the
/// schema and how each operation keeps the store contract.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    sql: Arc<Sql>,
    table: Arc<str>,
    operation_timeout: Duration,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

/// The statements, with the table name filled in once.
struct Sql {
    create: String,
    load: String,
    update: String,
    is_live: String,
    touch: String,
    delete: String,
    rotate: String,
    list_subject: String,
    delete_subject: String,
    purge: String,
    count: String,
}

impl Sql {
    fn new(t: &str) -> Self {
        const COLUMNS: &str = "session_key, subject, last_seen_at, idle_deadline, \
                               absolute_deadline, expires_at, version, record";
        Self {
            create: format!("INSERT INTO {t} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
            load: format!(
                "SELECT session_key, last_seen_at, idle_deadline, absolute_deadline, version, \
                 record FROM {t} WHERE session_key = $1 AND expires_at > $2"
            ),
            // The CAS alone, judged by the rows it changed: the common case is one statement
            // with one index probe. `is_live` runs only when it changed nothing.
            update: format!(
                "UPDATE {t} SET subject = $2, last_seen_at = $3, idle_deadline = $4,
                    absolute_deadline = $5, expires_at = $6, version = $7, record = $8
                 WHERE session_key = $1 AND version = $9 AND expires_at > $10"
            ),
            is_live: format!("SELECT 1 FROM {t} WHERE session_key = $1 AND expires_at > $2"),
            // Only a live row matches, so an expired session is never revived; the new idle
            // deadline is capped at the row's absolute deadline.
            touch: format!(
                "UPDATE {t} SET last_seen_at = $2,
                    idle_deadline = LEAST($3::BIGINT, absolute_deadline),
                    expires_at = LEAST($3::BIGINT, absolute_deadline)
                 WHERE session_key = $1 AND expires_at > $2"
            ),
            delete: format!("DELETE FROM {t} WHERE session_key = $1"),
            // One statement, so one transaction: the insert happens only if the CAS-delete of
            // the old key did, and a duplicate new key aborts both.
            rotate: format!(
                "WITH old AS (
                    DELETE FROM {t} WHERE session_key = $1 AND version = $2 AND expires_at > $3
                    RETURNING 1),
                 new AS (
                    INSERT INTO {t} ({COLUMNS})
                    SELECT $4::BYTEA, $5::TEXT, $6::BIGINT, $7::BIGINT, $8::BIGINT, $9::BIGINT,
                           $10::BIGINT, $11::BYTEA
                    WHERE EXISTS (SELECT 1 FROM old)
                    RETURNING 1)
                 SELECT EXISTS (SELECT 1 FROM new),
                        EXISTS (SELECT 1 FROM {t} WHERE session_key = $1 AND expires_at > $3)"
            ),
            list_subject: format!(
                "SELECT session_key, last_seen_at, idle_deadline, absolute_deadline, version, \
                 record FROM {t} WHERE subject = $1 AND expires_at > $2"
            ),
            // Dead rows of the subject go too, but only live ones are counted. `$2` is the
            // kept key, or an empty string (no key is empty) to keep none.
            delete_subject: format!(
                "WITH gone AS (
                    DELETE FROM {t} WHERE subject = $1 AND session_key <> $2
                    RETURNING expires_at)
                 SELECT count(*) FILTER (WHERE expires_at > $3) FROM gone"
            ),
            // The slot index yields the oldest dead rows first: every row of a slot before
            // now's (`$3`) is dead, and those of now's own slot are kept or taken on their
            // exact `expires_at`. SKIP LOCKED lets several purgers (one per instance) share
            // the work without waiting on each other.
            purge: format!(
                "DELETE FROM {t} WHERE expires_at <= $1 AND session_key IN (
                    SELECT session_key FROM {t} WHERE expiry_slot <= $3 AND expires_at <= $1
                    ORDER BY expiry_slot LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            count: format!("SELECT count(*) FROM {t} WHERE expiry_slot >= $2 AND expires_at > $1"),
        }
    }
}

/// Milliseconds as PostgreSQL's BIGINT; times past year 292 million saturate.
fn millis(t: Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

fn timestamp(millis: i64) -> Timestamp {
    Timestamp::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// The u64 version, bit for bit, in a BIGINT: versions are only compared for equality.
#[allow(clippy::cast_possible_wrap)]
fn version_column(version: u64) -> i64 {
    version as i64
}

#[allow(clippy::cast_sign_loss)]
fn version_value(column: i64) -> u64 {
    column as u64
}

/// Turns a row (`session_key, last_seen_at, idle_deadline, absolute_deadline, version,
/// record`) into a record. The columns that `touch` and `update` keep current override the
/// blob's copies. A blob that does not decode, or decodes to another key, is logged and read
/// as "no session".
fn record_from_row(table: &str, row: &Row) -> Option<Record> {
    let key_bytes: &[u8] = row.get(0);
    let key = <[u8; 32]>::try_from(key_bytes).ok().map(Key::from_bytes);
    let blob: &[u8] = row.get(5);
    match (key, Record::decode(blob)) {
        (Some(key), Ok(mut record)) if record.key == key => {
            record.last_seen_at = timestamp(row.get(1));
            record.idle_deadline = timestamp(row.get(2));
            record.absolute_deadline = timestamp(row.get(3));
            record.version = version_value(row.get(4));
            Some(record)
        }
        (key, result) => {
            let session = key.map_or_else(|| "(bad key)".to_owned(), |k| k.short().to_string());
            match result {
                Ok(_) => tracing::error!(
                    table,
                    %session,
                    "session record holds another key; ignored"
                ),
                Err(error) => tracing::error!(
                    table,
                    %session,
                    %error,
                    "undecodable session record ignored"
                ),
            }
            None
        }
    }
}

/// The pool, over plain TCP or TLS.
fn build_pool<T>(
    config: tokio_postgres::Config,
    tls: T,
    options: &Options,
) -> Result<Pool, ConfigError>
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_size)
        .wait_timeout(Some(options.operation_timeout))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(ConfigError::Pool)
}

impl PostgresStore {
    /// Connects with default [`Options`] (table `tessera_sessions`, migrated on connect).
    ///
    /// `url` is a libpq-style URL (`postgres://user:password@host:port/database?...`) or
    /// key-value string (`host=... user=...`).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tessera_core::StoreError> {
    /// use tessera_core::Sessions;
    /// use tessera_postgres::PostgresStore;
    ///
    /// let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
    /// let sessions = Sessions::new(store);
    /// # let _ = sessions; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect_with`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, Options::default()).await
    }

    /// Connects with the given [`Options`]: builds the pool, checks that the server answers,
    /// and (unless turned off) runs [`PostgresStore::migrate`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached within the timeouts;
    /// [`StoreError::Backend`] wrapping a [`ConfigError`] for a bad URL or table name or a
    /// schema newer than this build, or wrapping the driver's error for anything else the
    /// server refused (such as bad credentials).
    pub async fn connect_with(url: &str, options: Options) -> Result<Self, StoreError> {
        options.validate()?;
        let tls = tls::split(url)?;
        let mut config: tokio_postgres::Config =
            tls.rest.parse().map_err(ConfigError::InvalidUrl)?;
        config.connect_timeout(options.connect_timeout);
        config.ssl_mode(tls.driver_mode());
        if config.get_application_name().is_none() {
            config.application_name("tessera");
        }
        let pool = match tls.mode {
            tls::SslMode::Disable => build_pool(config, NoTls, &options)?,
            _ => build_pool(config, tls.connector()?, &options)?,
        };
        let store = Self {
            pool,
            sql: Arc::new(Sql::new(&options.table)),
            table: options.table.as_str().into(),
            operation_timeout: options.operation_timeout,
        };
        store.ping().await?;
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Creates the table and its indexes, or brings them up to this build's schema version.
    /// The version is recorded per table in `tessera_schema_versions`. Idempotent; safe to run
    /// from several processes at once (they take turns on an advisory lock).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached; [`StoreError::Backend`]
    /// if the server refuses a statement (for example, no `CREATE` privilege) or the table was
    /// migrated by a newer build ([`ConfigError::NewerSchema`]).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let timeout = self.operation_timeout.max(Duration::from_secs(30));
        match tokio::time::timeout(timeout, schema::migrate(&self.pool, &self.table)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::unavailable(TimedOut(timeout))),
        }
    }

    /// The table this store uses.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Runs `op` under the operation timeout.
    async fn timed<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.operation_timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::unavailable(TimedOut(self.operation_timeout))),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(from_pool)
    }

    /// Runs `sql` (prepared once per connection) and returns its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(from_pg)?;
        client.query(&statement, params).await.map_err(from_pg)
    }

    /// Runs `sql` (prepared once per connection) and returns how many rows it changed.
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(from_pg)?;
        client.execute(&statement, params).await.map_err(from_pg)
    }

    /// Runs a statement answering (done, was-live) and maps it to the CAS outcome.
    async fn compare_and_swap(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(from_pg)?;
        let row = match client.query_one(&statement, params).await {
            Ok(row) => row,
            Err(error) if is_unique_violation(&error) => return Err(StoreError::Duplicate),
            Err(error) => return Err(from_pg(error)),
        };
        let (done, was_live): (bool, bool) = (row.get(0), row.get(1));
        match (done, was_live) {
            (true, _) => Ok(()),
            (false, true) => Err(StoreError::Conflict),
            (false, false) => Err(StoreError::NotFound),
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::FULL
    }

    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&self.sql.create)
                .await
                .map_err(from_pg)?;
            let blob = record.encode();
            let result = client
                .execute(
                    &statement,
                    &[
                        &record.key.as_bytes().as_slice(),
                        &record.subject.as_deref(),
                        &millis(record.last_seen_at),
                        &millis(record.idle_deadline),
                        &millis(record.absolute_deadline),
                        &millis(record.idle_deadline.min(record.absolute_deadline)),
                        &version_column(record.version),
                        &blob,
                    ],
                )
                .await;
            match result {
                Ok(_) => Ok(()),
                Err(error) if is_unique_violation(&error) => Err(StoreError::Duplicate),
                Err(error) => Err(from_pg(error)),
            }
        })
        .await
    }

    async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.timed(async {
            let rows = self
                .query(&self.sql.load, &[&key.as_bytes().as_slice(), &millis(now)])
                .await?;
            Ok(rows
                .first()
                .and_then(|row| record_from_row(&self.table, row)))
        })
        .await
    }

    async fn update(
        &self,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.timed(async {
            let blob = record.encode();
            let key = record.key.as_bytes().as_slice();
            let now = millis(now);
            let changed = self
                .execute(
                    &self.sql.update,
                    &[
                        &key,
                        &record.subject.as_deref(),
                        &millis(record.last_seen_at),
                        &millis(record.idle_deadline),
                        &millis(record.absolute_deadline),
                        &millis(record.idle_deadline.min(record.absolute_deadline)),
                        &version_column(record.version),
                        &blob,
                        &version_column(expected_version),
                        &now,
                    ],
                )
                .await?;
            if changed == 1 {
                return Ok(());
            }
            // Nothing changed: the row was absent, dead, or at another version. Which one is
            // asked in a second statement, so the row may have moved in between; the answer
            // is still one the CAS could have given at the moment of that second look. A
            // dead or absent row never comes back (nothing revives an expired row, and keys
            // are never reused), so "live now" means it was live, at another version, when
            // the UPDATE looked: a conflict. "Not live now" means the session has ended, which
            // is what NotFound says, even if it ended just after the UPDATE looked.
            let live = self.query(&self.sql.is_live, &[&key, &now]).await?;
            if live.is_empty() {
                Err(StoreError::NotFound)
            } else {
                Err(StoreError::Conflict)
            }
        })
        .await
    }

    async fn touch(
        &self,
        key: &Key,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.timed(async {
            let changed = self
                .execute(
                    &self.sql.touch,
                    &[
                        &key.as_bytes().as_slice(),
                        &millis(now),
                        &millis(idle_deadline),
                    ],
                )
                .await?;
            Ok(changed == 1)
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.timed(async {
            self.execute(&self.sql.delete, &[&key.as_bytes().as_slice()])
                .await
                .map(drop)
        })
        .await
    }

    async fn rotate(
        &self,
        old_key: &Key,
        expected_version: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.timed(async {
            let blob = new.encode();
            self.compare_and_swap(
                &self.sql.rotate,
                &[
                    &old_key.as_bytes().as_slice(),
                    &version_column(expected_version),
                    &millis(now),
                    &new.key.as_bytes().as_slice(),
                    &new.subject.as_deref(),
                    &millis(new.last_seen_at),
                    &millis(new.idle_deadline),
                    &millis(new.absolute_deadline),
                    &millis(new.idle_deadline.min(new.absolute_deadline)),
                    &version_column(new.version),
                    &blob,
                ],
            )
            .await
        })
        .await
    }

    async fn list_subject(&self, subject: &str, now: Timestamp) -> Result<Vec<Record>, StoreError> {
        self.timed(async {
            let rows = self
                .query(&self.sql.list_subject, &[&subject, &millis(now)])
                .await?;
            Ok(rows
                .iter()
                .filter_map(|row| record_from_row(&self.table, row))
                .collect())
        })
        .await
    }

    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&Key>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.timed(async {
            let kept: &[u8] = except.map_or(&[], |k| k.as_bytes().as_slice());
            let rows = self
                .query(&self.sql.delete_subject, &[&subject, &kept, &millis(now)])
                .await?;
            let removed: i64 = rows.first().map_or(0, |row| row.get(0));
            Ok(u64::try_from(removed).unwrap_or(0))
        })
        .await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let now = millis(now);
        let slot = schema::expiry_slot(now);
        self.timed(async { self.execute(&self.sql.purge, &[&now, &limit, &slot]).await })
            .await
    }

    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        self.timed(async {
            let now = millis(now);
            let rows = self
                .query(&self.sql.count, &[&now, &schema::expiry_slot(now)])
                .await?;
            let live: i64 = rows.first().map_or(0, |row| row.get(0));
            Ok(Some(u64::try_from(live).unwrap_or(0)))
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await.map_err(from_pg)?;
            Ok(())
        })
        .await
    }
}
