//! The service on the shared stores (PostgreSQL, MySQL/MariaDB, Redis, Redis Cluster,
//! Memcached), and two instances sharing one store. A store whose server is not reachable is
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

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_one_store_without_sticky_sessions() {
    let (name, url, port) = STORES[2];
    if !reachable(name, port) {
        return;
    }
    let key = "s".repeat(43);
    let mut a = Server::start(url, &["--api-key", &key]).await;
    let b = Server::start(url, &["--api-key", &key]).await;
    assert_eq!(a.api_key, "configured");
    a.api_key = key.clone();
    let subject = unique("lb");
    let (token, _) = a.create(json!({"subject": subject})).await;
    // Written through A, read and changed through B, seen through A.
    let patched = b
        .client
        .patch(b.url("/v1/session"))
        .bearer_auth(&key)
        .header("Session-Token", &token)
        .json(&json!({"theme": "dark"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let seen: Value = a
        .client
        .get(a.url("/v1/session"))
        .bearer_auth(&key)
        .header("Session-Token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["data"]["theme"], "dark");
    // Logged out through B: A refuses it at once.
    let deleted = b
        .client
        .delete(b.url("/v1/session"))
        .bearer_auth(&key)
        .header("Session-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let auth = a
        .client
        .get(a.url("/v1/auth"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(auth.status(), 401);
    a.terminate().await;
    b.terminate().await;
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
