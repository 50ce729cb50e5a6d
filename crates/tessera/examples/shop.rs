//! Run with `cargo run -p tessera --example shop`, then open http://127.0.0.1:3000
//!
//! A small shop on Tessera sessions: an anonymous cart, login (the session ID is rotated),
//! logout (the cookie and the site data are cleared), a page listing your sessions with revoke
//! buttons, and every form protected against CSRF. It runs on plain HTTP, so it uses the
//! insecure development mode (cookie `session`, no `Secure`); drop `.insecure_dev_mode()`
//! behind HTTPS.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Form, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tessera::{Key, MemoryStore, Session, SessionConfig, SessionLayer, SessionRejection, Sessions};

const ITEMS: [&str; 4] = ["tea", "coffee", "honey", "biscuits"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let sessions = Sessions::new(MemoryStore::new());
    let _purger = sessions.spawn_purger(std::time::Duration::from_secs(60), 1000);
    let layer = SessionLayer::new(
        sessions.clone(),
        SessionConfig::default().insecure_dev_mode(),
    )?;

    let app = Router::new()
        .route("/", get(home))
        .route("/cart/add", post(add_to_cart))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/devices", get(devices))
        .route("/devices/revoke", post(revoke))
        .with_state(sessions)
        .layer(layer);

    let address = SocketAddr::from(([127, 0, 0, 1], 3000));
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!("listening on http://{address}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

type Page = Result<Response, SessionRejection>;

async fn home(session: Session) -> Page {
    let user = session.subject().await?;
    let cart: Vec<String> = session.get("cart").await?.unwrap_or_default();
    let token = session.csrf_token().await?;

    let mut body = String::from("<h1>Tessera shop</h1>");
    match &user {
        Some(user) => {
            body += &format!(
                "<p>Logged in as <b>{}</b>. <a href=\"/devices\">Your devices</a></p>\
             <form method=post action=/logout>{}<button>Log out</button></form>",
                escape(user),
                hidden(&token)
            )
        }
        None => {
            body += &format!(
                "<form method=post action=/login>{}<input name=username placeholder=name required> \
             <button>Log in</button></form>",
                hidden(&token)
            )
        }
    }
    body += "<h2>Items</h2><ul>";
    for item in ITEMS {
        body += &format!(
            "<li>{item} <form method=post action=/cart/add style=display:inline>{}\
             <input type=hidden name=item value={item}><button>Add</button></form></li>",
            hidden(&token)
        );
    }
    body += "</ul><h2>Your cart</h2><ul>";
    for item in &cart {
        body += &format!("<li>{}</li>", escape(item));
    }
    body += "</ul>";
    Ok(page(&body))
}

#[derive(Deserialize)]
struct AddItem {
    item: String,
}

async fn add_to_cart(session: Session, Form(form): Form<AddItem>) -> Page {
    if !ITEMS.contains(&form.item.as_str()) {
        return Ok((axum::http::StatusCode::BAD_REQUEST, "no such item").into_response());
    }
    // `update` re-runs on conflict, so two tabs adding at once both count.
    session
        .update("cart", move |cart: Option<Vec<String>>| {
            let mut cart = cart.unwrap_or_default();
            cart.push(form.item.clone());
            Some(cart)
        })
        .await?;
    Ok(Redirect::to("/").into_response())
}

#[derive(Deserialize)]
struct Login {
    username: String,
}

async fn login(session: Session, Form(form): Form<Login>) -> Page {
    let name = form.username.trim();
    if name.is_empty() || name.len() > 64 {
        return Ok((axum::http::StatusCode::BAD_REQUEST, "bad user name").into_response());
    }
    // A real app checks a password here. The login gives the session a new ID (the cart is
    // kept), and the old ID stops working at once.
    session.login(name).await?;
    Ok(Redirect::to("/").into_response())
}

async fn logout(session: Session) -> Page {
    session.logout().await?;
    Ok(Redirect::to("/").into_response())
}

async fn devices(session: Session, State(sessions): State<Sessions>) -> Page {
    let Some(user) = session.subject().await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let current = session.handle().await?;
    let token = session.csrf_token().await?;
    let list = sessions
        .list_subject(&user)
        .await
        .map_err(SessionRejection::from_engine)?;
    let mut body = format!("<h1>Sessions of {}</h1><ul>", escape(&user));
    for record in list {
        let this = if Some(record.key) == current {
            " (this device)"
        } else {
            ""
        };
        body += &format!(
            "<li>{} from {} since {}{this} \
             <form method=post action=/devices/revoke style=display:inline>{}\
             <input type=hidden name=handle value={}><button>Revoke</button></form></li>",
            escape(
                record
                    .client
                    .user_agent
                    .as_deref()
                    .unwrap_or("unknown browser")
            ),
            escape(record.client.ip.as_deref().unwrap_or("unknown address")),
            record.created_at,
            hidden(&token),
            record.key.handle(),
        );
    }
    body += "</ul><p><a href=/>Back to the shop</a></p>";
    Ok(page(&body))
}

#[derive(Deserialize)]
struct Revoke {
    handle: String,
}

async fn revoke(
    session: Session,
    State(sessions): State<Sessions>,
    Form(form): Form<Revoke>,
) -> Page {
    let Some(user) = session.subject().await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let Some(key) = Key::from_handle(&form.handle) else {
        return Ok((axum::http::StatusCode::BAD_REQUEST, "bad handle").into_response());
    };
    // Only the user's own sessions may be revoked.
    let record = sessions
        .record(&key)
        .await
        .map_err(SessionRejection::from_engine)?;
    if record.is_some_and(|r| r.subject.as_deref() == Some(user.as_str())) {
        sessions
            .revoke(&key)
            .await
            .map_err(SessionRejection::from_engine)?;
    }
    Ok(Redirect::to("/devices").into_response())
}

fn hidden(token: &str) -> String {
    format!("<input type=hidden name=csrf_token value=\"{token}\">")
}

fn page(body: &str) -> Response {
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Tessera shop</title>{body}"
    ))
    .into_response()
}

fn escape(text: &str) -> String {
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
