//! The table layout and the migrations that create and upgrade it.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::SchemaError;

/// The table that records which migrations ran.
const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS tessera_schema (
    version INTEGER PRIMARY KEY NOT NULL,
    applied_at INTEGER NOT NULL DEFAULT (unixepoch())
)";

/// Migrations in order; migration `i` brings the schema to version `i + 1`. Never edit one that
/// has shipped: add another.
///
/// Version 1: one row per session, keyed by the 32-byte key (`WITHOUT ROWID`, so a lookup is one
/// B-tree search). The columns beside `record` exist for queries (`subject`, the deadlines) and
/// for the fields a touch changes without rewriting the blob (`last_seen_at`, `idle_deadline`;
/// `version` for compare-and-swap). `deadline` is the earlier of the two deadlines, computed by
/// SQLite, and indexed so that liveness checks and purges use the index.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE tessera_sessions (
        key BLOB PRIMARY KEY NOT NULL CHECK (length(key) = 32),
        subject TEXT,
        last_seen_at INTEGER NOT NULL,
        idle_deadline INTEGER NOT NULL,
        absolute_deadline INTEGER NOT NULL,
        deadline INTEGER GENERATED ALWAYS AS (min(idle_deadline, absolute_deadline)) VIRTUAL,
        version INTEGER NOT NULL,
        record BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX tessera_sessions_deadline ON tessera_sessions (deadline);
    CREATE INDEX tessera_sessions_subject ON tessera_sessions (subject) WHERE subject IS NOT NULL;",
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database to [`SCHEMA_VERSION`], in one immediate transaction so that two processes
/// opening the same new file do not both migrate it. Returns the version found before.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, SchemaError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(VERSION_TABLE)?;
    let found: u32 = tx.query_row(
        "SELECT coalesce(max(version), 0) FROM tessera_schema",
        [],
        |row| row.get(0),
    )?;
    if found > SCHEMA_VERSION {
        return Err(SchemaError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(migration)?;
        tx.execute(
            "INSERT INTO tessera_schema (version) VALUES (?1)",
            [index as u32 + 1],
        )?;
        tracing::info!(version = index + 1, "sqlite session store schema migrated");
    }
    tx.commit()?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 0);
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        let rows: u32 = conn
            .query_row("SELECT count(*) FROM tessera_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO tessera_schema (version) VALUES (?1)",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, SchemaError::TooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err:?}"
        );
    }

    #[test]
    fn queries_use_the_indexes() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let plan = |sql: &str| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        let by_subject =
            plan("SELECT key FROM tessera_sessions WHERE subject = 'a' AND deadline > 5");
        assert!(
            by_subject.contains("tessera_sessions_subject"),
            "{by_subject}"
        );
        let purge =
            plan("SELECT key FROM tessera_sessions WHERE deadline <= 5 ORDER BY deadline LIMIT 10");
        assert!(purge.contains("tessera_sessions_deadline"), "{purge}");
        let by_key = plan("SELECT record FROM tessera_sessions WHERE key = x'00' AND deadline > 5");
        assert!(by_key.contains("PRIMARY KEY"), "{by_key}");
    }
}
