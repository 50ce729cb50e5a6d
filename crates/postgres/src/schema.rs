//! The table, its indexes, and the migrations that create and evolve them.

use deadpool_postgres::Pool;
use tessera_core::{StoreError, Timestamp};

use crate::error::{ConfigError, from_pg, from_pool};

/// The table that records, per session table, which schema version it has.
pub const SCHEMA_TABLE: &str = "tessera_schema_versions";

/// Advisory lock id that serializes migrations across processes ("tessera" in ASCII).
const MIGRATION_LOCK: i64 = 0x0074_6573_7365_7261;

/// The migrations, oldest first; migration `i` brings the table to version `i + 1`. Each is
/// run inside one transaction (PostgreSQL DDL is transactional), so a migration lands whole
/// or not at all. `{t}` stands for the table name.
const MIGRATIONS: &[&str] = &[
    // Version 1. `expires_at` is min(idle_deadline, absolute_deadline), kept by every write,
    // so liveness is one indexed comparison and purging walks the index from its oldest end.
    // Times are milliseconds since the Unix epoch; `version` is the record's u64 version
    // stored bit for bit in a BIGINT (only compared for equality).
    "CREATE TABLE IF NOT EXISTS {t} (
        session_key BYTEA PRIMARY KEY CHECK (octet_length(session_key) = 32),
        subject TEXT,
        last_seen_at BIGINT NOT NULL,
        idle_deadline BIGINT NOT NULL,
        absolute_deadline BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        record BYTEA NOT NULL
    );
    CREATE INDEX IF NOT EXISTS {t}_expires_idx ON {t} (expires_at);
    CREATE INDEX IF NOT EXISTS {t}_subject_idx ON {t} (subject) WHERE subject IS NOT NULL;",
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings `table` to [`SCHEMA_VERSION`]. Idempotent, and safe to run from many processes at
/// once: a transaction-scoped advisory lock lets one migrate while the others wait, and then
/// find nothing to do.
pub(crate) async fn migrate(pool: &Pool, table: &str) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(from_pool)?;
    let tx = client.transaction().await.map_err(from_pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(from_pg)?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (
            table_name TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            migrated_at BIGINT NOT NULL
        )"
    ))
    .await
    .map_err(from_pg)?;
    let current: i32 = tx
        .query_opt(
            &format!("SELECT version FROM {SCHEMA_TABLE} WHERE table_name = $1"),
            &[&table],
        )
        .await
        .map_err(from_pg)?
        .map_or(0, |row| row.get(0));
    // A table dropped by hand (to reset every session, say) while its version row stayed would
    // otherwise be "up to date" and never come back: every operation would then fail.
    let exists: bool = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(from_pg)?
        .get(0);
    let current = if exists { current } else { 0 };
    if current > SCHEMA_VERSION {
        return Err(ConfigError::NewerSchema {
            table: table.to_owned(),
            found: current,
            known: SCHEMA_VERSION,
        }
        .into());
    }
    if current == SCHEMA_VERSION {
        // Nothing to do; the transaction only held the lock.
        return tx.commit().await.map_err(from_pg);
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(&migration.replace("{t}", table))
            .await
            .map_err(from_pg)?;
        tracing::info!(table, version = index + 1, "migrated session table");
    }
    let now = i64::try_from(Timestamp::now().as_millis()).unwrap_or(i64::MAX);
    tx.execute(
        &format!(
            "INSERT INTO {SCHEMA_TABLE} (table_name, version, migrated_at) VALUES ($1, $2, $3)
             ON CONFLICT (table_name) DO UPDATE SET version = $2, migrated_at = $3"
        ),
        &[&table, &SCHEMA_VERSION, &now],
    )
    .await
    .map_err(from_pg)?;
    tx.commit().await.map_err(from_pg)
}
