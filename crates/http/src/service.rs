//! The middleware [`Service`]: token in, CSRF pre-check, handler, commit, cookie out.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Either, Full, Limited};
use tessera_core::ClientInfo;
use tower_service::Service;

use crate::config::{CSRF_FORM_FIELD, SessionConfig, Transport};
use crate::cookie::find_session_cookie_limited;
use crate::csrf::{self, Verdict};
use crate::layer::SessionLayer;
use crate::rejection::SessionRejection;
use crate::session::{Outcome, Session};

/// The response body of [`SessionService`]: the inner service's body, or the short text of a
/// [`SessionRejection`].
pub type ResponseBody<B> = Either<B, Full<Bytes>>;

/// The future of [`SessionService`].
pub type ResponseFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send + 'static>>;

/// The service [`SessionLayer`] wraps around the inner service.
///
/// The request body type must be constructible from [`Bytes`] (axum's `Body` is), because a
/// form whose CSRF token is in a `csrf_token` field is buffered (up to
/// [`SessionConfig::max_form_bytes`]) and handed on rebuilt.
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    pub(crate) inner: S,
    pub(crate) layer: SessionLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: http_body::Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone is not ready; the ready one (self.inner) handles this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(handle(layer, inner, request))
    }
}

async fn handle<S, ReqBody, ResBody>(
    layer: SessionLayer,
    mut inner: S,
    request: Request<ReqBody>,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: http_body::Body + From<Bytes>,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let config = &*layer.config;
    let (mut parts, body) = request.into_parts();
    let cookie_mode = matches!(config.transport, Transport::Cookie);

    let token = match read_token(&parts.headers, config) {
        Ok(token) => token,
        Err(rejection) => return Ok(reject(&rejection, false)),
    };

    let mut verdict = csrf::evaluate(&parts, config, token.is_some());
    let mut body = body;
    if verdict == Verdict::NeedsToken(None) && is_form(&parts.headers) {
        // The token can only be in the form body: read it (bounded) and hand the bytes on.
        let bytes = match Limited::new(body, config.max_form_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                let rejection = SessionRejection::Csrf(csrf::CsrfFailure::MissingToken);
                tracing::warn!(target: crate::session::TARGET, "form too large or unreadable for the CSRF token check");
                return Ok(reject(&rejection, true));
            }
        };
        let field = form_urlencoded::parse(&bytes)
            .find(|(name, _)| name == CSRF_FORM_FIELD)
            .map(|(_, value)| Box::from(&*value));
        verdict = Verdict::NeedsToken(field);
        body = ReqBody::from(bytes);
    }
    let checked = verdict != Verdict::NotChecked || csrf::is_unsafe(&parts.method);

    let session = Session::new(layer.engine.clone(), token, client_info(&parts), verdict);
    parts.extensions.insert(session.clone());

    let response = inner.call(Request::from_parts(parts, body)).await?;

    let outcome = match session
        .finish(config.read_only_commit_failure_is_logged)
        .await
    {
        Ok(outcome) => outcome,
        Err(rejection) => return Ok(reject(&rejection, cookie_mode && checked)),
    };
    let mut response = response.map(Either::Left);
    let headers = response.headers_mut();
    if let Err(rejection) = apply(headers, &outcome, config) {
        return Ok(reject(&rejection, false));
    }
    if cookie_mode {
        if checked {
            append_vary(headers, "origin, sec-fetch-site");
        }
        if session.was_loaded() {
            append_vary(headers, "cookie");
        }
    }
    Ok(response)
}

/// The token the client presented, under the configured transport. Never from the URL or a
/// form field.
fn read_token(
    headers: &HeaderMap,
    config: &SessionConfig,
) -> Result<Option<Box<str>>, SessionRejection> {
    match &config.transport {
        Transport::Cookie => {
            let found = find_session_cookie_limited(
                headers,
                &config.cookie_name,
                config.max_cookie_header_bytes,
            )?;
            Ok(found.map(Box::from))
        }
        Transport::Bearer { header, .. } => find_bearer(headers, header),
    }
}

/// `<header>: Bearer <token>` (scheme case-insensitive, as RFC 9110 says). Two such headers
/// are refused; any other scheme is no session.
fn find_bearer(
    headers: &HeaderMap,
    name: &HeaderName,
) -> Result<Option<Box<str>>, SessionRejection> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(SessionRejection::Ambiguous);
    }
    let bytes = value.as_bytes();
    if bytes.len() < 7 || !bytes[..7].eq_ignore_ascii_case(b"bearer ") {
        return Ok(None);
    }
    let token = std::str::from_utf8(&bytes[7..])
        .unwrap_or("")
        .trim_matches(' ');
    Ok((!token.is_empty()).then(|| Box::from(token)))
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn client_info(parts: &http::request::Parts) -> ClientInfo {
    const MAX_USER_AGENT: usize = 256;
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| {
            let mut end = ua.len().min(MAX_USER_AGENT);
            while !ua.is_char_boundary(end) {
                end -= 1;
            }
            ua[..end].into()
        });
    #[cfg(feature = "axum")]
    let ip = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip().to_string().into());
    #[cfg(not(feature = "axum"))]
    let ip = None;
    ClientInfo { ip, user_agent }
}

/// Writes what the commit means for the client into the response headers.
fn apply(
    headers: &mut HeaderMap,
    outcome: &Outcome,
    config: &SessionConfig,
) -> Result<(), SessionRejection> {
    if !outcome.touches_client() {
        return Ok(());
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match &config.transport {
        Transport::Cookie => {
            let value = match &outcome.issued {
                Some(token) => {
                    let max_age = match (config.persistent, outcome.absolute_deadline, outcome.now)
                    {
                        (true, Some(deadline), Some(now)) => Some(deadline.since(now).as_secs()),
                        _ => None,
                    };
                    set_cookie(config, token, max_age, false)
                }
                None => set_cookie(config, "", Some(0), true),
            };
            let value = HeaderValue::try_from(value).map_err(|_| SessionRejection::InvalidToken)?;
            headers.append(header::SET_COOKIE, value);
        }
        Transport::Bearer {
            response_header, ..
        } => {
            if let Some(token) = &outcome.issued {
                let value = HeaderValue::try_from(token.as_str())
                    .map_err(|_| SessionRejection::InvalidToken)?;
                headers.insert(response_header.clone(), value);
            }
        }
    }
    if outcome.destroyed {
        headers.insert(
            HeaderName::from_static("clear-site-data"),
            HeaderValue::from_static("\"cache\", \"cookies\", \"storage\""),
        );
    }
    Ok(())
}

/// A `Set-Cookie` value with the configured attributes. `removal`: an expired, empty cookie with
/// the same attributes, so the browser drops the one it holds.
pub(crate) fn set_cookie(
    config: &SessionConfig,
    value: &str,
    max_age_secs: Option<u64>,
    removal: bool,
) -> String {
    let mut builder = cookie::Cookie::build((&*config.cookie_name, value))
        .path(&*config.path)
        .secure(config.secure)
        .http_only(config.http_only)
        .same_site(config.same_site);
    if let Some(domain) = &config.domain {
        builder = builder.domain(&**domain);
    }
    if let Some(secs) = max_age_secs {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        builder = builder.max_age(cookie::time::Duration::seconds(secs));
    }
    if removal {
        builder = builder.expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
    }
    builder.build().to_string()
}

fn append_vary(headers: &mut HeaderMap, value: &'static str) {
    headers.append(header::VARY, HeaderValue::from_static(value));
}

fn reject<B>(rejection: &SessionRejection, vary: bool) -> Response<ResponseBody<B>> {
    let mut response = rejection.to_response().map(Either::Right);
    if vary {
        append_vary(response.headers_mut(), "origin, sec-fetch-site");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_strictly() {
        let name = header::AUTHORIZATION;
        let mut h = HeaderMap::new();
        assert_eq!(find_bearer(&h, &name).unwrap(), None);
        h.insert(&name, HeaderValue::from_static("Basic abc"));
        assert_eq!(find_bearer(&h, &name).unwrap(), None);
        h.insert(&name, HeaderValue::from_static("bearer tok"));
        assert_eq!(find_bearer(&h, &name).unwrap().as_deref(), Some("tok"));
        h.insert(&name, HeaderValue::from_static("Bearer "));
        assert_eq!(find_bearer(&h, &name).unwrap(), None);
        h.insert(&name, HeaderValue::from_static("Bearer a"));
        h.append(&name, HeaderValue::from_static("Bearer b"));
        assert!(matches!(
            find_bearer(&h, &name),
            Err(SessionRejection::Ambiguous)
        ));
    }

    #[test]
    fn cookies_carry_the_configured_attributes() {
        let c = SessionConfig::default();
        let set = set_cookie(&c, "tok", Some(60), false);
        for part in [
            "__Host-session=tok",
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=60",
        ] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!set.contains("Domain"));
        let gone = set_cookie(&c, "", Some(0), true);
        for part in [
            "__Host-session=",
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=0",
            "Expires=Thu, 01 Jan 1970",
        ] {
            assert!(gone.contains(part), "{gone}");
        }
    }
}
