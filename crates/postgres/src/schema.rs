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
    // Version 2. Ordinary writes become HOT updates (the new row version goes on the same page
    // and no index changes), which PostgreSQL allows only when no indexed column changes. Every
    // write moves `expires_at`, so it is no longer indexed; the index is on `expiry_slot`,
    // `expires_at` in whole slots of EXPIRY_SLOT_MILLIS, which a write moves only when the
    // expiry crosses into the next slot. `expires_at` stays the exact expiry that every
    // liveness check and the purge compare against; the slot only narrows the purge's range.
    // Fill factor 80 (set first, so the rewrite that adds the column already honours it)
    // leaves each page room for the new versions. Existing rows keep their data: the
    // generated column is computed for them by the rewrite.
    "ALTER TABLE {t} SET (fillfactor = 80);
    DROP INDEX IF EXISTS {t}_expires_idx;
    ALTER TABLE {t} ADD COLUMN IF NOT EXISTS expiry_slot BIGINT
        GENERATED ALWAYS AS (expires_at / 300000) STORED;
    CREATE INDEX IF NOT EXISTS {t}_expiry_slot_idx ON {t} (expiry_slot);",
];

/// The width of an `expiry_slot` (version 2), in milliseconds: five minutes. Wider slots make
/// more writes HOT (a write is HOT unless the session's expiry crossed a slot boundary since
/// its last write, so a session touched once a minute has four HOT touches in five); the
/// price is that a purge filters, on `expires_at`, the rows of the one slot that holds "now"
/// (the sessions expiring within the next five minutes), besides deleting its batch.
pub(crate) const EXPIRY_SLOT_MILLIS: i64 = 300_000;

/// The slot of a time in milliseconds, as the generated column computes it.
pub(crate) fn expiry_slot(millis: i64) -> i64 {
    millis / EXPIRY_SLOT_MILLIS
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_slot_column_uses_the_slot_width_of_the_statements() {
        let column = format!("GENERATED ALWAYS AS (expires_at / {EXPIRY_SLOT_MILLIS}) STORED");
        assert!(MIGRATIONS[1].contains(&column), "{}", MIGRATIONS[1]);
    }

    #[test]
    fn a_time_falls_in_the_slot_that_holds_it() {
        assert_eq!(expiry_slot(0), 0);
        assert_eq!(expiry_slot(EXPIRY_SLOT_MILLIS - 1), 0);
        assert_eq!(expiry_slot(EXPIRY_SLOT_MILLIS), 1);
        assert_eq!(expiry_slot(i64::MAX), i64::MAX / EXPIRY_SLOT_MILLIS);
    }
}
