//! The table, its indexes, and the migrations that create and evolve them.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tessera_core::{StoreError, Timestamp};

use crate::error::{ConfigError, from_my};

/// The table that records, per session table, which schema version it has.
pub const SCHEMA_TABLE: &str = "tessera_schema_versions";

/// The named lock (`GET_LOCK`) that serializes migrations across processes.
const MIGRATION_LOCK: &str = "tessera_schema_migration";

/// The migrations, oldest first; migration `i` brings the table to version `i + 1`. MySQL
/// commits DDL implicitly, so each statement is written to be safe to run again (`IF NOT
/// EXISTS`) should a migration stop half way. `{t}` stands for the table name.
const MIGRATIONS: &[&[&str]] = &[
    // Version 1. `expires_at` is min(idle_deadline, absolute_deadline), kept by every write,
    // so liveness is one indexed comparison and purging walks the index from its oldest end.
    // Times are milliseconds since the Unix epoch. `subject` compares byte for byte (binary
    // collation), as subjects do everywhere else in Tessera.
    &["CREATE TABLE IF NOT EXISTS {t} (
        session_key VARBINARY(32) NOT NULL PRIMARY KEY,
        subject VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
        last_seen_at BIGINT UNSIGNED NOT NULL,
        idle_deadline BIGINT UNSIGNED NOT NULL,
        absolute_deadline BIGINT UNSIGNED NOT NULL,
        expires_at BIGINT UNSIGNED NOT NULL,
        version BIGINT UNSIGNED NOT NULL,
        record MEDIUMBLOB NOT NULL,
        KEY expires_at_idx (expires_at),
        KEY subject_idx (subject)
    ) ENGINE = InnoDB"],
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings `table` to [`SCHEMA_VERSION`] over a connection of its own. Idempotent, and safe to
/// run from many processes at once: a named lock lets one migrate while the others wait. The
/// connection is closed at the end, which also frees the lock on every path.
pub(crate) async fn migrate(opts: Opts, table: &str) -> Result<(), StoreError> {
    let mut conn = Conn::new(opts).await.map_err(from_my)?;
    let result = migrate_on(&mut conn, table).await;
    // Closing the connection releases the named lock even if migrating failed half way.
    let _ = conn.disconnect().await;
    result
}

async fn migrate_on(conn: &mut Conn, table: &str) -> Result<(), StoreError> {
    let locked: Option<i64> = conn
        .exec_first("SELECT GET_LOCK(?, 30)", (MIGRATION_LOCK,))
        .await
        .map_err(from_my)?;
    if locked != Some(1) {
        return Err(ConfigError::MigrationLock.into());
    }
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (
            table_name VARCHAR(64) NOT NULL PRIMARY KEY,
            version INT NOT NULL,
            migrated_at BIGINT UNSIGNED NOT NULL
        ) ENGINE = InnoDB"
    ))
    .await
    .map_err(from_my)?;
    let current: i32 = conn
        .exec_first(
            format!("SELECT version FROM {SCHEMA_TABLE} WHERE table_name = ?"),
            (table,),
        )
        .await
        .map_err(from_my)?
        .unwrap_or(0);
    // A table dropped by hand (to reset every session, say) while its version row stayed would
    // otherwise be "up to date" and never come back: every operation would then fail.
    let exists: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = ?",
            (table,),
        )
        .await
        .map_err(from_my)?;
    let current = if exists.unwrap_or(0) > 0 { current } else { 0 };
    if current > SCHEMA_VERSION {
        return Err(ConfigError::NewerSchema {
            table: table.to_owned(),
            found: current,
            known: SCHEMA_VERSION,
        }
        .into());
    }
    for (index, statements) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        for statement in *statements {
            conn.query_drop(statement.replace("{t}", table))
                .await
                .map_err(from_my)?;
        }
        tracing::info!(table, version = index + 1, "migrated session table");
    }
    if current < SCHEMA_VERSION {
        conn.exec_drop(
            format!(
                "INSERT INTO {SCHEMA_TABLE} (table_name, version, migrated_at) VALUES (?, ?, ?)
                 ON DUPLICATE KEY UPDATE version = VALUES(version),
                    migrated_at = VALUES(migrated_at)"
            ),
            (table, SCHEMA_VERSION, Timestamp::now().as_millis()),
        )
        .await
        .map_err(from_my)?;
    }
    Ok(())
}
