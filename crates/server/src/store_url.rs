//! Store selection: `--store URL` parsed into a [`StoreUrl`] and opened as a [`Store`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use tessera_core::{MemoryStore, Store};

/// A parsed `--store` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoreUrl {
    /// `memory:` — in this process only; gone at exit.
    Memory,
    /// `sqlite:PATH` (or `sqlite://PATH`) — one file, the default.
    Sqlite(PathBuf),
    /// `postgres://…` / `postgresql://…`
    Postgres(String),
    /// `mysql://…` / `mariadb://…`
    Mysql(String),
    /// `redis://…` / `rediss://…`
    Redis(String),
    /// `redis+cluster://…` / `rediss+cluster://…`
    RedisCluster(String),
    /// `memcached://…`
    Memcached(String),
}

impl FromStr for StoreUrl {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        if text == "memory:" || text == "memory://" {
            return Ok(Self::Memory);
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                bail!("bad --store {text:?}: sqlite needs a file path, e.g. sqlite:./tessera.db");
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        let scheme = text.split_once("://").map(|(s, _)| s).unwrap_or("");
        Ok(match scheme {
            "postgres" | "postgresql" => Self::Postgres(text.to_owned()),
            "mysql" | "mariadb" => Self::Mysql(text.to_owned()),
            "redis" | "rediss" => Self::Redis(text.to_owned()),
            "redis+cluster" | "rediss+cluster" => Self::RedisCluster(text.to_owned()),
            "memcached" => Self::Memcached(text.to_owned()),
            _ => bail!(
                "unknown --store {:?}: use memory:, sqlite:PATH, postgres://, mysql://, redis://, rediss://, redis+cluster://, rediss+cluster:// or memcached://",
                redact(text)
            ),
        })
    }
}

impl fmt::Display for StoreUrl {
    /// The URL with any password replaced by `***`, for logs and the start-up banner.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory:"),
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Postgres(url)
            | Self::Mysql(url)
            | Self::Redis(url)
            | Self::RedisCluster(url)
            | Self::Memcached(url) => f.write_str(&redact(url)),
        }
    }
}

impl StoreUrl {
    /// Where a generated API key is saved: next to the SQLite database; nowhere for other
    /// stores (configure `--api-key` there).
    pub(crate) fn key_file(&self) -> Option<PathBuf> {
        match self {
            Self::Sqlite(path) => {
                let mut name = path.file_name()?.to_os_string();
                name.push(".api-key");
                Some(path.with_file_name(name))
            }
            _ => None,
        }
    }

    /// Opens (and for SQL stores, migrates) the store.
    ///
    /// # Errors
    ///
    /// An unreachable or unusable store, or a scheme not built into this binary.
    pub(crate) async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        match self {
            Self::Memory => Ok(Arc::new(MemoryStore::new())),
            Self::Sqlite(path) => open_sqlite(path).await,
            Self::Postgres(url) => {
                let store = tessera_postgres::PostgresStore::connect(url).await;
                Ok(Arc::new(store.with_context(|| self.cannot_open())?))
            }
            Self::Mysql(url) => {
                // The driver only knows the `mysql://` scheme.
                let url = url.replacen("mariadb://", "mysql://", 1);
                let store = tessera_mysql::MySqlStore::connect(&url).await;
                Ok(Arc::new(store.with_context(|| self.cannot_open())?))
            }
            Self::Redis(url) | Self::RedisCluster(url) => {
                let store = tessera_redis::RedisStore::connect_url(url).await;
                Ok(Arc::new(store.with_context(|| self.cannot_open())?))
            }
            Self::Memcached(url) => {
                let store = tessera_memcached::MemcachedStore::connect(url).await;
                Ok(Arc::new(store.with_context(|| self.cannot_open())?))
            }
        }
    }

    fn cannot_open(&self) -> String {
        format!("cannot open the store {self}")
    }
}

async fn open_sqlite(path: &Path) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            bail!(
                "cannot open the SQLite store: the directory {} does not exist",
                dir.display()
            );
        }
    }
    let store = tessera_sqlite::SqliteStore::open(path)
        .await
        .with_context(|| format!("cannot open the SQLite store {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Replaces the password of `scheme://user:password@host` with `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!("memory:".parse::<StoreUrl>().unwrap(), StoreUrl::Memory);
        assert_eq!(
            "sqlite:./a.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite("./a.db".into())
        );
        assert_eq!(
            "sqlite:///tmp/a.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite("/tmp/a.db".into())
        );
        assert!(matches!(
            "redis+cluster://127.0.0.1:7001"
                .parse::<StoreUrl>()
                .unwrap(),
            StoreUrl::RedisCluster(_)
        ));
        assert!(matches!(
            "rediss+cluster://127.0.0.1:7001?ssl_ca_certs=/ca.pem"
                .parse::<StoreUrl>()
                .unwrap(),
            StoreUrl::RedisCluster(_)
        ));
        assert!("sqlite:".parse::<StoreUrl>().is_err());
        assert!("ftp://x".parse::<StoreUrl>().is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        let url: StoreUrl = "postgres://app:s3cret@db:5432/sessions".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://app:***@db:5432/sessions");
        let error = "ftp://u:pw@h".parse::<StoreUrl>().unwrap_err().to_string();
        assert!(!error.contains("pw"), "{error}");
    }

    #[test]
    fn the_key_file_sits_next_to_the_database() {
        let url = StoreUrl::Sqlite("/var/lib/tessera/tessera.db".into());
        assert_eq!(
            url.key_file().unwrap(),
            PathBuf::from("/var/lib/tessera/tessera.db.api-key")
        );
        assert_eq!(StoreUrl::Memory.key_file(), None);
    }
}
