//! The Redis store over TLS (`rediss://`, `rediss+cluster://`), against throwaway
//! `redis-server`s this test starts on free 127.0.0.1 ports with TLS only (`--port 0
//! --tls-port P`) and a CA and server certificate made here. Without `redis-server` the tests
//! skip with a message, or fail under `TESSERA_REQUIRE_STORES=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tessera_core::testing::{Pki, error_chain, free_port, stores_required};
use tessera_core::{Store, StoreError};
use tessera_redis::{RedisOptions, RedisStore, RedisStoreError};

/// A TLS-only `redis-server` in a temporary directory, killed on drop.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server (as a one-node cluster if `cluster`) and waits (at most 10 s) until
    /// its TLS port accepts connections. `None` (with a message) when `redis-server` cannot be
    /// run and is not required.
    fn start(pki: &Pki, cluster: bool) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        pki.write_to(dir.path());
        let port = free_port();
        let file = |name: &str| dir.path().join(name).display().to_string();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--dir", &file("")])
            .args(["--tls-cert-file", &file("server.crt")])
            .args(["--tls-key-file", &file("server.key")])
            .args(["--tls-ca-cert-file", &file("ca.pem")])
            .args(["--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if cluster {
            command
                .args(["--cluster-enabled", "yes", "--tls-cluster", "yes"])
                .args(["--cluster-config-file", &file("nodes.conf")]);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) if stores_required() => {
                panic!(
                    "redis-server is required for the TLS tests (TESSERA_REQUIRE_STORES=1): {error}"
                )
            }
            Err(error) => {
                eprintln!("skipping the Redis TLS test: cannot run redis-server ({error})");
                return None;
            }
        };
        let mut server = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server with TLS exited at start ({status}); does it support TLS?");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server (TLS) on port {port} did not start within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `rediss://127.0.0.1:PORT` with the throwaway CA as `ssl_ca_certs`.
    fn url(&self) -> String {
        format!(
            "rediss://127.0.0.1:{}?ssl_ca_certs={}",
            self.port,
            self.ca_file().display()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connecting fails within 10 s (never a hang) with a `Backend` error whose chain contains
/// `expected`.
async fn refused(url: &str, options: RedisOptions, expected: &str) {
    let started = Instant::now();
    let connecting = RedisStore::connect_url_with(url, options);
    let error = tessera_core::testing::assert_refused(url, connecting, expected).await;
    let text = error_chain(&error);
    assert!(
        matches!(error, StoreError::Backend(_)),
        "{url}: a TLS or configuration failure is not an outage: {text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{url}: took {:?}",
        started.elapsed()
    );
}

/// Runs every conformance check against `url`, each on a fresh key prefix.
async fn conformance_suite(url: &str) {
    let make = |prefix: String| async move {
        let options = RedisOptions::default().key_prefix(prefix);
        Some(RedisStore::connect_url_with(url, options).await.unwrap())
    };
    tessera_core::store_conformance!(sequence: &make);
    let store = make("t_tls_counter".to_owned()).await.unwrap();
    tessera_core::testing::concurrent_updates_lose_nothing(std::sync::Arc::new(store), 16, 50)
        .await;
}

/// The whole store conformance suite over `rediss://` with a private CA (the server has no
/// plain port, so every command went over TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_conformance_suite_passes_over_tls() {
    let Some(server) = Server::start(&Pki::new(&["localhost", "127.0.0.1"]), false) else {
        return;
    };
    conformance_suite(&server.url()).await;
    // The CA can also be given as an option instead of a URL parameter.
    let options = RedisOptions::default().ca_file(server.ca_file());
    let store =
        RedisStore::connect_url_with(&format!("rediss://127.0.0.1:{}", server.port), options)
            .await
            .unwrap();
    store.ping().await.unwrap();
}

/// A wrong CA, the default (public) roots for a private CA, a certificate for another host
/// name, `#insecure` and a CA file with a plain `redis://` URL are all refused quickly with an
/// error that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_name_is_refused_with_a_clear_error() {
    let Some(server) = Server::start(&Pki::new(&["localhost", "127.0.0.1"]), false) else {
        return;
    };
    let wrong_ca = server.dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, Pki::new(&["127.0.0.1"]).ca).unwrap();
    let plain_url = format!("rediss://127.0.0.1:{}", server.port);

    let with_wrong_ca = format!("{plain_url}?ssl_ca_certs={}", wrong_ca.display());
    refused(
        &with_wrong_ca,
        RedisOptions::default(),
        "invalid peer certificate",
    )
    .await;
    refused(&plain_url, RedisOptions::default(), "UnknownIssuer").await;
    let options = RedisOptions::default().ca_file(&wrong_ca);
    refused(&plain_url, options, "invalid peer certificate").await;

    // No way to switch verification off: the driver refuses `#insecure` without its
    // `tls-rustls-insecure` feature, which this crate does not enable.
    let insecure = format!("{plain_url}/#insecure");
    let error = RedisStore::connect_url(&insecure)
        .await
        .expect_err("#insecure");
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");

    // A CA file with a URL without TLS is a mistake, not a silent plain connection.
    let error = RedisStore::connect_url(&format!(
        "redis://127.0.0.1:{}?ssl_ca_certs={}",
        server.port,
        server.ca_file().display()
    ))
    .await
    .expect_err("CA file without TLS");
    assert!(
        error_chain(&error).contains("does not use TLS"),
        "{error:?}"
    );
    let StoreError::Backend(inner) = &error else {
        panic!("{error:?}")
    };
    assert!(matches!(
        inner.downcast_ref::<RedisStoreError>(),
        Some(RedisStoreError::CaFileWithoutTls)
    ));

    // An unreadable CA file is named in the error.
    let missing = Path::new("/nonexistent/ca.pem");
    refused(
        &plain_url,
        RedisOptions::default().ca_file(missing),
        "/nonexistent/ca.pem",
    )
    .await;

    // The right CA, but the certificate names another host.
    let Some(misnamed) = Server::start(&Pki::new(&["db.invalid"]), false) else {
        return;
    };
    refused(
        &misnamed.url(),
        RedisOptions::default(),
        "not valid for name",
    )
    .await;
}

/// A one-node Redis Cluster with TLS between client and node (`--tls-cluster yes`):
/// `rediss+cluster://` runs the conformance suite over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_conformance_suite_passes_on_a_cluster_over_tls() {
    let Some(server) = Server::start(&Pki::new(&["localhost", "127.0.0.1"]), true) else {
        return;
    };
    // Give the single node every slot, over TLS (the server has no plain port). This raw client
    // takes rustls's process default, which cannot be chosen from crate features when a build
    // enables two providers (the workspace's does): install ring as the store itself does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = std::fs::read(server.ca_file()).unwrap();
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{}", server.port),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca),
        },
    )
    .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query_async(&mut conn)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut conn)
            .await
            .unwrap();
        if info.contains("cluster_state:ok") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the one-node cluster did not become ok: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!(
        "rediss+cluster://127.0.0.1:{}?ssl_ca_certs={}",
        server.port,
        server.ca_file().display()
    );
    let store = RedisStore::connect_url(&url).await.unwrap();
    assert!(store.is_cluster());
    drop(store);
    conformance_suite(&url).await;
}
