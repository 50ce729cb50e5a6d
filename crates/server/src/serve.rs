//! `tessera serve`: opens the store, binds, prints the banner, serves until SIGINT/SIGTERM and
//! then shuts down gracefully (in-flight requests finish and their commits land).

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use tessera_core::Sessions;

use crate::config::ServeConfig;
use crate::keys::KeySource;
use crate::metrics::{MeteredStore, PURGE_EVERY};
use crate::state::AppState;

/// How long in-flight requests get to finish after a shutdown signal.
const GRACE: Duration = Duration::from_secs(30);
/// How many expired sessions one purge step removes.
const PURGE_BATCH: usize = 1000;

/// Runs the service until a shutdown signal.
///
/// # Errors
///
/// Start-up failures: the store, the API key, the address or the TLS files.
pub(crate) async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let prometheus = crate::metrics::install()?;
    let store = config.store.open().await?;
    store
        .ping()
        .await
        .with_context(|| format!("the store {} does not answer", config.store))?;
    let key_file = config.store.key_file();
    let (api_key, key_source) = crate::keys::resolve(config.api_key.clone(), key_file.as_deref())?;

    let tls = match &config.tls {
        Some((cert, key)) => {
            // Only the ring provider is built in; installing it explicitly makes that choice
            // independent of what other dependencies enable.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|error| {
                    anyhow!(
                        "cannot load the TLS certificate {} and key {}: {error}",
                        cert.display(),
                        key.display()
                    )
                })?;
            Some(tls)
        }
        None => None,
    };

    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener
        .local_addr()
        .context("cannot read the listen address")?;
    let mut config = config;
    if config.allowed_origins.is_empty() {
        // The bound address, not the configured one: `--listen 127.0.0.1:0` gets a real port.
        config.allowed_origins = crate::config::own_origins(local, tls.is_some());
    }

    let sessions =
        Sessions::from_arc(Arc::new(MeteredStore::new(store))).with_policy(config.policy.clone());
    let purger = sessions.spawn_purger(PURGE_EVERY, PURGE_BATCH);
    let state = AppState::new(
        sessions,
        api_key.clone(),
        prometheus,
        config.insecure_cookies,
    );
    let app = crate::router::app(state, &config)?;

    let scheme = if tls.is_some() { "https" } else { "http" };
    banner(&config, scheme, local, &key_source, key_file.as_deref())?;
    if config.insecure_cookies {
        tracing::warn!(
            "--insecure-cookies: session cookies are sent without Secure and without the __Host- prefix; use this for plain-HTTP development only"
        );
    }
    tracing::info!(address = %local, store = %config.store, tls = tls.is_some(), "serving");

    let handle = Handle::new();
    tokio::spawn(shutdown_on_signal(handle.clone()));
    let served = match tls {
        Some(tls) => {
            axum_server::from_tcp_rustls(listener, tls)?
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await
        }
        None => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await
        }
    };
    purger.abort();
    served.context("the server failed")?;
    tracing::info!("stopped");
    Ok(())
}

fn banner(
    config: &ServeConfig,
    scheme: &str,
    local: std::net::SocketAddr,
    source: &KeySource,
    key_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "tessera {} listening on {scheme}://{local}",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(out, "data: {}", config.store)?;
    match source {
        KeySource::Configured => writeln!(out, "admin API key: configured")?,
        KeySource::File => writeln!(
            out,
            "admin API key: read from {}",
            key_file
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )?,
        // The key itself is never printed (terminals and their logs keep what they show): it
        // is in the file, or, for a store with no file location, known to nobody.
        KeySource::GeneratedSaved => writeln!(
            out,
            "admin API key: generated, saved to {} (mode 0600)",
            key_file
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )?,
        KeySource::GeneratedEphemeral => writeln!(
            out,
            "admin API key: generated for this run only and not shown; to use the admin API, \
             set --api-key or TESSERA_API_KEY (`tessera keys generate` makes one)"
        )?,
    }
    writeln!(out, "demo: {scheme}://{local}/demo/")?;
    out.flush()?;
    Ok(())
}

async fn shutdown_on_signal(handle: Handle<std::net::SocketAddr>) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            let _ = ctrl_c.await;
            handle.graceful_shutdown(Some(GRACE));
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: shutting down, letting in-flight requests finish"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down, letting in-flight requests finish"),
    }
    handle.graceful_shutdown(Some(GRACE));
}
