//! The demo shop under `/demo/`: a cart, a login, a device list with revoke buttons and a
//! logout, with real HTML forms (no JavaScript), built on `tessera-http`'s layer (secure
//! cookie, CSRF checks, `Clear-Site-Data` on logout). A panel shows what the server knows.
//!
//! An anonymous visitor gets a session only when they add to the cart (or log in): looking at
//! the shop stores nothing. Forms carry a CSRF token once there is a session; before that there
//! is no ambient credential to abuse, and the layer still refuses cross-site posts by Fetch
//! Metadata and `Origin`.

use std::fmt::Write as _;

use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tessera_core::{Key, Record};
use tessera_http::{Session, SessionConfig, SessionLayer, SessionRejection};

use crate::config::ServeConfig;
use crate::metrics::count_csrf_rejection;
use crate::state::AppState;
use crate::view::rfc3339;

/// The password every demo user has.
const PASSWORD: &str = "demo";
/// Items the shop offers to click (any other name of 1 to 64 characters can be typed).
const ITEMS: &[&str] = &["tea", "coffee", "biscuits", "honey", "jam"];
/// The longest item name and username accepted.
const MAX_NAME: usize = 64;

/// The demo routes, behind the session layer.
///
/// # Errors
///
/// An invalid cookie configuration (reported at start-up).
pub(crate) fn router(state: &AppState, config: &ServeConfig) -> anyhow::Result<Router<AppState>> {
    let mut session_config =
        SessionConfig::default().allowed_origins(config.allowed_origins.iter().cloned());
    if config.insecure_cookies {
        session_config = session_config.insecure_dev_mode();
    }
    let layer = SessionLayer::new(state.engine.clone(), session_config)
        .map_err(|error| anyhow::anyhow!("bad session cookie configuration: {error}"))?;
    Ok(Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", get(shop))
        .route("/demo/cart", post(add_to_cart))
        .route("/demo/login", post(login))
        .route("/demo/logout", post(logout))
        .route("/demo/devices", get(devices))
        .route("/demo/devices/revoke", post(revoke))
        .layer(layer))
}

/// A failed demo request: an HTML page with the status.
struct PageError(StatusCode, String);

impl From<SessionRejection> for PageError {
    fn from(rejection: SessionRejection) -> Self {
        if matches!(rejection, SessionRejection::Csrf(_)) {
            count_csrf_rejection();
        }
        Self(rejection.status(), rejection.to_string())
    }
}

impl From<tessera_core::Error> for PageError {
    fn from(error: tessera_core::Error) -> Self {
        let api = crate::error::ApiError::from(error);
        Self(api.status, api.message)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.0.canonical_reason().unwrap_or("Error");
        let body = format!(
            "<h1>{} {}</h1><p>{}</p><p><a href=\"/demo/\">Back to the shop</a></p>",
            self.0.as_u16(),
            escape(title),
            escape(&self.1)
        );
        let mut response = (self.0, Html(page(title, &body))).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

fn form_error(rejection: &FormRejection) -> PageError {
    PageError(StatusCode::BAD_REQUEST, format!("bad form: {rejection}"))
}

fn done() -> Response {
    Redirect::to("/demo/").into_response()
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · Tessera demo shop</title><style>\
body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}}\
section{{border:1px solid #ccc;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}}\
form.inline{{display:inline}}table{{border-collapse:collapse}}td,th{{padding:.2rem .6rem;text-align:left}}\
code{{background:#f4f4f4;padding:0 .2rem}}\
</style></head><body>{body}</body></html>",
        escape(title)
    )
}

fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf_token\" value=\"{}\">",
        escape(token)
    )
}

/// The token for this request's forms, or empty when there is no session yet (asking for one
/// would create a session, and looking at the shop must not).
async fn csrf(session: &Session) -> Result<String, SessionRejection> {
    if session.exists().await? {
        session.csrf_token().await
    } else {
        Ok(String::new())
    }
}

fn cart_of(record: &Record) -> Vec<String> {
    record
        .data
        .get_raw("cart")
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// `GET /demo/`: the shop.
async fn shop(session: Session) -> Result<Response, PageError> {
    let exists = session.exists().await?;
    let token = csrf(&session).await?;
    let record = session.record().await?;
    let subject = record.subject.as_deref();
    let cart = cart_of(&record);
    let field = csrf_field(&token);

    let mut body = String::from("<h1>Tessera demo shop</h1>");
    body.push_str("<section id=\"shop\"><h2>Shop</h2><p>");
    for item in ITEMS {
        let _ = write!(
            body,
            "<form class=\"inline\" method=\"post\" action=\"/demo/cart\">{field}\
<input type=\"hidden\" name=\"item\" value=\"{item}\">\
<button type=\"submit\" id=\"add-{item}\">Add {item}</button></form> "
        );
    }
    let _ = write!(
        body,
        "</p><form method=\"post\" action=\"/demo/cart\">{field}\
<label>Something else: <input name=\"item\" id=\"item\" maxlength=\"{MAX_NAME}\" required></label> \
<button type=\"submit\" id=\"add-other\">Add</button></form></section>"
    );

    body.push_str("<section id=\"cart\"><h2>Your cart</h2>");
    if cart.is_empty() {
        body.push_str("<p>The cart is empty.</p>");
    } else {
        body.push_str("<ul>");
        for item in &cart {
            let _ = write!(body, "<li class=\"cart-item\">{}</li>", escape(item));
        }
        body.push_str("</ul>");
    }
    body.push_str("</section>");

    body.push_str("<section id=\"account\"><h2>Account</h2>");
    match subject {
        None => {
            let _ = write!(
                body,
                "<form method=\"post\" action=\"/demo/login\">{field}\
<label>Username <input name=\"username\" id=\"username\" maxlength=\"{MAX_NAME}\" required></label> \
<label>Password <input type=\"password\" name=\"password\" id=\"password\" required></label> \
<button type=\"submit\" id=\"login\">Log in</button></form>\
<p>Any username works; the password is <code>demo</code>. Logging in gives the session a new ID \
and keeps the cart.</p>"
            );
        }
        Some(subject) => {
            let _ = write!(
                body,
                "<p>Logged in as <strong id=\"who\">{}</strong>. \
<a href=\"/demo/devices\" id=\"devices\">Your devices</a></p>\
<form method=\"post\" action=\"/demo/logout\">{field}\
<button type=\"submit\" id=\"logout\">Log out</button></form>",
                escape(subject)
            );
        }
    }
    body.push_str("</section>");

    body.push_str("<section id=\"server\"><h2>What the server knows</h2>");
    if exists {
        let handle = session
            .handle()
            .await?
            .map(|k| k.handle())
            .unwrap_or_default();
        let _ = write!(
            body,
            "<table><tr><th>Subject</th><td id=\"k-subject\">{}</td></tr>\
<tr><th>Cart</th><td id=\"k-cart\">{}</td></tr>\
<tr><th>Created</th><td>{}</td></tr>\
<tr><th>Expires</th><td>{}</td></tr>\
<tr><th>Session handle</th><td><code id=\"k-handle\">{}</code></td></tr></table>\
<p>The browser holds only a random session ID in an <code>HttpOnly</code> cookie; the server \
keeps this record under the ID's SHA-256 hash. The handle above is that hash: it names the \
session in device lists but cannot be used to log in.</p>",
            subject.map_or_else(|| "anonymous".to_owned(), escape),
            escape(&serde_json::to_string(&cart).unwrap_or_default()),
            rfc3339(record.created_at),
            rfc3339(record.deadline()),
            escape(&handle),
        );
    } else {
        body.push_str(
            "<p id=\"k-none\">Nothing: you have no session yet. Add something to the cart and \
the server creates one.</p>",
        );
    }
    body.push_str("</section>");
    Ok(no_store(Html(page("Shop", &body)).into_response()))
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
struct CartForm {
    item: String,
}

fn check_name(what: &str, name: &str) -> Result<(), PageError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME || name.chars().any(char::is_control) {
        return Err(PageError(
            StatusCode::BAD_REQUEST,
            format!("{what} must be 1 to {MAX_NAME} characters, without control characters"),
        ));
    }
    Ok(())
}

/// `POST /demo/cart`: adds an item (a read-modify-write, so concurrent adds all land).
async fn add_to_cart(
    session: Session,
    form: Result<Form<CartForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|r| form_error(&r))?;
    check_name("an item", &form.item)?;
    let item = form.item;
    session
        .update("cart", move |cart: Option<Vec<String>>| {
            let mut cart = cart.unwrap_or_default();
            cart.push(item.clone());
            Some(cart)
        })
        .await?;
    Ok(done())
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

/// `POST /demo/login`: password `demo` for any username; rotates the ID, keeps the cart.
async fn login(
    session: Session,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|r| form_error(&r))?;
    check_name("the username", &form.username)?;
    // The CSRF check runs on the first use of the session, so it comes before the password.
    session.exists().await?;
    if !crate::keys::matches(&form.password, PASSWORD) {
        return Err(PageError(
            StatusCode::UNAUTHORIZED,
            "wrong password (it is \"demo\"); your session is unchanged".into(),
        ));
    }
    session.login(form.username).await?;
    Ok(done())
}

/// `POST /demo/logout`: destroys the session; the layer expires the cookie and sends
/// `Clear-Site-Data`.
async fn logout(session: Session) -> Result<Response, PageError> {
    session.logout().await?;
    Ok(done())
}

async fn logged_in(session: &Session) -> Result<String, PageError> {
    session.subject().await?.ok_or_else(|| {
        PageError(
            StatusCode::UNAUTHORIZED,
            "log in first to see your devices".into(),
        )
    })
}

/// `GET /demo/devices`: the subject's sessions, with revoke buttons.
async fn devices(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    let subject = logged_in(&session).await?;
    let token = session.csrf_token().await?;
    let field = csrf_field(&token);
    let current = session.handle().await?;
    let records = state.sessions.list_subject(&subject).await?;
    let mut body = format!(
        "<h1>Your devices</h1><p>Sessions of <strong>{}</strong>, oldest first.</p>\
<table id=\"device-list\"><tr><th>Handle</th><th>Created</th><th>Last seen</th><th>IP</th><th>Browser</th><th></th></tr>",
        escape(&subject)
    );
    for record in &records {
        let this = Some(record.key) == current;
        let handle = record.key.handle();
        let _ = write!(
            body,
            "<tr class=\"device\"><td><code>{}…</code>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
<td><form class=\"inline\" method=\"post\" action=\"/demo/devices/revoke\">{field}\
<input type=\"hidden\" name=\"handle\" value=\"{}\"><button type=\"submit\">Revoke</button></form></td></tr>",
            escape(&record.key.short()),
            if this { " (this device)" } else { "" },
            rfc3339(record.created_at),
            rfc3339(record.last_seen_at),
            escape(record.client.ip.as_deref().unwrap_or("-")),
            escape(record.client.user_agent.as_deref().unwrap_or("-")),
            escape(&handle),
        );
    }
    let _ = write!(
        body,
        "</table><form method=\"post\" action=\"/demo/devices/revoke\">{field}\
<input type=\"hidden\" name=\"handle\" value=\"others\">\
<button type=\"submit\" id=\"revoke-others\">Log out all other devices</button></form>\
<p><a href=\"/demo/\">Back to the shop</a></p>"
    );
    Ok(no_store(Html(page("Your devices", &body)).into_response()))
}

#[derive(Deserialize)]
struct RevokeForm {
    handle: String,
}

/// `POST /demo/devices/revoke`: `handle=<handle>` revokes one of the subject's sessions,
/// `handle=others` all but this one.
async fn revoke(
    State(state): State<AppState>,
    session: Session,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|r| form_error(&r))?;
    let subject = logged_in(&session).await?;
    let current = session.handle().await?;
    if form.handle == "others" {
        let n = state
            .sessions
            .revoke_subject(&subject, current.as_ref())
            .await?;
        crate::metrics::count_revoked(n);
        return Ok(done());
    }
    let key = Key::from_handle(&form.handle)
        .ok_or_else(|| PageError(StatusCode::BAD_REQUEST, "malformed session handle".into()))?;
    // Only the subject's own sessions can be revoked from here.
    let owned = state
        .sessions
        .record(&key)
        .await?
        .is_some_and(|record| record.subject.as_deref() == Some(subject.as_str()));
    if !owned {
        return Err(PageError(
            StatusCode::NOT_FOUND,
            "no such session among your devices".into(),
        ));
    }
    state.sessions.revoke(&key).await?;
    crate::metrics::count_revoked(1);
    if Some(key) == current {
        // Revoking this very session is a logout: let the layer clear the client too.
        session.logout().await?;
    }
    Ok(done())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
