//! Test harness: starts the built `tessera` binary on a free port (it binds port 0 and prints
//! the address it got) and talks to it over HTTP.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// A running `tessera serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub api_key: String,
    /// The start-up banner, line by line.
    pub banner: Vec<String>,
    pub dir: PathBuf,
    pub client: reqwest::Client,
    /// Everything the server wrote to standard error so far.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _temp: Option<tempfile::TempDir>,
}

/// The stores every API and demo test runs against.
pub fn stores() -> Vec<&'static str> {
    vec!["memory:", "sqlite"]
}

/// A command with no `TESSERA_*` variable leaking in from the environment.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars() {
        if name.starts_with("TESSERA_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(dir).kill_on_drop(true);
    cmd
}

impl Server {
    /// Starts `tessera serve` on `store` ("sqlite" means a database in a fresh temp dir) with
    /// extra flags.
    pub async fn start(store: &str, extra: &[&str]) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let mut server = Self::start_in(&dir, store, extra, &[]).await;
        server._temp = Some(temp);
        server
    }

    /// Starts in `dir` (kept by the caller), with extra environment variables.
    pub async fn start_in(dir: &Path, store: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let store_flag = if store == "sqlite" {
            format!("sqlite:{}", dir.join("tessera.db").display())
        } else {
            store.to_owned()
        };
        let mut cmd = command(dir);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--store", &store_flag])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // The server never prints its key. A store with no file location gets a key from the
        // test (unless the test configures one); SQLite's generated key is read from its file.
        let configured = extra.contains(&"--api-key")
            || env
                .iter()
                .any(|(k, _)| *k == "TESSERA_API_KEY" || *k == NO_TEST_KEY);
        let mut injected = None;
        if !configured && store != "sqlite" && !store.starts_with("sqlite:") {
            let key = test_api_key();
            // `=`: a key may start with `-`, which would otherwise read as a flag.
            cmd.arg(format!("--api-key={key}"));
            injected = Some(key);
        }
        let mut child = cmd.spawn().expect("start tessera");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        // Keep draining stderr so the server never blocks on a full pipe.
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line.clone());
                if std::env::var_os("TESSERA_TEST_LOGS").is_some() {
                    eprintln!("[server] {line}");
                }
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let mut base = None;
        let mut api_key = None;
        let mut banner_lines = Vec::new();
        let banner = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                banner_lines.push(line.clone());
                if let Some(rest) = line.split("listening on ").nth(1) {
                    base = Some(rest.trim().to_owned());
                }
                if let Some(path) = key_file_in_banner(&line) {
                    let key = std::fs::read_to_string(path).expect("the key file the banner names");
                    api_key = Some(key.trim().to_owned());
                }
                if line.starts_with("demo: ") {
                    break;
                }
            }
        };
        tokio::time::timeout(WAIT, banner)
            .await
            .expect("the server printed its banner in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let Some(base) = base else {
            // The server stopped before serving: say why (its stderr, never a token there).
            tokio::time::sleep(Duration::from_millis(200)).await;
            let said = logs.lock().unwrap().join("\n");
            panic!(
                "no listen address in the banner for {store}; stdout: {banner_lines:?}; stderr:\n{said}"
            );
        };
        Self {
            child,
            base,
            api_key: injected.or(api_key).unwrap_or_default(),
            banner: banner_lines,
            dir: dir.to_path_buf(),
            client: client(),
            logs,
            _temp: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the API key.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.api_key)
    }

    /// Creates a session through the API; returns (token, view).
    pub async fn create(&self, body: serde_json::Value) -> (String, serde_json::Value) {
        let response = self
            .api(reqwest::Method::POST, "/v1/sessions")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let json: serde_json::Value = response.json().await.unwrap();
        (
            json["token"].as_str().unwrap().to_owned(),
            json["session"].clone(),
        )
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the server stopped in time")
            .unwrap()
    }
}

/// A client that follows no redirects and keeps no cookies (tests handle both by hand).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// Runs the binary to completion (bounded); returns (exit code, stdout, stderr).
pub async fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = command(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("the command finished in time")
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A fresh admin key for a server under test.
pub fn test_api_key() -> String {
    tessera_core::SessionId::generate().expose()
}

/// The key file a banner line names ("... saved to PATH (mode 0600)" or "... read from PATH").
fn key_file_in_banner(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("admin API key: ")?;
    if let Some(path) = rest.strip_prefix("generated, saved to ") {
        return path.strip_suffix(" (mode 0600)");
    }
    rest.strip_prefix("read from ")
}

/// An environment variable (ignored by the server) that tells `start_in` not to give a
/// server with no key file a key of the test's own.
pub const NO_TEST_KEY: &str = "TESSERA_TEST_NO_KEY";
