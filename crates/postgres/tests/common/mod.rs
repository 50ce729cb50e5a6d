//! Test scaffolding: a store on a throw-away table that is dropped when the test ends, and
//! the skip-or-fail rule for a missing server.

#![allow(dead_code, unreachable_pub)]

use std::sync::Once;

use tessera_core::Timestamp;
use tessera_core::testing;
use tessera_postgres::{Options, PostgresStore, SCHEMA_TABLE};
use tokio_postgres::NoTls;

/// The test server; `TESSERA_POSTGRES_URL` overrides it.
pub fn url() -> String {
    std::env::var("TESSERA_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A store on a throw-away table that is dropped when the test ends.
pub type Scoped = testing::Scoped<PostgresStore>;

/// Connects a store on `table`, or returns `None` (after saying why) when the server is down
/// and the environment does not require it. Under `TESSERA_REQUIRE_STORES=1` a missing server
/// fails the test.
pub async fn connect(table: &str, options: Options) -> Option<Scoped> {
    drop_stale_tables_once().await;
    let connected = PostgresStore::connect_with(&url(), options.table(table)).await;
    let store = testing::store_or_skip("PostgreSQL", &url(), connected)?;
    Some(Scoped::new(store, drop_table(table.to_owned())))
}

/// A table name no other test or run uses: `t_<prefix>_<8 hex digits>`.
pub fn unique_table(prefix: &str) -> String {
    testing::unique_namespace(prefix)
}

/// A raw client for tests that poke at the table behind the store's back.
pub async fn raw_client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls)
        .await
        .expect("raw connection");
    tokio::spawn(connection);
    client
}

async fn drop_table(table: String) -> Result<(), tokio_postgres::Error> {
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
        drop_table(table).await?;
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
