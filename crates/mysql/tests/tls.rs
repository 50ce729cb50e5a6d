//! The MySQL store over TLS, against a throwaway MariaDB this test starts on a free 127.0.0.1
//! port (`mariadb-install-db` + `mariadbd --ssl-cert ... --require-secure-transport`) with a
//! CA and server certificate made here. The shared server on 3306 is not touched. Without
//! the MariaDB server binaries the tests skip with a message, or fail under
//! `TESSERA_REQUIRE_STORES=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use tessera_core::testing::{Pki, free_port, stores_required};
use tessera_core::{Store, StoreError};
use tessera_mysql::{MySqlStore, Options};

/// A MariaDB server in a temporary directory that accepts TCP clients only over TLS
/// (`--require-secure-transport`), killed (and its files removed) on drop.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    /// Creates the data directory, starts `mariadbd` and waits (at most 60 s) until it
    /// answers on its Unix socket, then creates the `tessera` database. `None` (with a
    /// message) when MariaDB is not installed and not required.
    async fn start(pki: &Pki) -> Option<Self> {
        let (Some(install), Some(server)) = (find("mariadb-install-db"), find("mariadbd")) else {
            assert!(
                !stores_required(),
                "mariadb-install-db and mariadbd are required for the TLS tests \
                 (TESSERA_REQUIRE_STORES=1) but missing"
            );
            eprintln!("skipping the MySQL TLS test: no mariadb-install-db / mariadbd");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        pki.write_to(dir.path());
        // Two bootstraps at once sometimes fail ("Installation of system tables failed"), so
        // the tests of this file take turns here.
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = INSTALL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let status = Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", path("data")))
            .args([
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb-install-db");
        assert!(
            status.status.success(),
            "mariadb-install-db failed ({}):\n{}{}",
            status.status,
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr)
        );
        drop(turn);
        let port = free_port();
        let child = Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", path("data")))
            .arg(format!("--socket={}", path("mysqld.sock")))
            .arg(format!("--pid-file={}", path("mysqld.pid")))
            .arg(format!("--log-error={}", path("error.log")))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--ssl-cert={}", path("server.crt")))
            .arg(format!("--ssl-key={}", path("server.key")))
            .arg(format!("--ssl-ca={}", path("ca.pem")))
            .args(["--require-secure-transport=ON", "--user=root"])
            .args(["--skip-log-bin", "--innodb-buffer-pool-size=32M"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        let mut server = Self { child, port, dir };
        server.wait_ready().await;
        Some(server)
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut conn) = mysql_async::Conn::new(self.socket_opts()).await {
                // A password account for TCP (root has only a local account); also at
                // `localhost`, which 127.0.0.1 resolves to, so that the anonymous
                // `''@localhost` does not shadow it.
                conn.query_drop(
                    "CREATE DATABASE IF NOT EXISTS tessera;
                     CREATE USER IF NOT EXISTS 'tessera'@'%' IDENTIFIED BY 'tessera-pw';
                     CREATE USER IF NOT EXISTS 'tessera'@'localhost' IDENTIFIED BY 'tessera-pw';
                     GRANT ALL ON tessera.* TO 'tessera'@'%';
                     GRANT ALL ON tessera.* TO 'tessera'@'localhost'",
                )
                .await
                .unwrap();
                let _ = conn.disconnect().await;
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
                panic!("mariadbd exited at start ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "the throwaway MariaDB on port {} did not start within 60 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Unix socket, which `--require-secure-transport` allows without TLS.
    fn socket_opts(&self) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .socket(Some(
                self.dir.path().join("mysqld.sock").display().to_string(),
            ))
            .user(Some("root"))
            .into()
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A URL to this server's `tessera` database with the given query string.
    fn url(&self, host: &str, query: &str) -> String {
        format!(
            "mysql://tessera:tessera-pw@{host}:{}/tessera?{query}",
            self.port
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` in the usual places for MariaDB's binaries.
fn find(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

/// Connecting with `url` fails, within 10 s (never a hang), with an error whose chain
/// contains `expected`.
async fn refused(url: &str, expected: &str) -> StoreError {
    let options = Options::default().connect_timeout(Duration::from_secs(5));
    let connecting = MySqlStore::connect_with(url, options);
    tessera_core::testing::assert_refused(url, connecting, expected).await
}

/// The whole store conformance suite over `ssl-mode=VERIFY_IDENTITY` with a private CA. The
/// server refuses TCP clients without TLS, so every connection the store made was TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_conformance_suite_passes_over_verified_tls() {
    let Some(server) = Server::start(&Pki::new(&["localhost", "127.0.0.1"])).await else {
        return;
    };
    // The server really refuses plain TCP (MariaDB says "Access denied" to an insecure
    // transport), so the suite below, with the same account, cannot pass without TLS.
    let plain = refused(
        &server.url("127.0.0.1", "prefer_socket=false"),
        "Access denied",
    )
    .await;
    assert!(matches!(plain, StoreError::Backend(_)), "{plain:?}");

    let url = server.url(
        "127.0.0.1",
        &format!(
            "ssl-mode=VERIFY_IDENTITY&ssl-ca={}",
            server.ca_file().display()
        ),
    );
    let make = |table: String| {
        let url = url.clone();
        async move {
            let options = Options::default().table(table).pool_size(4);
            Some(MySqlStore::connect_with(&url, options).await.unwrap())
        }
    };
    tessera_core::store_conformance!(sequence: &make);
    let store = make("t_tls_counter".to_owned()).await.unwrap();
    tessera_core::testing::concurrent_updates_lose_nothing(std::sync::Arc::new(store), 8, 20).await;

    // PREFERRED uses the server's TLS (a plain connection would be refused).
    let preferred = server.url(
        "127.0.0.1",
        &format!("ssl-mode=PREFERRED&ssl-ca={}", server.ca_file().display()),
    );
    let store = MySqlStore::connect_with(&preferred, Options::default().table("t_preferred"))
        .await
        .unwrap();
    store.ping().await.unwrap();
}

/// A wrong CA, the default (public) roots for a private CA, and a host name the certificate
/// does not name are refused at connect, quickly, with an error that says why; `PREFERRED`
/// does not fall back to plain TCP when verification fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_verified_and_tls_is_never_skipped() {
    let Some(server) = Server::start(&Pki::new(&["127.0.0.1"])).await else {
        return;
    };
    let ca = server.ca_file();
    let wrong_ca = server.dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, Pki::new(&["127.0.0.1"]).ca).unwrap();

    for mode in ["REQUIRED", "VERIFY_IDENTITY", "PREFERRED"] {
        let url = server.url(
            "127.0.0.1",
            &format!("ssl-mode={mode}&ssl-ca={}", wrong_ca.display()),
        );
        let error = refused(&url, "invalid peer certificate").await;
        assert!(
            matches!(error, StoreError::Backend(_)),
            "a certificate failure is not transient: {error:?}"
        );
        // The default roots (webpki) do not hold the throwaway CA.
        refused(
            &server.url("127.0.0.1", &format!("ssl-mode={mode}")),
            "UnknownIssuer",
        )
        .await;
    }

    // Named `localhost`, certified for 127.0.0.1 only: refused.
    let by_name = |mode: &str| {
        server.url(
            "localhost",
            &format!("ssl-mode={mode}&ssl-ca={}", ca.display()),
        )
    };
    refused(&by_name("VERIFY_IDENTITY"), "not valid for name").await;
    refused(&by_name("REQUIRED"), "not valid for name").await;
    refused(&by_name("PREFERRED"), "not valid for name").await;
    // VERIFY_CA cannot be honoured by the driver, so it is refused by name.
    refused(&by_name("VERIFY_CA"), "VERIFY_CA is not supported").await;

    // Bad settings are configuration errors, not outages.
    let error = refused(&server.url("127.0.0.1", "ssl-mode=ON"), "unknown ssl-mode").await;
    assert!(matches!(error, StoreError::Backend(_)));
    let error = refused(
        &server.url("127.0.0.1", "ssl-mode=REQUIRED&ssl-ca=/nonexistent/ca.pem"),
        "/nonexistent/ca.pem",
    )
    .await;
    assert!(matches!(error, StoreError::Backend(_)));
}

/// Against the shared test server (127.0.0.1:3306, or `TESSERA_MYSQL_URL`), which has no TLS:
/// `PREFERRED` goes on over plain TCP, `REQUIRED` and `VERIFY_IDENTITY` refuse to. Skipped
/// (with a message) if that server has TLS after all, or is down and not required.
#[tokio::test]
async fn preferred_falls_back_to_plain_only_when_the_server_has_no_tls() {
    let base = std::env::var("TESSERA_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned());
    let joiner = if base.contains('?') { '&' } else { '?' };
    let with_mode = |mode: &str| format!("{base}{joiner}prefer_socket=false&ssl-mode={mode}");
    let no_migration = || Options::default().migrate_on_connect(false);
    let store = match MySqlStore::connect_with(&with_mode("DISABLED"), no_migration()).await {
        Ok(store) => store,
        Err(error) => {
            assert!(
                !stores_required(),
                "MySQL at {base} is required but unavailable: {error}"
            );
            eprintln!("skipping: MySQL at {base} unavailable: {error}");
            return;
        }
    };
    drop(store);
    let mut conn = mysql_async::Conn::from_url(&base).await.unwrap();
    let have_ssl: Option<(String, String)> = conn
        .query_first("SHOW VARIABLES LIKE 'have_ssl'")
        .await
        .unwrap();
    let _ = conn.disconnect().await;
    if have_ssl.is_some_and(|(_, value)| value == "YES") {
        eprintln!("skipping: the MySQL server at {base} has TLS, so there is no fallback to see");
        return;
    }
    for mode in ["REQUIRED", "VERIFY_IDENTITY"] {
        refused(&with_mode(mode), "server does not have this capability").await;
    }
    let store = MySqlStore::connect_with(&with_mode("PREFERRED"), no_migration())
        .await
        .unwrap();
    store.ping().await.unwrap();
}
