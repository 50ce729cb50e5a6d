//! Test scaffolding: a store on a throw-away table that is dropped when the test ends, and
//! the skip-or-fail rule for a missing server.

#![allow(dead_code, unreachable_pub)]

use std::sync::Once;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tessera_core::Timestamp;
use tessera_core::testing;
use tessera_mysql::{MySqlStore, Options, SCHEMA_TABLE};

/// The test server; `TESSERA_MYSQL_URL` overrides it.
pub fn url() -> String {
    std::env::var("TESSERA_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A table name no other test or run uses: `t_<prefix>_<8 hex digits>`.
pub fn unique_table(prefix: &str) -> String {
    testing::unique_namespace(prefix)
}

/// A store on a throw-away table that is dropped when the test ends.
pub type Scoped = testing::Scoped<MySqlStore>;

/// Connects a store on `table`, or returns `None` (after saying why) when the server is down
/// and the environment does not require it. Under `TESSERA_REQUIRE_STORES=1` a missing server
/// fails the test.
pub async fn connect(table: &str, options: Options) -> Option<Scoped> {
    drop_stale_tables_once().await;
    let connected = MySqlStore::connect_with(&url(), options.table(table)).await;
    let store = testing::store_or_skip("MySQL/MariaDB", &url(), connected)?;
    Some(Scoped::new(store, drop_table(table.to_owned())))
}

/// A raw connection for tests that poke at the table behind the store's back.
pub async fn raw_conn() -> Conn {
    Conn::from_url(url()).await.expect("raw connection")
}

async fn drop_table(table: String) -> Result<(), mysql_async::Error> {
    let mut conn = raw_conn().await;
    conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .await?;
    conn.exec_drop(
        format!("DELETE FROM {SCHEMA_TABLE} WHERE table_name = ?"),
        (table,),
    )
    .await?;
    conn.disconnect().await
}

/// Tables of earlier runs that were killed before they could clean up: test tables start
/// with `t_`, and any migrated over an hour ago is left over.
async fn drop_stale_tables() -> Result<(), mysql_async::Error> {
    let Ok(mut conn) = Conn::from_url(url()).await else {
        return Ok(());
    };
    let exists: Option<u8> = conn
        .exec_first(
            "SELECT 1 FROM information_schema.tables
             WHERE table_schema = DATABASE() AND table_name = ?",
            (SCHEMA_TABLE,),
        )
        .await?;
    if exists.is_none() {
        return conn.disconnect().await;
    }
    let cutoff = Timestamp::now().as_millis() - 3_600_000;
    let tables: Vec<String> = conn
        .exec(
            format!(
                "SELECT table_name FROM {SCHEMA_TABLE}
                 WHERE table_name LIKE 't\\_%' AND migrated_at < ?"
            ),
            (cutoff,),
        )
        .await?;
    conn.disconnect().await?;
    for table in tables {
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
