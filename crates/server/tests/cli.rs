//! Start-up (banner, refusals, flags/env/TOML), TLS, graceful shutdown, logs and the admin CLI,
//! against the real binary.

mod common;

use std::time::{Duration, SystemTime};

use common::{Server, run};
use reqwest::Method;
use serde_json::{Value, json};
use tessera_core::{ClientInfo, Data, Record, SessionId, Store, Timestamp};

fn parse_time(text: &Value) -> SystemTime {
    humantime::parse_rfc3339(text.as_str().unwrap()).unwrap()
}

fn idle_of(view: &Value) -> Duration {
    parse_time(&view["expires_at"])
        .duration_since(parse_time(&view["last_seen_at"]))
        .unwrap()
}

/// A refusal: non-zero exit, one clear `tessera: error:` line, no panic.
async fn refused(args: &[&str], env: &[(&str, &str)], expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(dir.path(), args, env).await;
    assert_ne!(code, 0, "{args:?} should fail");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("tessera: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
    assert!(
        errors[0].contains(expect),
        "{args:?}: expected {expect:?} in {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configuration_stops_start_up_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "idle-timeout = \"5m\"\nbogus = true\n").unwrap();
    let bad_toml = bad_toml.to_str().unwrap().to_owned();
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap().to_owned();
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--store", "memory:"];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (serve(&["--bogus"]), "unexpected argument '--bogus'"),
        (
            serve(&["--idle-timeout", "5 parsecs"]),
            "bad --idle-timeout",
        ),
        (serve(&["--api-key", "too-short"]), "API key is too short"),
        (
            serve(&["--tls-cert", &missing, "--tls-key", &missing]),
            "cannot load the TLS certificate",
        ),
        (
            serve(&["--tls-cert", &missing]),
            "--tls-cert and --tls-key must be given together",
        ),
        (
            vec![
                "serve".into(),
                "--listen".into(),
                "nowhere".into(),
                "--store".into(),
                "memory:".into(),
            ],
            "bad --listen address",
        ),
        (serve(&["--on-limit", "panic"]), "invalid value 'panic'"),
        (
            serve(&["--allowed-origin", "evil.example"]),
            "bad --allowed-origin",
        ),
        (serve(&["--config", &bad_toml]), "unknown field `bogus`"),
        (
            vec![
                "serve".into(),
                "--store".into(),
                "sqlite:/nonexistent/dir/t.db".into(),
            ],
            "does not exist",
        ),
        (
            vec!["serve".into(), "--store".into(), "ftp://x".into()],
            "unknown --store",
        ),
    ];
    for (args, expect) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, &[], expect).await;
    }
    // From the environment too.
    refused(
        &["serve", "--listen", "127.0.0.1:0", "--store", "memory:"],
        &[("TESSERA_ABSOLUTE_TIMEOUT", "forever")],
        "bad --absolute-timeout",
    )
    .await;
    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    refused(
        &["serve", "--listen", &addr, "--store", "memory:"],
        &[],
        "cannot listen on",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_banner_and_the_generated_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), "sqlite", &[], &[]).await;
    assert!(server.base.starts_with("http://127.0.0.1:"));
    assert_eq!(server.api_key.len(), 43);
    let key_file = dir.path().join("tessera.db.api-key");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(key, server.api_key);
    let server_banner = server.banner.clone();
    server.create(json!({})).await;
    let status = server.terminate().await;
    assert!(status.success(), "{status:?}");

    // The second start reuses the key. Neither start printed it.
    let first_banner = server_banner;
    let server = Server::start_in(dir.path(), "sqlite", &[], &[]).await;
    assert_eq!(server.api_key, key);
    assert!(
        server
            .banner
            .contains(&format!("admin API key: read from {}", key_file.display())),
        "{:?}",
        server.banner
    );
    for line in first_banner.iter().chain(&server.banner) {
        assert!(!line.contains(&key), "the key was printed: {line}");
    }
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_generated_for_one_run_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), "memory:", &[], &[(common::NO_TEST_KEY, "1")]).await;
    assert!(
        server.banner.iter().any(|l| l
            == "admin API key: generated for this run only and not shown; to use the admin API, \
                set --api-key or TESSERA_API_KEY (`tessera keys generate` makes one)"),
        "{:?}",
        server.banner
    );
    assert!(
        server.api_key.is_empty(),
        "nothing in the banner reads as a key"
    );
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_beat_the_environment_which_beats_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(&config, "idle-timeout = \"5m\"\ntouch-interval = \"1s\"\n").unwrap();
    let config = config.to_str().unwrap();
    let key = "k".repeat(40);

    let server = Server::start_in(
        dir.path(),
        "memory:",
        &["--config", config],
        &[("TESSERA_API_KEY", &key)],
    )
    .await;
    assert!(
        server
            .banner
            .contains(&"admin API key: configured".to_owned()),
        "{:?}",
        server.banner
    );
    let response = server
        .client
        .post(server.url("/v1/sessions"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        idle_of(&body["session"]),
        Duration::from_secs(300),
        "from the file"
    );
    server.terminate().await;

    let server = Server::start_in(
        dir.path(),
        "memory:",
        &["--config", config],
        &[("TESSERA_API_KEY", &key), ("TESSERA_IDLE_TIMEOUT", "10m")],
    )
    .await;
    let body: Value = server
        .client
        .post(server.url("/v1/sessions"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        idle_of(&body["session"]),
        Duration::from_secs(600),
        "the environment wins"
    );
    server.terminate().await;

    let server = Server::start_in(
        dir.path(),
        "memory:",
        &["--config", config, "--idle-timeout", "90s"],
        &[("TESSERA_API_KEY", &key), ("TESSERA_IDLE_TIMEOUT", "10m")],
    )
    .await;
    let body: Value = server
        .client
        .post(server.url("/v1/sessions"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        idle_of(&body["session"]),
        Duration::from_secs(90),
        "the flag wins"
    );
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_never_carry_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        dir.path(),
        "memory:",
        &["--log-format", "json"],
        &[("RUST_LOG", "trace")],
    )
    .await;
    let (token, _) = server.create(json!({"subject": "logs"})).await;
    let login: Value = server
        .api(Method::POST, "/v1/session/login")
        .header("Session-Token", &token)
        .json(&json!({"subject": "logs"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token2 = login["token"].as_str().unwrap().to_owned();
    server
        .client
        .get(server.url("/v1/auth"))
        .bearer_auth(&token2)
        .send()
        .await
        .unwrap();
    let logs = server.logs.clone();
    assert!(server.terminate().await.success());
    let logs = logs.lock().unwrap().clone();
    assert!(logs.len() >= 2, "{logs:?}");
    for line in &logs {
        let parsed: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(parsed["level"].is_string(), "{line}");
        for secret in [&token, &token2] {
            assert!(
                !line.contains(secret.as_str()),
                "a token in the log: {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_rustls() {
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let server = Server::start_in(
        dir.path(),
        "memory:",
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .timeout(common::WAIT)
        .build()
        .unwrap();
    let response = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // Plain HTTP to the TLS port gets no answer.
    let plain = server.url("/healthz").replace("https://", "http://");
    assert!(common::client().get(plain).send().await.is_err());
    // Cookies on the demo are Secure with the __Host- prefix.
    let response = client
        .post(server.url("/demo/cart"))
        .header("origin", server.base.clone())
        .form(&[("item", "tea")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{:?}", response.text().await);
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("__Host-session=") && cookie.contains("Secure"),
        "{cookie}"
    );
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish_and_commits_land() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), "sqlite", &[], &[]).await;
    let key = server.api_key.clone();
    let url = server.url("/v1/sessions");
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let request = server
            .client
            .post(&url)
            .bearer_auth(&key)
            .json(&json!({"subject": "graceful", "data": {"i": i}}));
        let done = done_tx.clone();
        tasks.push(tokio::spawn(async move {
            let result = request.send().await;
            let _ = done.send(());
            result
        }));
    }
    // Stop the server as soon as the first answer is back, while others are still in flight.
    tokio::time::timeout(common::WAIT, done_rx.recv())
        .await
        .expect("a first answer in time");
    let status = server.terminate().await;
    assert!(status.success(), "{status:?}");
    let mut tokens = Vec::new();
    for task in tasks {
        // A request the server accepted is answered in full, never cut off; one that arrived
        // after the shutdown began may be refused (an error here), but never half-answered.
        if let Ok(response) = task.await.unwrap() {
            assert_eq!(response.status(), 201);
            let body: Value = response.json().await.expect("a complete body");
            tokens.push(body["token"].as_str().unwrap().to_owned());
        }
    }
    assert!(!tokens.is_empty());

    // Every session that was acknowledged is in the database after a restart.
    let server = Server::start_in(dir.path(), "sqlite", &[], &[]).await;
    let key = std::fs::read_to_string(dir.path().join("tessera.db.api-key")).unwrap();
    for token in &tokens {
        let response = server
            .client
            .get(server.url("/v1/session"))
            .bearer_auth(key.trim())
            .header("Session-Token", token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_cli_lists_revokes_purges_and_generates_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("tessera.db").display());
    let server = Server::start_in(dir.path(), "sqlite", &[], &[]).await;
    let (t1, v1) = server
        .create(
            json!({"subject": "fred", "client": {"ip": "198.51.100.7", "user_agent": "cli-test"}}),
        )
        .await;
    let (t2, _) = server.create(json!({"subject": "fred"})).await;
    let (t3, _) = server.create(json!({"subject": "fred"})).await;

    // list, while the service runs on the same database.
    let (code, out, err) = run(
        dir.path(),
        &["sessions", "list", "--subject", "fred", "--store", &store],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(v1["handle"].as_str().unwrap()), "{out}");
    assert!(
        out.contains("198.51.100.7") && out.contains("cli-test"),
        "{out}"
    );
    assert!(out.contains("3 live session(s)"), "{out}");
    assert!(!out.contains(&t1), "a token was printed");

    // revoke --handle
    let handle = v1["handle"].as_str().unwrap();
    let (code, out, _) = run(
        dir.path(),
        &["sessions", "revoke", "--handle", handle, "--store", &store],
        &[],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("revoked session"));
    let status = |t: String| {
        let req = server
            .api(Method::GET, "/v1/session")
            .header("Session-Token", t);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(t1.clone()).await, 404);
    let (code, _, err) = run(
        dir.path(),
        &["sessions", "revoke", "--handle", handle, "--store", &store],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("no live session"), "{err}");
    let (code, _, err) = run(
        dir.path(),
        &["sessions", "revoke", "--handle", "bad", "--store", &store],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("malformed session handle"), "{err}");

    // revoke --subject
    let (code, out, _) = run(
        dir.path(),
        &["sessions", "revoke", "--subject", "fred", "--store", &store],
        &[],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("revoked 2 session(s)"), "{out}");
    assert_eq!(status(t2).await, 404);
    assert_eq!(status(t3).await, 404);
    let (code, _, err) = run(dir.path(), &["sessions", "revoke", "--store", &store], &[]).await;
    assert_ne!(code, 0, "one of --subject/--handle is required: {err}");
    server.terminate().await;

    // purge: expired records written straight into the database (time is not waited for).
    let db = tessera_sqlite::SqliteStore::open(dir.path().join("tessera.db"))
        .await
        .unwrap();
    let past = Timestamp::now().saturating_sub(Duration::from_secs(3600));
    for expired in [true, true, true, false] {
        let deadline = if expired {
            past
        } else {
            Timestamp::now().saturating_add(Duration::from_secs(3600))
        };
        let record = Record {
            key: SessionId::generate().key(),
            subject: Some("ghost".into()),
            data: Data::new(),
            created_at: past.saturating_sub(Duration::from_secs(60)),
            authenticated_at: None,
            last_seen_at: past.saturating_sub(Duration::from_secs(60)),
            idle_deadline: deadline,
            absolute_deadline: deadline,
            version: 1,
            csrf_secret: [0; 32],
            client: ClientInfo::default(),
        };
        db.create(&record).await.unwrap();
    }
    drop(db);
    let (code, out, err) = run(dir.path(), &["purge", "--store", &store], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("purged 3 expired session(s)"), "{out}");
    let (_, out, _) = run(dir.path(), &["purge", "--store", &store], &[]).await;
    assert!(out.contains("purged 0 expired session(s)"), "{out}");

    // keys generate
    let (code, a, _) = run(dir.path(), &["keys", "generate"], &[]).await;
    assert_eq!(code, 0);
    let (_, b, _) = run(dir.path(), &["keys", "generate"], &[]).await;
    assert_eq!(a.trim().len(), 43);
    assert_ne!(a, b);
    // A generated key is accepted by `serve`.
    let server = Server::start_in(dir.path(), "memory:", &["--api-key", a.trim()], &[]).await;
    let response = server
        .client
        .post(server.url("/v1/sessions"))
        .bearer_auth(a.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn help_and_version_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(dir.path(), &["serve", "--help"], &[]).await;
    assert_eq!(code, 0);
    for flag in [
        "--listen",
        "--store",
        "--idle-timeout",
        "--absolute-timeout",
        "--touch-interval",
        "--max-sessions-per-subject",
        "--on-limit",
        "--api-key",
        "--allowed-origin",
        "--insecure-cookies",
        "--tls-cert",
        "--tls-key",
        "--config",
        "--log-format",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help");
    }
    let (code, out, _) = run(dir.path(), &["--version"], &[]).await;
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")));
}
