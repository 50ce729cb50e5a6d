//! Test scaffolding: a store on a throw-away table that is dropped when the test ends, and
//! the skip-or-fail rule for a missing server.

#![allow(dead_code, unreachable_pub)]

use std::sync::Once;

use async_trait::async_trait;
use tessera_core::{Capabilities, Key, Record, Store, StoreError, Timestamp};
use tessera_postgres::{Options, PostgresStore, SCHEMA_TABLE};
use tokio_postgres::NoTls;

/// The test server; `TESSERA_POSTGRES_URL` overrides it.
pub fn url() -> String {
    std::env::var("TESSERA_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn required() -> bool {
    std::env::var("TESSERA_REQUIRE_STORES").is_ok_and(|v| v == "1")
}

/// Connects a store on `table`, or returns `None` (after saying why) when the server is down
/// and the environment does not require it. Under `TESSERA_REQUIRE_STORES=1` a missing server
/// fails the test.
pub async fn connect(table: &str, options: Options) -> Option<Scoped> {
    drop_stale_tables_once().await;
    match PostgresStore::connect_with(&url(), options.table(table)).await {
        Ok(store) => Some(Scoped {
            store,
            table: table.to_owned(),
        }),
        Err(StoreError::Unavailable(error)) => {
            assert!(
                !required(),
                "PostgreSQL at {} is required (TESSERA_REQUIRE_STORES=1) but unavailable: {error}",
                url()
            );
            say(&format!(
                "skipped PostgreSQL store test: server at {} unavailable: {}",
                url(),
                chain(&*error)
            ));
            None
        }
        Err(error) => panic!("connecting to PostgreSQL failed: {error:?}"),
    }
}

/// A table name no other test or run uses: `t_<prefix>_<8 hex digits>`.
pub fn unique_table(prefix: &str) -> String {
    let key = tessera_core::SessionId::generate().key();
    let hex: String = key.as_bytes()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t_{prefix}_{hex}")
}

/// An error with its causes, `outer: inner: ...`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Writes a line to the real stderr, past libtest's capture, so that a skipped suite is
/// visible in a plain `cargo test` run.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A raw client for tests that poke at the table behind the store's back.
pub async fn raw_client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls)
        .await
        .expect("raw connection");
    tokio::spawn(connection);
    client
}

async fn drop_table(table: &str) -> Result<(), tokio_postgres::Error> {
    let client = raw_client().await;
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await?;
    client
        .execute(
            &format!("DELETE FROM {SCHEMA_TABLE} WHERE table_name = $1"),
            &[&table],
        )
        .await?;
    Ok(())
}

/// Tables of earlier runs that were killed before they could clean up: test tables start
/// with `t_`, and any migrated over an hour ago is left over.
async fn drop_stale_tables() -> Result<(), tokio_postgres::Error> {
    let Ok((client, connection)) = tokio_postgres::connect(&url(), NoTls).await else {
        return Ok(());
    };
    tokio::spawn(connection);
    let cutoff = i64::try_from(Timestamp::now().as_millis()).unwrap() - 3_600_000;
    let exists = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&SCHEMA_TABLE])
        .await?;
    if !exists.get::<_, bool>(0) {
        return Ok(());
    }
    let rows = client
        .query(
            &format!(
                "SELECT table_name FROM {SCHEMA_TABLE}
                 WHERE table_name LIKE 't\\_%' AND migrated_at < $1"
            ),
            &[&cutoff],
        )
        .await?;
    for row in rows {
        let table: String = row.get(0);
        drop_table(&table).await?;
    }
    Ok(())
}

static STALE: Once = Once::new();

async fn drop_stale_tables_once() {
    let mut first = false;
    STALE.call_once(|| first = true);
    if first {
        if let Err(error) = drop_stale_tables().await {
            eprintln!("could not drop stale test tables: {error}");
        }
    }
}

/// A store whose table is dropped when it is, so repeated runs leave nothing behind.
pub struct Scoped {
    pub store: PostgresStore,
    pub table: String,
}

impl Drop for Scoped {
    fn drop(&mut self) {
        let table = std::mem::take(&mut self.table);
        // Drop may run inside a runtime, so the cleanup gets a thread and runtime of its own.
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(drop_table(&table))
        })
        .join();
        if let Ok(Err(error)) = done {
            eprintln!("could not drop test table: {error}");
        }
    }
}

#[async_trait]
impl Store for Scoped {
    fn name(&self) -> &'static str {
        self.store.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        self.store.create(record).await
    }
    async fn load(&self, key: &Key, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.store.load(key, now).await
    }
    async fn update(
        &self,
        record: &Record,
        expected: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.store.update(record, expected, now).await
    }
    async fn touch(&self, key: &Key, idle: Timestamp, now: Timestamp) -> Result<bool, StoreError> {
        self.store.touch(key, idle, now).await
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.store.delete(key).await
    }
    async fn rotate(
        &self,
        old: &Key,
        expected: u64,
        new: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.store.rotate(old, expected, new, now).await
    }
    async fn list_subject(&self, subject: &str, now: Timestamp) -> Result<Vec<Record>, StoreError> {
        self.store.list_subject(subject, now).await
    }
    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&Key>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.store.delete_subject(subject, except, now).await
    }
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        self.store.purge_expired(now, limit).await
    }
    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        self.store.count_live(now).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}
