//! `tessera`: the Tessera session service and its admin CLI.
//!
//! `tessera serve` exposes the session engine of `tessera-core` over HTTP so that apps in any
//! language can use server-side sessions: a JSON API under `/v1` (API-key protected), a
//! forward-auth endpoint `/v1/auth` for reverse proxies (nginx `auth_request`, Traefik
//! ForwardAuth, Envoy ext_authz), a small demo shop under `/demo/` that shows the whole session
//! lifecycle in a browser, Prometheus metrics, health checks and an OpenAPI 3.1 document. The
//! other subcommands administer the same store from a shell.
//!
//! # Example
//!
//! ```text
//! $ cargo run --release -p tessera-server -- serve
//! tessera 0.1.0 listening on http://127.0.0.1:7480
//! data: sqlite:./tessera.db
//! admin API key: generated, saved to ./tessera.db.api-key (mode 0600)
//! $ KEY=$(cat tessera.db.api-key)
//! $ curl -s -X POST -H "Authorization: Bearer $KEY" http://127.0.0.1:7480/v1/sessions
//! {"token":"…","session":{"handle":"…","subject":null,…}}
//! $ tessera sessions list --subject alice
//! ```
//!
//! See `crates/server/README.md` for the flags, the API reference and an nginx example.
//!
//! # Design choices
//!
//! - **axum 0.8** for routing and extractors (the same stack as `tessera-http`'s layer), served
//!   by **axum-server** because it gives plain TCP and rustls TLS one graceful-shutdown handle.
//! - **rustls with the `ring` provider** for TLS: no OpenSSL, and no C/CMake toolchain for
//!   `aws-lc-rs` on the build machine.
//! - **clap** (derive + env) for flags and `TESSERA_*` variables, **toml** + serde for the
//!   `--config` file; flags win over the environment, which wins over the file.
//! - **metrics** + **metrics-exporter-prometheus** for `/metrics`: the store is wrapped in a
//!   metering decorator ([`metrics`]), so latency histograms cover every
//!   backend, and the engine in a metering [`Engine`](tessera_core::Engine), so the demo (driven
//!   by the HTTP layer) and the JSON API count the same lifecycle events.
//! - **The OpenAPI document is kept by hand** (`src/openapi.json`) and checked against the
//!   router by tests: a hand-written document reads better than one generated from
//!   annotations, and the tests stop it from drifting.
//! - **Tokens never appear in URLs or logs**: the JSON API takes the session token in the
//!   `Session-Token` header; logs show at most [`Key::short`](tessera_core::Key::short).
//! - **Fail closed**: a store outage is a `503`, never "no session".
//! - `anyhow` is used here only, in the binary, to turn start-up failures into one clear line.
//!
//! # Features
//!
//! None: every store backend is built in and chosen at start-up by `--store` URL
//! ([`store_url`]): `memory:`, `sqlite:PATH`, `postgres://`, `mysql://`,
//! `redis://`, `rediss://`, `redis+cluster://`, `rediss+cluster://`, `memcached://`.

mod admin;
mod api;
mod auth;
mod cli;
mod config;
mod demo;
mod error;
mod health;
mod keys;
mod logging;
mod metrics;
mod openapi;
mod router;
mod serve;
mod state;
mod store_url;
mod view;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return cli::report_parse_error(&error),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tessera: error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole cause chain on one line.
            eprintln!("tessera: error: {error:#}");
            ExitCode::from(1)
        }
    }
}
