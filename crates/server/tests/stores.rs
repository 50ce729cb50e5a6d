//! The service on the shared stores (PostgreSQL, MySQL/MariaDB, Redis, Redis Cluster,
//! Memcached), three instances sharing one store, and a store outage while running. A store whose server is not reachable is
//! skipped with a message, or fails the test under `TESSERA_REQUIRE_STORES=1` (CI).

mod common;

use common::Server;
use reqwest::Method;
use serde_json::{Value, json};

const STORES: &[(&str, &str, u16)] = &[
    ("postgres", "postgres://postgres@127.0.0.1:5432/test", 5432),
    ("mysql", "mysql://root@127.0.0.1:3306/test", 3306),
    ("redis", "redis://127.0.0.1:6379", 6379),
    (
        "redis cluster",
        "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
        7001,
    ),
    ("memcached", "memcached://127.0.0.1:11211", 11211),
];

fn reachable(name: &str, port: u16) -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        std::time::Duration::from_secs(2),
    )
    .is_ok();
    if !up {
        if std::env::var("TESSERA_REQUIRE_STORES").as_deref() == Ok("1") {
            panic!(
                "the {name} server on 127.0.0.1:{port} is not reachable (TESSERA_REQUIRE_STORES=1)"
            );
        }
        eprintln!("skipping the {name} store: nothing listens on 127.0.0.1:{port}");
    }
    up
}

fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    format!(
        "{prefix}-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_on_every_shared_store() {
    for &(name, url, port) in STORES {
        if !reachable(name, port) {
            continue;
        }
        let server = Server::start(url, &[]).await;
        let subject = unique("shared");
        let (token, view) = server.create(json!({"data": {"cart": ["tea"]}})).await;
        let login: Value = server
            .api(Method::POST, "/v1/session/login")
            .header("Session-Token", &token)
            .json(&json!({"subject": subject}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token2 = login["token"].as_str().unwrap().to_owned();
        assert_eq!(login["session"]["data"]["cart"], json!(["tea"]), "{name}");
        assert_ne!(login["session"]["handle"], view["handle"]);
        let old = server
            .api(Method::GET, "/v1/session")
            .header("Session-Token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(old.status(), 404, "{name}: the old token is dead");
        let auth = server
            .client
            .get(server.url("/v1/auth"))
            .bearer_auth(&token2)
            .send()
            .await
            .unwrap();
        assert_eq!(auth.status(), 200, "{name}");
        assert_eq!(auth.headers()["tessera-subject"], subject.as_str());
        let ready = server
            .client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200, "{name}");

        let list = server
            .api(Method::GET, &format!("/v1/subjects/{subject}/sessions"))
            .send()
            .await
            .unwrap();
        if name == "memcached" {
            // No subject index in Memcached: said plainly.
            let body: Value = list.json().await.unwrap();
            assert_eq!(body["error"], "unsupported", "{body}");
        } else {
            assert_eq!(list.status(), 200, "{name}");
            let body: Value = list.json().await.unwrap();
            assert_eq!(
                body["sessions"].as_array().unwrap().len(),
                1,
                "{name}: {body}"
            );
        }
        let deleted = server
            .api(Method::DELETE, "/v1/session")
            .header("Session-Token", &token2)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204, "{name}");
        let auth = server
            .client
            .get(server.url("/v1/auth"))
            .bearer_auth(&token2)
            .send()
            .await
            .unwrap();
        assert_eq!(auth.status(), 401, "{name}");
        assert!(server.terminate().await.success());
    }
}

/// What one instance answers for `token` on `GET /v1/session`.
async fn status_of(server: &Server, token: &str) -> u16 {
    server
        .api(Method::GET, "/v1/session")
        .header("Session-Token", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Three instances on one shared store, as behind a load balancer with no sticky sessions:
/// created through the first, read and changed through the second, revoked through the
/// third, then refused by all three; "log out everywhere" through one ends the subject's
/// sessions on all.
#[tokio::test(flavor = "multi_thread")]
async fn three_instances_share_one_store_without_sticky_sessions() {
    for &(name, url, port) in [STORES[0], STORES[2]].iter() {
        if !reachable(name, port) {
            continue;
        }
        let key = "s".repeat(43);
        let mut servers = Vec::new();
        for _ in 0..3 {
            let mut server = Server::start(url, &["--api-key", &key]).await;
            server.api_key = key.clone();
            servers.push(server);
        }
        let [a, b, c] = &servers[..] else {
            unreachable!()
        };
        let subject = unique("lb");

        // Created through A, read and changed through B, seen through C.
        let (token, _) = a
            .create(json!({"subject": subject, "data": {"cart": ["tea"]}}))
            .await;
        let patched = b
            .api(Method::PATCH, "/v1/session")
            .header("Session-Token", &token)
            .json(&json!({"theme": "dark"}))
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 200, "{name}");
        let seen: Value = c
            .api(Method::GET, "/v1/session")
            .header("Session-Token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(seen["data"]["theme"], "dark", "{name}");
        assert_eq!(seen["data"]["cart"], json!(["tea"]), "{name}");

        // Revoked through C (by handle): refused by all three, and a late change through B
        // cannot bring it back.
        let handle = seen["handle"].as_str().unwrap().to_owned();
        let revoked = c
            .api(Method::DELETE, &format!("/v1/sessions/{handle}"))
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), 204, "{name}");
        for server in [a, b, c] {
            assert_eq!(status_of(server, &token).await, 404, "{name}");
            let auth = server
                .client
                .get(server.url("/v1/auth"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(auth.status(), 401, "{name}");
        }
        let late = b
            .api(Method::PATCH, "/v1/session")
            .header("Session-Token", &token)
            .json(&json!({"theme": "light"}))
            .send()
            .await
            .unwrap();
        assert_eq!(late.status(), 404, "{name}");
        assert_eq!(status_of(a, &token).await, 404, "{name}");

        // Log out everywhere through B ends the subject's sessions made through A and C.
        let (t1, _) = a.create(json!({"subject": subject})).await;
        let (t2, _) = c.create(json!({"subject": subject})).await;
        let listed: Value = b
            .api(Method::GET, &format!("/v1/subjects/{subject}/sessions"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed["sessions"].as_array().unwrap().len(), 2, "{name}");
        let out: Value = b
            .api(Method::DELETE, &format!("/v1/subjects/{subject}/sessions"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(out["revoked"], 2, "{name}");
        for server in [a, b, c] {
            assert_eq!(status_of(server, &t1).await, 404, "{name}");
            assert_eq!(status_of(server, &t2).await, 404, "{name}");
        }
        for server in servers {
            assert!(server.terminate().await.success(), "{name}");
        }
    }
}

/// A Redis server of the test's own, on a free port, that the test can stop and start again.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
            port,
            child: Some(child),
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The store goes down while the service runs: requests that need it get 503 at once (never
/// "no session"), `/readyz` says not ready; when it comes back, the service recovers by itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_outage_gives_503_and_the_service_recovers_without_a_restart() {
    if !reachable("redis", 6379) {
        return; // redis-server is installed where the standard instance runs
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = OwnRedis::start(port);
    let server = Server::start(&format!("redis://127.0.0.1:{}", redis.port), &[]).await;
    let (token, _) = server.create(json!({"subject": "outage"})).await;
    assert_eq!(status_of(&server, &token).await, 200);

    redis.stop();
    let started = std::time::Instant::now();
    assert_eq!(status_of(&server, &token).await, 503);
    let auth = server
        .client
        .get(server.url("/v1/auth"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(auth.status(), 503, "forward-auth fails closed");
    let ready = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let healthy = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200, "the process itself is alive");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "bounded, no hang"
    );

    let _redis = OwnRedis::start(port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let ready = server
            .client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap();
        if ready.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not recover"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The new Redis kept nothing (no persistence): the old session is gone, new ones work.
    assert_eq!(status_of(&server, &token).await, 404);
    let (fresh, _) = server.create(json!({"subject": "outage"})).await;
    assert_eq!(status_of(&server, &fresh).await, 200);
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_store_stops_start_up_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "postgres://postgres@127.0.0.1:1/test?connect_timeout=2",
        "redis://127.0.0.1:1",
        "memcached://127.0.0.1:1",
    ] {
        let (code, _, stderr) = common::run(
            dir.path(),
            &["serve", "--listen", "127.0.0.1:0", "--store", url],
            &[],
        )
        .await;
        assert_ne!(code, 0, "{url}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("tessera: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{url}: {stderr}");
        assert!(
            errors[0].contains("cannot open the store") || errors[0].contains("does not answer"),
            "{stderr}"
        );
    }
}
