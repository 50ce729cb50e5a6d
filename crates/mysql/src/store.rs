//! The MySQL / MariaDB [`Store`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, TxOpts};
use tessera_core::{Capabilities, Key, Record, Store, StoreError, Timestamp};

use crate::error::{
    ConfigError, DEADLOCK, RecordError, TimedOut, from_my, is_duplicate, server_code,
};
use crate::options::Options;
use crate::schema;
use crate::tls;

/// The longest subject the `subject` column holds, in characters.
pub const MAX_SUBJECT_CHARS: usize = 255;

/// How long an idle pooled connection is kept before it is closed.
const IDLE_CONNECTION_TTL: Duration = Duration::from_secs(300);

/// How often `rotate` retries a transaction that InnoDB chose as a deadlock victim.
const DEADLOCK_RETRIES: usize = 3;

/// Sessions in a MySQL or MariaDB (InnoDB) table, shared by every process that connects to it.
///
/// Cheap to clone: clones share one connection pool. See the [crate docs](crate) for the
/// schema and how each operation keeps the store contract.
#[derive(Clone)]
pub struct MySqlStore {
    pool: Pool,
    opts: Opts,
    sql: Arc<Sql>,
    table: Arc<str>,
    operation_timeout: Duration,
}

impl std::fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlStore")
            .field("table", &self.table)
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
    rotate_delete: String,
    list_subject: String,
    delete_subject_live: String,
    delete_subject_rest: String,
    purge: String,
    count: String,
}

impl Sql {
    fn new(t: &str) -> Self {
        const COLUMNS: &str = "session_key, subject, last_seen_at, idle_deadline, \
                               absolute_deadline, expires_at, version, record";
        const SELECT: &str = "session_key, last_seen_at, idle_deadline, absolute_deadline, \
                              version, record";
        // Lookups by key or subject write `expires_at + 0 > ?`, which no index can serve, so
        // the optimizer uses the primary key or the subject index: MariaDB otherwise picks
        // the `expires_at` range (all live rows) for single-table UPDATE and DELETE, and
        // concurrent touches then lock one another's rows.
        Self {
            create: format!("INSERT INTO {t} ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            load: format!("SELECT {SELECT} FROM {t} WHERE session_key = ? AND expires_at + 0 > ?"),
            update: format!(
                "UPDATE {t} SET subject = ?, last_seen_at = ?, idle_deadline = ?,
                    absolute_deadline = ?, expires_at = ?, version = ?, record = ?
                 WHERE session_key = ? AND version = ? AND expires_at + 0 > ?"
            ),
            is_live: format!("SELECT 1 FROM {t} WHERE session_key = ? AND expires_at + 0 > ?"),
            // Only a live row matches, so an expired session is never revived; the new idle
            // deadline is capped at the row's absolute deadline (which it does not change, so
            // MySQL's left-to-right assignment order does not matter here).
            touch: format!(
                "UPDATE {t} SET last_seen_at = ?,
                    idle_deadline = LEAST(?, absolute_deadline),
                    expires_at = LEAST(?, absolute_deadline)
                 WHERE session_key = ? AND expires_at + 0 > ?"
            ),
            delete: format!("DELETE FROM {t} WHERE session_key = ?"),
            rotate_delete: format!(
                "DELETE FROM {t} WHERE session_key = ? AND version = ? AND expires_at + 0 > ?"
            ),
            list_subject: format!(
                "SELECT {SELECT} FROM {t} WHERE subject = ? AND expires_at + 0 > ?"
            ),
            // The kept key is bound as an empty string (no key is empty) to keep none.
            delete_subject_live: format!(
                "DELETE FROM {t} WHERE subject = ? AND session_key <> ? AND expires_at + 0 > ?"
            ),
            delete_subject_rest: format!("DELETE FROM {t} WHERE subject = ? AND session_key <> ?"),
            // The expiry index yields the oldest dead rows first.
            purge: format!("DELETE FROM {t} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"),
            count: format!("SELECT COUNT(*) FROM {t} WHERE expires_at > ?"),
        }
    }
}

/// A selected row: key, last_seen_at, idle_deadline, absolute_deadline, version, record.
type RecordRow = (Vec<u8>, u64, u64, u64, u64, Vec<u8>);

/// Turns a row into a record. The columns that `touch` and `update` keep current override the
/// blob's copies. A blob that does not decode, or decodes to another key, is logged and read
/// as "no session".
fn record_from_row(table: &str, row: RecordRow) -> Option<Record> {
    let (key_bytes, last_seen_at, idle_deadline, absolute_deadline, version, blob) = row;
    let key = <[u8; 32]>::try_from(key_bytes.as_slice())
        .ok()
        .map(Key::from_bytes);
    match (key, Record::decode(&blob)) {
        (Some(key), Ok(mut record)) if record.key == key => {
            record.last_seen_at = Timestamp::from_millis(last_seen_at);
            record.idle_deadline = Timestamp::from_millis(idle_deadline);
            record.absolute_deadline = Timestamp::from_millis(absolute_deadline);
            record.version = version;
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

fn check_subject(record: &Record) -> Result<(), StoreError> {
    match record.subject.as_deref() {
        Some(subject) if subject.chars().count() > MAX_SUBJECT_CHARS => {
            Err(StoreError::backend(RecordError::SubjectTooLong {
                chars: subject.chars().count(),
            }))
        }
        _ => Ok(()),
    }
}

/// A record's column values, in `COLUMNS` order: key, subject, last_seen_at, idle_deadline,
/// absolute_deadline, expires_at, version, record.
type Columns = (Vec<u8>, Option<String>, u64, u64, u64, u64, u64, Vec<u8>);

fn columns(record: &Record) -> Columns {
    (
        record.key.as_bytes().to_vec(),
        record.subject.as_deref().map(str::to_owned),
        record.last_seen_at.as_millis(),
        record.idle_deadline.as_millis(),
        record.absolute_deadline.as_millis(),
        record
            .idle_deadline
            .min(record.absolute_deadline)
            .as_millis(),
        record.version,
        record.encode(),
    )
}

impl MySqlStore {
    /// Connects with default [`Options`] (table `tessera_sessions`, migrated on connect).
    ///
    /// `url` is a `mysql://user:password@host:port/database` URL; the driver's URL parameters
    /// apply, except that the pool size is [`Options::pool_size`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tessera_core::StoreError> {
    /// use tessera_core::Sessions;
    /// use tessera_mysql::MySqlStore;
    ///
    /// let store = MySqlStore::connect("mysql://root@127.0.0.1:3306/app").await?;
    /// let sessions = Sessions::new(store);
    /// # let _ = sessions; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`MySqlStore::connect_with`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, Options::default()).await
    }

    /// Connects with the given [`Options`]: builds the pool, checks that the server answers
    /// within [`Options::connect_timeout`], and (unless turned off) runs
    /// [`MySqlStore::migrate`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached in time;
    /// [`StoreError::Backend`] wrapping a [`ConfigError`] for a bad URL or table name or a
    /// schema newer than this build, or wrapping the driver's error for anything else the
    /// server refused (such as bad credentials).
    pub async fn connect_with(url: &str, options: Options) -> Result<Self, StoreError> {
        options.validate()?;
        let tls = tls::split(url)?;
        let opts = Opts::from_url(&tls.rest).map_err(ConfigError::InvalidUrl)?;
        let Some(mode) = tls.mode else {
            // No `ssl-mode`: the driver's own parameters (`require_ssl`, ...) apply.
            return Self::connect_opts(opts, options).await;
        };
        let with_tls = |ssl: Option<mysql_async::SslOpts>| -> Opts {
            OptsBuilder::from_opts(opts.clone()).ssl_opts(ssl).into()
        };
        let first = Self::connect_opts(with_tls(tls.ssl_opts(mode)?), options.clone()).await;
        match first {
            // PREFERRED falls back to plain TCP only when the server has no TLS at all, never
            // when a certificate is refused.
            Err(StoreError::Backend(error))
                if mode == tls::SslMode::Preferred
                    && matches!(
                        error.downcast_ref::<mysql_async::Error>(),
                        Some(mysql_async::Error::Driver(
                            DriverError::NoClientSslFlagFromServer
                        ))
                    ) =>
            {
                tracing::warn!("MySQL server offers no TLS; ssl-mode=PREFERRED goes on without it");
                Self::connect_opts(with_tls(None), options).await
            }
            other => other,
        }
    }

    /// Builds the pool from parsed driver options and connects as `connect_with` says.
    async fn connect_opts(opts: Opts, options: Options) -> Result<Self, StoreError> {
        let tls = opts.ssl_opts().is_some();
        if tls {
            // The driver builds its TLS configuration from the process's rustls provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let prefer_socket = !tls && opts.prefer_socket();
        let constraints =
            PoolConstraints::new(0, options.pool_size).expect("0 <= pool_size and pool_size >= 1");
        let opts: Opts = OptsBuilder::from_opts(opts)
            // No COM_RESET_CONNECTION when a connection goes back to the pool: it would cost a
            // round trip per call and drop the server-side prepared statements that the
            // per-connection statement cache relies on. The store keeps no session state of
            // its own beyond the isolation level below, and the pool still rolls back an
            // unfinished transaction and drains unread results before reuse.
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    // Idle connections stay open for reuse (the driver's default of zero
                    // closes every connection above the minimum as soon as it is returned).
                    .with_inactive_connection_ttl(IDLE_CONNECTION_TTL)
                    .with_reset_connection(false),
            )
            // Affected rows count matched rows, not changed ones: a touch that writes the same
            // values (twice in one millisecond) still reports that the session is there.
            .client_found_rows(true)
            // With TLS, stay on TCP: the driver would otherwise move a connection to a local
            // server's Unix socket, where it does no TLS.
            .prefer_socket(prefer_socket)
            // Read committed: no gap locks, so concurrent creates and rotations on different
            // keys do not block or deadlock one another.
            .setup(vec![
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            ])
            .into();
        let store = Self {
            pool: Pool::new(opts.clone()),
            opts,
            sql: Arc::new(Sql::new(&options.table)),
            table: options.table.as_str().into(),
            operation_timeout: options.operation_timeout,
        };
        let connect_timeout = options.connect_timeout;
        match tokio::time::timeout(connect_timeout, store.ping_inner()).await {
            Ok(result) => result?,
            Err(_) => return Err(StoreError::unavailable(TimedOut(connect_timeout))),
        }
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Creates the table and its indexes, or brings them up to this build's schema version.
    /// The version is recorded per table in `tessera_schema_versions`. Idempotent; safe to run
    /// from several processes at once (they take turns on a named lock).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached; [`StoreError::Backend`]
    /// if the server refuses a statement (for example, no `CREATE` privilege), another process
    /// holds the migration lock for over 30 s, or the table was migrated by a newer build
    /// ([`ConfigError::NewerSchema`]).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let timeout = self.operation_timeout.max(Duration::from_secs(60));
        match tokio::time::timeout(timeout, schema::migrate(self.opts.clone(), &self.table)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::unavailable(TimedOut(timeout))),
        }
    }

    /// The table this store uses.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Closes the pool's connections. Calls after this fail with
    /// [`StoreError::Unavailable`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`] if a connection could not be
    /// closed cleanly.
    pub async fn disconnect(self) -> Result<(), StoreError> {
        self.pool.disconnect().await.map_err(from_my)
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

    async fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get_conn().await.map_err(from_my)
    }

    async fn ping_inner(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.ping().await.map_err(from_my)
    }

    /// After a CAS statement matched no row: a live row means its version moved
    /// ([`StoreError::Conflict`]), none means the session is gone ([`StoreError::NotFound`]).
    async fn cas_failure(&self, conn: &mut Conn, key: &Key, now: Timestamp) -> StoreError {
        let live: Result<Option<u8>, _> = conn
            .exec_first(
                &self.sql.is_live,
                (key.as_bytes().as_slice(), now.as_millis()),
            )
            .await;
        match live {
            Ok(Some(_)) => StoreError::Conflict,
            Ok(None) => StoreError::NotFound,
            Err(error) => from_my(error),
        }
    }

    async fn rotate_once(
        &self,
        conn: &mut Conn,
        old_key: &Key,
        expected_version: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<Result<(), StoreError>, mysql_async::Error> {
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        tx.exec_drop(
            &self.sql.rotate_delete,
            (
                old_key.as_bytes().as_slice(),
                expected_version,
                now.as_millis(),
            ),
        )
        .await?;
        if tx.affected_rows() != 1 {
            tx.rollback().await?;
            return Ok(Err(StoreError::Conflict));
        }
        match tx.exec_drop(&self.sql.create, columns(new)).await {
            Ok(()) => {}
            Err(error) if is_duplicate(&error) => {
                tx.rollback().await?;
                return Ok(Err(StoreError::Duplicate));
            }
            Err(error) => return Err(error),
        }
        tx.commit().await?;
        Ok(Ok(()))
    }
}

#[async_trait]
impl Store for MySqlStore {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::FULL
    }

    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        check_subject(record)?;
        self.timed(async {
            let mut conn = self.conn().await?;
            match conn.exec_drop(&self.sql.create, columns(record)).await {
                Ok(()) => Ok(()),
                Err(error) if is_duplicate(&error) => Err(StoreError::Duplicate),
                Err(error) => Err(from_my(error)),
            }
        })
        .await
    }

    async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.timed(async {
            let mut conn = self.conn().await?;
            let row: Option<RecordRow> = conn
                .exec_first(&self.sql.load, (key.as_bytes().as_slice(), now.as_millis()))
                .await
                .map_err(from_my)?;
            Ok(row.and_then(|row| record_from_row(&self.table, row)))
        })
        .await
    }

    async fn update(
        &self,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        check_subject(record)?;
        self.timed(async {
            let mut conn = self.conn().await?;
            let (key, subject, last_seen, idle, absolute, expires, version, blob) = columns(record);
            conn.exec_drop(
                &self.sql.update,
                (
                    subject,
                    last_seen,
                    idle,
                    absolute,
                    expires,
                    version,
                    blob,
                    key,
                    expected_version,
                    now.as_millis(),
                ),
            )
            .await
            .map_err(from_my)?;
            if conn.affected_rows() == 1 {
                Ok(())
            } else {
                Err(self.cas_failure(&mut conn, &record.key, now).await)
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
            let mut conn = self.conn().await?;
            conn.exec_drop(
                &self.sql.touch,
                (
                    now.as_millis(),
                    idle_deadline.as_millis(),
                    idle_deadline.as_millis(),
                    key.as_bytes().as_slice(),
                    now.as_millis(),
                ),
            )
            .await
            .map_err(from_my)?;
            Ok(conn.affected_rows() == 1)
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.timed(async {
            let mut conn = self.conn().await?;
            conn.exec_drop(&self.sql.delete, (key.as_bytes().as_slice(),))
                .await
                .map_err(from_my)
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
        check_subject(new)?;
        self.timed(async {
            let mut conn = self.conn().await?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self
                    .rotate_once(&mut conn, old_key, expected_version, new, now)
                    .await
                {
                    Ok(Err(StoreError::Conflict)) => {
                        return Err(self.cas_failure(&mut conn, old_key, now).await);
                    }
                    Ok(outcome) => return outcome,
                    Err(error)
                        if server_code(&error) == Some(DEADLOCK) && attempt < DEADLOCK_RETRIES =>
                    {
                        tracing::debug!(attempt, "rotate chosen as deadlock victim; retrying");
                    }
                    Err(error) => return Err(from_my(error)),
                }
            }
        })
        .await
    }

    async fn list_subject(&self, subject: &str, now: Timestamp) -> Result<Vec<Record>, StoreError> {
        self.timed(async {
            let mut conn = self.conn().await?;
            let rows: Vec<RecordRow> = conn
                .exec(&self.sql.list_subject, (subject, now.as_millis()))
                .await
                .map_err(from_my)?;
            Ok(rows
                .into_iter()
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
            let mut conn = self.conn().await?;
            let kept: &[u8] = except.map_or(&[], |k| k.as_bytes().as_slice());
            conn.exec_drop(
                &self.sql.delete_subject_live,
                (subject, kept, now.as_millis()),
            )
            .await
            .map_err(from_my)?;
            let removed = conn.affected_rows();
            // The subject's dead rows are invisible already; removing them now saves the
            // purger the work.
            conn.exec_drop(&self.sql.delete_subject_rest, (subject, kept))
                .await
                .map_err(from_my)?;
            Ok(removed)
        })
        .await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        self.timed(async {
            let mut conn = self.conn().await?;
            conn.exec_drop(&self.sql.purge, (now.as_millis(), limit))
                .await
                .map_err(from_my)?;
            Ok(conn.affected_rows())
        })
        .await
    }

    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        self.timed(async {
            let mut conn = self.conn().await?;
            let live: Option<u64> = conn
                .exec_first(&self.sql.count, (now.as_millis(),))
                .await
                .map_err(from_my)?;
            Ok(Some(live.unwrap_or(0)))
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(self.ping_inner()).await
    }
}
