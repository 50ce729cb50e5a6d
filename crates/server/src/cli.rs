//! Command-line interface: flags and `TESSERA_*` variables (clap), and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The `tessera` command line.
#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera: session management service"
)]
pub(crate) struct Cli {
    /// TOML configuration file (keys are the flag names, e.g. `idle-timeout = "30m"`).
    #[arg(long, global = true, env = "TESSERA_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Session store: `memory:`, `sqlite:PATH`, `postgres://…`, `mysql://…`, `redis://…`,
    /// `rediss://…`, `redis+cluster://…`, `rediss+cluster://…`, `memcached://…` [default:
    /// sqlite:./tessera.db]
    #[arg(long, global = true, env = "TESSERA_STORE", value_name = "URL")]
    pub(crate) store: Option<String>,

    /// Log format [default: human]
    #[arg(long, global = true, env = "TESSERA_LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How logs are written (to standard error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// What happens when a subject has reached `--max-sessions-per-subject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum OnLimit {
    /// Refuse the new login.
    Reject,
    /// Log the subject's oldest session out.
    EvictOldest,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the session service.
    Serve(Box<ServeArgs>),
    /// List or revoke sessions in the store.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Remove expired sessions from the store (with a progress bar and a count).
    Purge,
    /// Key management.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `tessera serve` flags. Each is also `TESSERA_<NAME>` and a key in the `--config` file.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7480]
    #[arg(long, env = "TESSERA_LISTEN", value_name = "ADDR")]
    pub(crate) listen: Option<String>,

    /// Idle timeout, e.g. `30m` [default: 1h]
    #[arg(long, env = "TESSERA_IDLE_TIMEOUT", value_name = "DUR")]
    pub(crate) idle_timeout: Option<String>,

    /// Absolute timeout, e.g. `24h` [default: 24h]
    #[arg(long, env = "TESSERA_ABSOLUTE_TIMEOUT", value_name = "DUR")]
    pub(crate) absolute_timeout: Option<String>,

    /// Minimum time between two activity writes of one session [default: 60s]
    #[arg(long, env = "TESSERA_TOUCH_INTERVAL", value_name = "DUR")]
    pub(crate) touch_interval: Option<String>,

    /// Most live sessions one subject may have [default: unlimited]
    #[arg(long, env = "TESSERA_MAX_SESSIONS_PER_SUBJECT", value_name = "N")]
    pub(crate) max_sessions_per_subject: Option<u32>,

    /// What a login past the limit does [default: evict-oldest]
    #[arg(long, env = "TESSERA_ON_LIMIT", value_enum)]
    pub(crate) on_limit: Option<OnLimit>,

    /// Admin API key for `/v1` (at least 32 characters) [default: generated and saved next to
    /// the database]
    #[arg(
        long,
        env = "TESSERA_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub(crate) api_key: Option<String>,

    /// Origin allowed to send cookie-authenticated forms (CSRF); repeatable [default: the
    /// listen address's own origins]
    #[arg(
        long = "allowed-origin",
        env = "TESSERA_ALLOWED_ORIGIN",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub(crate) allowed_origins: Vec<String>,

    /// Plain-HTTP development cookies: no `Secure`, no `__Host-` prefix (logged as a warning)
    #[arg(long, env = "TESSERA_INSECURE_COOKIES")]
    pub(crate) insecure_cookies: bool,

    /// TLS certificate chain (PEM); needs --tls-key
    #[arg(long, env = "TESSERA_TLS_CERT", value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// TLS private key (PEM); needs --tls-cert
    #[arg(long, env = "TESSERA_TLS_KEY", value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
}

/// `tessera sessions …`
#[derive(Debug, Subcommand)]
pub(crate) enum SessionsCommand {
    /// List a subject's live sessions.
    List {
        /// The subject (user id).
        #[arg(long)]
        subject: String,
    },
    /// Revoke all of a subject's sessions, or one session by handle.
    Revoke(RevokeArgs),
}

/// What to revoke: exactly one of `--subject` and `--handle`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct RevokeArgs {
    /// Revoke every session of this subject.
    #[arg(long)]
    pub(crate) subject: Option<String>,
    /// Revoke the session with this handle.
    #[arg(long)]
    pub(crate) handle: Option<String>,
}

/// `tessera keys …`
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Print a new random API key (256 bits, base64url).
    Generate,
}

/// Runs the parsed command.
///
/// # Errors
///
/// Any start-up or command failure, to be printed as one line by `main`.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = crate::config::FileConfig::load(cli.config.as_deref())?;
    let log_format = cli
        .log_format
        .or(file.log_format)
        .unwrap_or(LogFormat::Human);
    crate::logging::init(log_format);
    let store = crate::config::store_url(cli.store.as_deref(), &file)?;
    match cli.command {
        Command::Serve(args) => {
            let config = crate::config::ServeConfig::resolve(*args, store, file)?;
            crate::serve::serve(config).await
        }
        Command::Sessions(SessionsCommand::List { subject }) => {
            crate::admin::list(&store, &subject).await
        }
        Command::Sessions(SessionsCommand::Revoke(RevokeArgs { subject, handle })) => {
            crate::admin::revoke(&store, subject.as_deref(), handle.as_deref()).await
        }
        Command::Purge => crate::admin::purge(&store).await,
        Command::Keys(KeysCommand::Generate) => {
            println!("{}", crate::keys::generate()?);
            Ok(())
        }
    }
}

/// Prints a command-line error as one line (help and version are printed in full) and returns
/// the exit code.
pub(crate) fn report_parse_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let rendered = error.render().to_string();
            let first = rendered
                .lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("invalid command line")
                .trim_start_matches("error: ");
            eprintln!("tessera: error: {first} (see `tessera --help`)");
            ExitCode::from(2)
        }
    }
}
