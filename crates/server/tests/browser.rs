//! The demo shop in a real browser: headless Chromium driven over WebDriver (chromedriver) with
//! `fantoccini`. Add to cart, log in (the cart survives, the cookie changes), check that
//! `document.cookie` cannot see the session cookie, log out, and check the old cookie is refused.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian `chromium`,
//! `chromium-driver`). Without them the test is skipped with a message, unless
//! `TESSERA_REQUIRE_STORES=1` (CI), where it fails.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Server, WAIT};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const COOKIE: &str = "__Host-session";

fn browser_available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        if std::env::var("TESSERA_REQUIRE_STORES").as_deref() == Ok("1") {
            panic!(
                "Chromium ({CHROMIUM}) and chromedriver ({CHROMEDRIVER}) are required (TESSERA_REQUIRE_STORES=1)"
            );
        }
        eprintln!("skipping the browser test: {CHROMIUM} or {CHROMEDRIVER} is missing");
    }
    present
}

/// Starts chromedriver on a free port and waits (bounded) until it accepts connections.
async fn chromedriver() -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not start in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, port)
}

async fn browser(port: u16, profile: &Path) -> Client {
    // Two rustls crypto providers are compiled into the test build; pick one explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connect = ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await;
    connect.expect("a Chromium session")
}

/// Waits (bounded) until the page source contains `needle`.
async fn wait_for(client: &Client, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let source = client.source().await.unwrap();
        if source.contains(needle) {
            return source;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {needle:?}; page:\n{source}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn session_cookie(client: &Client) -> Option<String> {
    let cookies = client.get_all_cookies().await.unwrap();
    cookies
        .iter()
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_owned())
}

async fn forward_auth(server: &Server, cookie: &str) -> u16 {
    server
        .client
        .get(server.url("/v1/auth"))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shop_in_headless_chromium() {
    if !browser_available() {
        return;
    }
    let run = async {
        let server = Server::start("sqlite", &[]).await;
        // `localhost` is a secure context for Chromium, so `Secure` `__Host-` cookies work over
        // plain HTTP there: the test runs with the production cookie settings.
        let base = server.base.replace("127.0.0.1", "localhost");
        let (mut driver, port) = chromedriver().await;
        let profile = tempfile::tempdir().unwrap();
        let client = browser(port, profile.path()).await;

        client.goto(&format!("{base}/demo/")).await.unwrap();
        wait_for(&client, "no session yet").await;
        assert_eq!(
            session_cookie(&client).await,
            None,
            "looking creates no session"
        );

        // Add to cart: the session starts here.
        client
            .find(Locator::Id("add-tea"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(&client, "<li class=\"cart-item\">tea</li>").await;
        let before = session_cookie(&client)
            .await
            .expect("a session cookie after adding");

        // Scripts cannot see the session cookie (HttpOnly).
        let visible = client
            .execute("return document.cookie", vec![])
            .await
            .unwrap();
        assert!(
            !visible.as_str().unwrap_or("").contains(COOKIE),
            "document.cookie shows {visible}"
        );

        // Log in: the cart survives, the cookie changes.
        client
            .find(Locator::Id("username"))
            .await
            .unwrap()
            .send_keys("ada")
            .await
            .unwrap();
        client
            .find(Locator::Id("password"))
            .await
            .unwrap()
            .send_keys("demo")
            .await
            .unwrap();
        client
            .find(Locator::Id("login"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let page = wait_for(&client, "<strong id=\"who\">ada</strong>").await;
        assert!(
            page.contains("<li class=\"cart-item\">tea</li>"),
            "the cart survived the login"
        );
        let after = session_cookie(&client)
            .await
            .expect("a session cookie after login");
        assert_ne!(after, before, "login issues a new session ID");
        assert_eq!(
            forward_auth(&server, &before).await,
            401,
            "the pre-login cookie is dead"
        );
        assert_eq!(forward_auth(&server, &after).await, 200);

        // The device list shows this browser.
        client
            .find(Locator::Id("devices"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let page = wait_for(&client, "(this device)").await;
        assert!(
            page.contains("HeadlessChrome") || page.contains("Chrome"),
            "{page}"
        );
        client.goto(&format!("{base}/demo/")).await.unwrap();
        wait_for(&client, "Log out").await;

        // Log out: the cookie is gone and the old one is refused.
        client
            .find(Locator::Id("logout"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(&client, "no session yet").await;
        assert_eq!(
            session_cookie(&client).await,
            None,
            "the cookie was cleared"
        );
        assert_eq!(
            forward_auth(&server, &after).await,
            401,
            "the logged-out cookie is refused"
        );

        client.close().await.unwrap();
        let _ = driver.kill().await;
        server.terminate().await;
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser test finished in time");
}
