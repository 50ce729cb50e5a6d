//! Configuration: the `--config` TOML file, merged under flags and `TESSERA_*` variables
//! (flags win over the environment, the environment over the file, the file over defaults).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;
use tessera_core::{LimitAction, Policy};

use crate::cli::{LogFormat, OnLimit, ServeArgs};
use crate::store_url::StoreUrl;

/// The default listen address.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:7480";
/// The default store.
pub(crate) const DEFAULT_STORE: &str = "sqlite:./tessera.db";
/// The shortest API key accepted.
pub(crate) const MIN_API_KEY_LEN: usize = 32;

/// The `--config` file: the same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    listen: Option<String>,
    store: Option<String>,
    idle_timeout: Option<String>,
    absolute_timeout: Option<String>,
    touch_interval: Option<String>,
    max_sessions_per_subject: Option<u32>,
    on_limit: Option<OnLimit>,
    api_key: Option<String>,
    #[serde(default)]
    allowed_origin: Vec<String>,
    insecure_cookies: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    pub(crate) log_format: Option<LogFormat>,
}

impl FileConfig {
    /// Reads the file, or the empty configuration when none is given.
    ///
    /// # Errors
    ///
    /// An unreadable file, bad TOML or an unknown key.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        toml::from_str(&text).map_err(|error| {
            // toml's message spans several lines (it quotes the source); keep the first.
            let message = error.message().to_owned();
            anyhow!("bad config file {}: {message}", path.display())
        })
    }
}

/// The store URL from the flag/variable, else the file, else the default.
///
/// # Errors
///
/// An unknown or malformed URL.
pub(crate) fn store_url(flag: Option<&str>, file: &FileConfig) -> anyhow::Result<StoreUrl> {
    let text = flag.or(file.store.as_deref()).unwrap_or(DEFAULT_STORE);
    text.parse()
}

/// Everything `tessera serve` needs, validated.
#[derive(Debug)]
pub(crate) struct ServeConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) store: StoreUrl,
    pub(crate) policy: Policy,
    pub(crate) api_key: Option<String>,
    /// Empty: the bound address's own origins (filled in once bound).
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) insecure_cookies: bool,
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
}

impl ServeConfig {
    /// Merges flags (and variables) over the file and the defaults, and validates.
    ///
    /// # Errors
    ///
    /// A bad address, duration, API key, origin or TLS flag pair.
    pub(crate) fn resolve(
        args: ServeArgs,
        store: StoreUrl,
        file: FileConfig,
    ) -> anyhow::Result<Self> {
        let listen_text = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            anyhow!("bad --listen address {listen_text:?} (expected IP:PORT, e.g. 127.0.0.1:7480)")
        })?;

        let defaults = Policy::default();
        let idle = duration(
            "idle-timeout",
            args.idle_timeout.or(file.idle_timeout),
            defaults.idle,
        )?;
        let absolute = duration(
            "absolute-timeout",
            args.absolute_timeout.or(file.absolute_timeout),
            defaults.absolute,
        )?;
        let touch = duration(
            "touch-interval",
            args.touch_interval.or(file.touch_interval),
            defaults.touch_interval,
        )?;
        if idle.is_zero() || absolute.is_zero() {
            bail!("--idle-timeout and --absolute-timeout must be longer than zero");
        }
        let max = args
            .max_sessions_per_subject
            .or(file.max_sessions_per_subject);
        if max == Some(0) {
            bail!("--max-sessions-per-subject must be at least 1");
        }
        let on_limit = match args
            .on_limit
            .or(file.on_limit)
            .unwrap_or(OnLimit::EvictOldest)
        {
            OnLimit::Reject => LimitAction::Reject,
            OnLimit::EvictOldest => LimitAction::EvictOldest,
        };
        let policy = Policy::default()
            .idle_timeout(idle)
            .absolute_timeout(absolute)
            .touch_interval(touch)
            .max_sessions_per_subject(max, on_limit);

        let api_key = args.api_key.or(file.api_key);
        if let Some(key) = &api_key {
            check_api_key(key)?;
        }

        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key must be given together"),
        };

        let insecure_cookies = args.insecure_cookies || file.insecure_cookies.unwrap_or(false);
        let allowed_origins = if args.allowed_origins.is_empty() {
            file.allowed_origin
        } else {
            args.allowed_origins
        };
        for origin in &allowed_origins {
            check_origin(origin)?;
        }
        Ok(Self {
            listen,
            store,
            policy,
            api_key,
            allowed_origins,
            insecure_cookies,
            tls,
        })
    }
}

/// Parses a human duration (`90s`, `30m`, `24h`, `1h 30m`), or takes the default.
fn duration(name: &str, value: Option<String>, default: Duration) -> anyhow::Result<Duration> {
    match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text.trim())
            .map_err(|error| anyhow!("bad --{name} {text:?}: {error} (use e.g. 90s, 30m, 24h)")),
    }
}

/// Refuses API keys too short to be secret.
///
/// # Errors
///
/// Keys under [`MIN_API_KEY_LEN`] characters or with whitespace/control characters.
pub(crate) fn check_api_key(key: &str) -> anyhow::Result<()> {
    if key.chars().count() < MIN_API_KEY_LEN {
        bail!(
            "the API key is too short ({} characters; at least {MIN_API_KEY_LEN} needed — `tessera keys generate` makes one)",
            key.chars().count()
        );
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("the API key must not contain whitespace or control characters");
    }
    Ok(())
}

fn check_origin(origin: &str) -> anyhow::Result<()> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| {
            anyhow!("bad --allowed-origin {origin:?}: expected http(s)://HOST[:PORT]")
        })?;
    if rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace) {
        bail!("bad --allowed-origin {origin:?}: expected http(s)://HOST[:PORT] with no path");
    }
    Ok(())
}

/// The origins a browser uses to reach the listen address itself.
pub(crate) fn own_origins(listen: SocketAddr, tls: bool) -> Vec<String> {
    let scheme = if tls { "https" } else { "http" };
    let port = listen.port();
    let mut hosts: Vec<String> = Vec::new();
    let ip = listen.ip();
    if ip.is_unspecified() {
        hosts.extend(["127.0.0.1".into(), "[::1]".into(), "localhost".into()]);
    } else {
        hosts.push(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        });
        if ip.is_loopback() {
            hosts.push("localhost".into());
        }
    }
    hosts
        .into_iter()
        .map(|host| format!("{scheme}://{host}:{port}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_are_one_clear_line() {
        assert_eq!(
            duration("x", Some("90s".into()), Duration::ZERO).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            duration("x", Some("24h".into()), Duration::ZERO).unwrap(),
            Duration::from_secs(86_400)
        );
        let error = duration("idle-timeout", Some("5 parsecs".into()), Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("bad --idle-timeout"), "{error}");
        assert!(!error.contains('\n'));
    }

    #[test]
    fn short_api_keys_are_refused() {
        assert!(check_api_key(&"a".repeat(31)).is_err());
        assert!(check_api_key(&"a".repeat(32)).is_ok());
        assert!(check_api_key(&format!("{} b", "a".repeat(40))).is_err());
    }

    #[test]
    fn own_origins_follow_the_listen_address() {
        let origins = own_origins("127.0.0.1:7480".parse().unwrap(), false);
        assert_eq!(origins, ["http://127.0.0.1:7480", "http://localhost:7480"]);
        let origins = own_origins("0.0.0.0:443".parse().unwrap(), true);
        assert!(origins.contains(&"https://localhost:443".to_owned()));
    }

    #[test]
    fn the_file_rejects_unknown_keys() {
        let parsed: Result<FileConfig, _> = toml::from_str("idle-timeout = \"5m\"\nbogus = 1\n");
        assert!(parsed.is_err());
        let parsed: FileConfig =
            toml::from_str("idle-timeout = \"5m\"\nallowed-origin = [\"https://a.example\"]\n")
                .unwrap();
        assert_eq!(parsed.allowed_origin, ["https://a.example"]);
    }
}
