//! The PostgreSQL store over TLS, against a throwaway cluster this test starts on a free
//! 127.0.0.1 port (`initdb` + `postgres` with `ssl = on`) with a CA and server certificate made
//! here. The shared server on 5432 is not touched. Without the PostgreSQL binaries the tests
//! skip with a message, or fail under `TESSERA_REQUIRE_STORES=1`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tessera_core::testing::{Pki, free_port, stores_required};
use tessera_core::{Store, StoreError};
use tessera_postgres::{Options, PostgresStore};
use tokio_postgres::NoTls;

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and `postgres`.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The uid and gid of the `postgres` account, which initdb and postgres need when the test
/// runs as root (both refuse to run as root).
fn postgres_account() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "no postgres account to run the server as"
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

/// A PostgreSQL cluster in a temporary directory, stopped (and its files removed) on drop.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    /// Runs `initdb` and starts `postgres` with TLS on, then waits (at most 60 s) until it
    /// accepts a plain connection. `None` (with a message) when PostgreSQL is not installed
    /// and not required.
    async fn start(pki: &Pki) -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            assert!(
                !stores_required(),
                "PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are required for the TLS \
                 tests (TESSERA_REQUIRE_STORES=1) but missing"
            );
            eprintln!("skipping the PostgreSQL TLS test: no /usr/lib/postgresql/*/bin/initdb");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let as_root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
        let account = as_root.then(postgres_account);
        pki.write_to(dir.path());
        if let Some((uid, gid)) = account {
            chown_tree(dir.path(), uid, gid);
        }
        let command = |program: &str| {
            let mut command = Command::new(bin.join(program));
            if let Some((uid, gid)) = account {
                use std::os::unix::process::CommandExt;
                command.uid(uid).gid(gid);
            }
            command
                .env("LC_ALL", "C")
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            command
        };
        let status = command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .stderr(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed: {status}");
        let port = free_port();
        // TLS goes in postgresql.conf rather than on the command line, so that a test can
        // turn it off with ALTER SYSTEM and a reload.
        let tls_settings = format!(
            "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            dir.path().join("server.crt").display(),
            dir.path().join("server.key").display()
        );
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut conf, tls_settings.as_bytes()).unwrap();
        let child = command("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "max_connections=40"])
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let server = Self { child, port, dir };
        server.wait_ready().await;
        Some(server)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.url("");
        loop {
            if tokio_postgres::connect(&url, NoTls).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the throwaway PostgreSQL on port {} did not start within 60 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A URL to this server's `postgres` database with the given query string.
    fn url(&self, query: &str) -> String {
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        if query.is_empty() {
            url
        } else {
            format!("{url}?{query}")
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Fast shutdown (SIGINT) lets the postmaster stop its children; SIGKILL only if it
        // has not exited within 10 s.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

/// Connecting with `url` fails, within 10 s (never a hang), with an error whose chain
/// contains `expected`.
async fn refused(url: &str, expected: &str) -> StoreError {
    let options = Options::default().connect_timeout(Duration::from_secs(5));
    let connecting = PostgresStore::connect_with(url, options);
    tessera_core::testing::assert_refused(url, connecting, expected).await
}

/// How many of the server's connections named `tessera` use TLS, and how many do not.
async fn tessera_connections(server: &Server) -> (i64, i64) {
    let (client, connection) = tokio_postgres::connect(&server.url(""), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'tessera'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The whole store conformance suite over `sslmode=verify-full` with a private CA, and every
/// connection the store made is TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_conformance_suite_passes_over_verified_tls() {
    let Some(server) = Server::start(&Pki::new(&["localhost", "127.0.0.1"])).await else {
        return;
    };
    let url = server.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        server.ca_file().display()
    ));
    let make = |table: String| {
        let url = url.clone();
        async move {
            let options = Options::default().table(table).pool_size(4);
            Some(PostgresStore::connect_with(&url, options).await.unwrap())
        }
    };
    tessera_core::store_conformance!(sequence: &make);
    let store = make("t_tls_check".to_owned()).await.unwrap();
    tessera_core::testing::concurrent_updates_lose_nothing(
        std::sync::Arc::new(store.clone()),
        8,
        20,
    )
    .await;
    let (tls, plain) = tessera_connections(&server).await;
    assert!(tls >= 1, "no TLS connection from the store");
    assert_eq!(plain, 0, "the store made a connection without TLS");
    store.ping().await.unwrap();
}

/// A wrong CA, the default (public) roots for a private CA, and a host name the certificate
/// does not name are all refused at connect, quickly, with an error that says why; `prefer`
/// does not fall back to plain TCP when verification fails; `verify-ca` skips only the name.
/// Once the server turns TLS off, `require` and the `verify-*` modes refuse it and `prefer`
/// goes on over plain TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_verified_and_tls_is_never_skipped() {
    let Some(server) = Server::start(&Pki::new(&["localhost", "127.0.0.1"])).await else {
        return;
    };
    let ca = server.ca_file();
    let wrong_ca = server.dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, Pki::new(&["localhost"]).ca).unwrap();

    for mode in ["require", "verify-ca", "verify-full", "prefer"] {
        let url = server.url(&format!(
            "sslmode={mode}&sslrootcert={}",
            wrong_ca.display()
        ));
        let error = refused(&url, "invalid peer certificate").await;
        assert!(
            matches!(error, StoreError::Backend(_)),
            "a certificate failure is not transient: {error:?}"
        );
        // The default roots (webpki) do not hold the throwaway CA.
        refused(&server.url(&format!("sslmode={mode}")), "UnknownIssuer").await;
    }

    // Reached by address, named as another host: only verify-ca accepts it.
    let other_name = |mode: &str| {
        format!(
            "postgres://postgres@db.invalid:{}/postgres?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={}",
            server.port,
            ca.display()
        )
    };
    refused(&other_name("verify-full"), "not valid for name").await;
    refused(&other_name("require"), "not valid for name").await;
    let store = PostgresStore::connect(&other_name("verify-ca"))
        .await
        .unwrap();
    store.ping().await.unwrap();
    drop(store);

    // `prefer` with the right CA uses TLS; `disable` (and no sslmode) does not.
    let preferred = server.url(&format!("sslmode=prefer&sslrootcert={}", ca.display()));
    let store = PostgresStore::connect_with(&preferred, Options::default().table("t_prefer"))
        .await
        .unwrap();
    let (tls, _) = tessera_connections(&server).await;
    assert!(tls >= 1, "sslmode=prefer did not use the server's TLS");
    drop(store);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let plain = PostgresStore::connect_with(
        &server.url("sslmode=disable"),
        Options::default().table("t_plain"),
    )
    .await
    .unwrap();
    let (_, plain_count) = tessera_connections(&server).await;
    assert!(plain_count >= 1, "sslmode=disable should not use TLS");
    drop(plain);

    // Bad settings are configuration errors, not outages.
    let error = refused(&server.url("sslmode=allow"), "unknown sslmode").await;
    assert!(matches!(error, StoreError::Backend(_)));
    refused(
        &server.url("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"),
        "/nonexistent/ca.pem",
    )
    .await;

    // The server turns TLS off: `require` refuses to go on, `prefer` goes on over plain TCP.
    let (admin, connection) = tokio_postgres::connect(&server.url(""), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute("ALTER SYSTEM SET ssl = off")
        .await
        .unwrap();
    admin.execute("SELECT pg_reload_conf()", &[]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (probe, connection) = tokio_postgres::connect(&server.url(""), NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let row = probe.query_one("SHOW ssl", &[]).await.unwrap();
        if row.get::<_, String>(0) == "off" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ssl=off was not reloaded within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let with_ca = |mode: &str| server.url(&format!("sslmode={mode}&sslrootcert={}", ca.display()));
    for mode in ["require", "verify-ca", "verify-full"] {
        refused(&with_ca(mode), "server does not support TLS").await;
    }
    let store =
        PostgresStore::connect_with(&with_ca("prefer"), Options::default().table("t_no_tls"))
            .await
            .unwrap();
    store.ping().await.unwrap();
}
