//! What a user can tune: pool size, timeouts, table name, whether to migrate.

use std::time::Duration;

use crate::error::ConfigError;

/// Settings for [`PostgresStore::connect_with`](crate::PostgresStore::connect_with).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tessera_postgres::Options;
///
/// let options = Options::default()
///     .pool_size(32)
///     .operation_timeout(Duration::from_secs(2))
///     .table("app_sessions");
/// assert_eq!(options.table_name(), "app_sessions");
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) pool_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) table: String,
    pub(crate) migrate: bool,
}

impl Default for Options {
    /// 16 connections, 5 s to connect, 5 s per operation, table `tessera_sessions`, migrate on
    /// connect.
    fn default() -> Self {
        Self {
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(5),
            table: DEFAULT_TABLE.to_owned(),
            migrate: true,
        }
    }
}

/// The table used when none is named.
pub const DEFAULT_TABLE: &str = "tessera_sessions";

/// The longest table name accepted: index names add up to 12 characters to it and PostgreSQL
/// truncates identifiers at 63.
pub const MAX_TABLE_NAME: usize = 48;

impl Options {
    /// The most connections the pool opens (at least 1).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long opening one connection may take (TCP connect and start-up).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one store call may take in all, waiting for a pooled connection included.
    /// Past it the call fails with [`StoreError::Unavailable`](tessera_core::StoreError).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The table that holds the sessions: lowercase ASCII letters, digits and `_`, starting with
    /// a letter or `_`, at most [`MAX_TABLE_NAME`] characters (checked by `connect_with`).
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// Whether `connect_with` runs [`PostgresStore::migrate`](crate::PostgresStore::migrate)
    /// (default true). Turn it off where the schema is managed by a deployment step.
    pub fn migrate_on_connect(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// The table name as set.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        validate_table_name(&self.table)
    }
}

/// Table names are pasted into SQL text, so only a plain identifier is accepted.
fn validate_table_name(name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if starts_well && rest_ok && name.len() <= MAX_TABLE_NAME {
        Ok(())
    } else {
        Err(ConfigError::InvalidTableName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        for good in [
            "sessions",
            "_s",
            "t_create_then_load_0a1b2c3d",
            &"a".repeat(48),
        ] {
            assert!(validate_table_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Sessions",
            "s;drop table x",
            "s\"",
            "a.b",
            "sé",
            &"a".repeat(49),
        ] {
            assert!(validate_table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pool_size_is_at_least_one() {
        assert_eq!(Options::default().pool_size(0).pool_size, 1);
    }
}
