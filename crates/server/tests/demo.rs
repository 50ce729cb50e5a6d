//! The demo shop over HTTP (cookies and CSRF handled by hand), on `memory:` and on SQLite.

mod common;

use common::Server;
use reqwest::header::{COOKIE, SET_COOKIE};

const COOKIE_NAME: &str = "__Host-session";

/// The session cookie a response sets: `Some(Some(value))`, `Some(None)` when it is cleared.
fn set_cookie(response: &reqwest::Response) -> Option<Option<String>> {
    response.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let text = v.to_str().unwrap();
        let rest = text.strip_prefix(&format!("{COOKIE_NAME}="))?;
        assert!(
            text.contains("HttpOnly") && text.contains("Secure") && text.contains("Path=/"),
            "{text}"
        );
        let value = rest.split(';').next().unwrap().to_owned();
        let cleared = value.is_empty() || text.contains("Max-Age=0");
        Some((!cleared).then_some(value))
    })
}

struct Browser<'a> {
    server: &'a Server,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(server: &'a Server) -> Self {
        Self {
            server,
            cookie: None,
        }
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(value) => request.header(COOKIE, format!("{COOKIE_NAME}={value}")),
            None => request,
        }
    }

    async fn get(&mut self, path: &str) -> (u16, String) {
        let request = self.with_cookie(self.server.client.get(self.server.url(path)));
        let response = request.send().await.unwrap();
        self.absorb(&response);
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// A same-origin form post, as a browser sends it (Fetch Metadata and Origin).
    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let request = self
            .with_cookie(self.server.client.post(self.server.url(path)))
            .header("origin", self.server.base.clone())
            .header("sec-fetch-site", "same-origin")
            .form(form);
        let response = request.send().await.unwrap();
        self.absorb(&response);
        response
    }

    fn absorb(&mut self, response: &reqwest::Response) {
        if let Some(value) = set_cookie(response) {
            self.cookie = value;
        }
    }

    /// The CSRF token in the page's forms.
    async fn csrf(&mut self) -> String {
        let (_, page) = self.get("/demo/").await;
        let marker = "name=\"csrf_token\" value=\"";
        let start = page.find(marker).expect("a CSRF field") + marker.len();
        page[start..start + page[start..].find('"').unwrap()].to_owned()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shop_lifecycle_on_every_store() {
    for store in common::stores() {
        let server = Server::start(store, &[]).await;
        let mut browser = Browser::new(&server);

        // Looking creates nothing.
        let (status, page) = browser.get("/demo/").await;
        assert_eq!(status, 200, "{store}");
        assert!(page.contains("no session yet"));
        assert!(browser.cookie.is_none(), "no session before the first add");

        // Adding creates the session; names are HTML-escaped.
        let response = browser
            .post("/demo/cart", &[("item", "tea"), ("csrf_token", "")])
            .await;
        assert_eq!(response.status(), 303);
        assert_eq!(response.headers()["location"], "/demo/");
        let first_cookie = browser
            .cookie
            .clone()
            .expect("a session cookie after the first add");
        let token = browser.csrf().await;
        let response = browser
            .post(
                "/demo/cart",
                &[("item", "<b>jam</b>"), ("csrf_token", &token)],
            )
            .await;
        assert_eq!(response.status(), 303);
        let (_, page) = browser.get("/demo/").await;
        assert!(page.contains("<li class=\"cart-item\">tea</li>"), "{page}");
        assert!(page.contains("&lt;b&gt;jam&lt;/b&gt;") && !page.contains("<b>jam</b>"));
        assert!(page.contains("anonymous"));

        // Bad items: empty, too long.
        let response = browser
            .post("/demo/cart", &[("item", ""), ("csrf_token", &token)])
            .await;
        assert_eq!(response.status(), 400);
        let long = "x".repeat(65);
        let response = browser
            .post("/demo/cart", &[("item", &long), ("csrf_token", &token)])
            .await;
        assert_eq!(response.status(), 400);

        // Concurrent adds all land.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let request = server
                .client
                .post(server.url("/demo/cart"))
                .header(COOKIE, format!("{COOKIE_NAME}={first_cookie}"))
                .header("origin", server.base.clone())
                .form(&[("item", format!("item-{i}")), ("csrf_token", token.clone())]);
            tasks.push(tokio::spawn(async move {
                request.send().await.unwrap().status().as_u16()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), 303);
        }
        let (_, page) = browser.get("/demo/").await;
        assert_eq!(
            page.matches("class=\"cart-item\"").count(),
            10,
            "{store}: {page}"
        );

        // A wrong password: 401, session unchanged.
        let response = browser
            .post(
                "/demo/login",
                &[
                    ("username", "zoe"),
                    ("password", "nope"),
                    ("csrf_token", &token),
                ],
            )
            .await;
        assert_eq!(response.status(), 401);
        assert_eq!(browser.cookie.as_deref(), Some(first_cookie.as_str()));
        let (_, page) = browser.get("/demo/").await;
        assert!(page.contains("anonymous"));

        // Login: a new cookie, the cart kept, the old cookie refused.
        let response = browser
            .post(
                "/demo/login",
                &[
                    ("username", "zoe"),
                    ("password", "demo"),
                    ("csrf_token", &token),
                ],
            )
            .await;
        assert_eq!(response.status(), 303);
        let second_cookie = browser.cookie.clone().unwrap();
        assert_ne!(second_cookie, first_cookie);
        let (_, page) = browser.get("/demo/").await;
        assert!(page.contains("<strong id=\"who\">zoe</strong>"));
        assert_eq!(page.matches("class=\"cart-item\"").count(), 10);
        let auth = server
            .client
            .get(server.url("/v1/auth"))
            .header(COOKIE, format!("{COOKIE_NAME}={first_cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(auth.status(), 401, "the pre-login ID is dead");
        let auth = server
            .client
            .get(server.url("/v1/auth"))
            .header(COOKIE, format!("{COOKIE_NAME}={second_cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(auth.status(), 200);
        assert_eq!(auth.headers()["tessera-subject"], "zoe");

        // The old CSRF token died with the old ID (tested without Fetch Metadata / Origin, so
        // only the token can vouch for the form).
        let stale = server
            .client
            .post(server.url("/demo/cart"))
            .header(COOKIE, format!("{COOKIE_NAME}={second_cookie}"))
            .form(&[("item", "x"), ("csrf_token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 403);

        // Devices: a second device for zoe, listed, then revoked as "others".
        let mut phone = Browser::new(&server);
        phone
            .post(
                "/demo/login",
                &[
                    ("username", "zoe"),
                    ("password", "demo"),
                    ("csrf_token", ""),
                ],
            )
            .await;
        assert!(phone.cookie.is_some());
        let (status, page) = browser.get("/demo/devices").await;
        assert_eq!(status, 200);
        assert_eq!(page.matches("class=\"device\"").count(), 2, "{page}");
        assert!(page.contains("(this device)"));
        let token = browser.csrf().await;
        let response = browser
            .post(
                "/demo/devices/revoke",
                &[("handle", "others"), ("csrf_token", &token)],
            )
            .await;
        assert_eq!(response.status(), 303);
        let (_, page) = phone.get("/demo/").await;
        assert!(page.contains("no session yet"), "the phone was logged out");
        let (_, page) = browser.get("/demo/devices").await;
        assert_eq!(page.matches("class=\"device\"").count(), 1);

        // Revoke by handle: only one's own sessions.
        let response = browser
            .post(
                "/demo/devices/revoke",
                &[("handle", &"A".repeat(43)), ("csrf_token", &token)],
            )
            .await;
        assert_eq!(response.status(), 404);

        // Logout: the cookie is cleared, Clear-Site-Data is sent, the old cookie is refused.
        let response = browser
            .post("/demo/logout", &[("csrf_token", &token)])
            .await;
        assert_eq!(response.status(), 303);
        let clear = response.headers()["clear-site-data"].to_str().unwrap();
        assert!(clear.contains("\"cookies\""), "{clear}");
        assert!(browser.cookie.is_none(), "the cookie was cleared");
        let auth = server
            .client
            .get(server.url("/v1/auth"))
            .header(COOKIE, format!("{COOKIE_NAME}={second_cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(auth.status(), 401);
        let (status, _) = browser.get("/demo/devices").await;
        assert_eq!(status, 401);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_site_posts_are_refused_and_counted() {
    let server = Server::start("memory:", &[]).await;
    let mut browser = Browser::new(&server);
    browser
        .post("/demo/cart", &[("item", "tea"), ("csrf_token", "")])
        .await;
    let cookie = browser.cookie.clone().unwrap();
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        let response = server
            .client
            .post(server.url("/demo/cart"))
            .header(COOKIE, format!("{COOKIE_NAME}={cookie}"))
            .header(name, value)
            .form(&[("item", "evil")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{name}: {value}");
    }
    // No token and no browser signal at all, with a cookie: refused as well.
    let response = server
        .client
        .post(server.url("/demo/logout"))
        .header(COOKIE, format!("{COOKIE_NAME}={cookie}"))
        .form(&[("csrf_token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let (_, page) = browser.get("/demo/").await;
    assert!(
        !page.contains("evil") && page.contains("cart-item\">tea"),
        "{page}"
    );
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tessera_csrf_rejections_total 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_cookies_drop_the_prefix_and_secure() {
    let server = Server::start("memory:", &["--insecure-cookies"]).await;
    let response = server
        .client
        .post(server.url("/demo/cart"))
        .header("origin", server.base.clone())
        .form(&[("item", "tea")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("session="), "{cookie}");
    assert!(
        !cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}
