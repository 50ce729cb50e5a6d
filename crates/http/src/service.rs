//! The middleware [`Service`]: token in, CSRF pre-check, handler, commit, cookie out.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Either, Full, Limited};
use tower_service::Service;

use crate::config::{CSRF_FORM_FIELD, SessionConfig, Transport};
use crate::cookie::locate_session_cookie;
use crate::csrf::{self, Verdict};
use crate::layer::SessionLayer;
use crate::rejection::SessionRejection;
use crate::session::{ClientSource, Outcome, Session, Token};

/// The response body of [`SessionService`]: the inner service's body, or the short text of a
/// [`SessionRejection`].
pub type ResponseBody<B> = Either<B, Full<Bytes>>;

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

/// A boxed, sendable future.
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the layer needs after the handler: the session to commit and how to answer.
struct After {
    session: Session,
    layer: SessionLayer,
    /// The request was subject to the CSRF check (for `Vary`).
    checked: bool,
}

pin_project_lite::pin_project! {
    /// The future of [`SessionService`].
    ///
    /// A request whose session needs no commit (never touched, or only read with no touch due)
    /// completes without any allocation beyond the handle itself; only a commit (or a form that
    /// must be read for its CSRF token) goes through a boxed future.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        /// The request was refused before the handler.
        Rejected { response: Option<Response<ResponseBody<B>>> },
        /// The slow path (a form body read for its CSRF token), boxed whole.
        Boxed { future: BoxFuture<Result<Response<ResponseBody<B>>, E>> },
        /// The handler is running.
        Inner { #[pin] future: F, after: Option<After> },
        /// The session is being committed.
        Committing {
            future: BoxFuture<Result<Outcome, SessionRejection>>,
            response: Option<Response<B>>,
            after: Option<After>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Rejected { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
                StateProj::Boxed { future } => return future.as_mut().poll(cx),
                StateProj::Inner { future, after } => {
                    let response = match future.poll(cx) {
                        Poll::Ready(Ok(response)) => response,
                        Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                        Poll::Pending => return Poll::Pending,
                    };
                    let after = after.take().expect("polled after completion");
                    if let Some((outcome, used)) = after.session.finish_without_commit() {
                        return Poll::Ready(Ok(respond(response, &outcome, &after, used)));
                    }
                    let session = after.session.clone();
                    let log = after.layer.config.read_only_commit_failure_is_logged;
                    let future = Box::pin(async move { session.finish(log).await });
                    this.state.set(State::Committing {
                        future,
                        response: Some(response),
                        after: Some(after),
                    });
                }
                StateProj::Committing {
                    future,
                    response,
                    after,
                } => {
                    let outcome = match future.as_mut().poll(cx) {
                        Poll::Ready(outcome) => outcome,
                        Poll::Pending => return Poll::Pending,
                    };
                    let after = after.take().expect("polled after completion");
                    let response = response.take().expect("polled after completion");
                    let cookie_mode = matches!(after.layer.config.transport, Transport::Cookie);
                    return Poll::Ready(Ok(match outcome {
                        Ok(outcome) => respond(response, &outcome, &after, true),
                        Err(rejection) => reject(&rejection, cookie_mode && after.checked),
                    }));
                }
            }
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &*self.layer.config;
        let (mut parts, body) = request.into_parts();
        let token = match read_token(&parts.headers, config) {
            Ok(token) => token,
            Err(rejection) => {
                return ResponseFuture {
                    state: State::Rejected {
                        response: Some(reject(&rejection, false)),
                    },
                };
            }
        };
        let verdict = csrf::evaluate(&parts, config, token.is_some());
        let checked = verdict != Verdict::NotChecked || csrf::is_unsafe(&parts.method);
        if verdict == Verdict::NeedsToken(None) && is_form(&parts.headers) {
            // The token can only be in the form body: the slow path reads it first.
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            let layer = self.layer.clone();
            let future = Box::pin(with_form_token(layer, inner, parts, body, token, checked));
            return ResponseFuture {
                state: State::Boxed { future },
            };
        }
        let session = Session::new(
            self.layer.engine.clone(),
            token,
            client_info(&parts),
            verdict,
        );
        parts.extensions.insert(session.clone());
        let future = self.inner.call(Request::from_parts(parts, body));
        ResponseFuture {
            state: State::Inner {
                future,
                after: Some(After {
                    session,
                    layer: self.layer.clone(),
                    checked,
                }),
            },
        }
    }
}

/// The slow path: reads a form body (bounded) to find its `csrf_token` field, hands the bytes
/// on, and then behaves like the fast path.
async fn with_form_token<S, ReqBody, ResBody>(
    layer: SessionLayer,
    mut inner: S,
    mut parts: http::request::Parts,
    body: ReqBody,
    token: Option<Token>,
    checked: bool,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: http_body::Body + From<Bytes>,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let config = &*layer.config;
    let bytes = match Limited::new(body, config.max_form_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            tracing::warn!(target: crate::session::TARGET, "form too large or unreadable for the CSRF token check");
            let rejection = SessionRejection::Csrf(csrf::CsrfFailure::MissingToken);
            return Ok(reject(&rejection, true));
        }
    };
    let field = form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == CSRF_FORM_FIELD)
        .map(|(_, value)| Box::from(&*value));
    let session = Session::new(
        layer.engine.clone(),
        token,
        client_info(&parts),
        Verdict::NeedsToken(field),
    );
    parts.extensions.insert(session.clone());
    let response = inner
        .call(Request::from_parts(parts, ReqBody::from(bytes)))
        .await?;
    let after = After {
        session,
        layer,
        checked,
    };
    let log = after.layer.config.read_only_commit_failure_is_logged;
    Ok(match after.session.finish(log).await {
        Ok(outcome) => respond(response, &outcome, &after, true),
        Err(rejection) => reject(&rejection, after.checked),
    })
}

/// The handler's response with what the commit means for the client.
fn respond<B>(
    response: Response<B>,
    outcome: &Outcome,
    after: &After,
    loaded: bool,
) -> Response<ResponseBody<B>> {
    let config = &*after.layer.config;
    let mut response = response.map(Either::Left);
    let headers = response.headers_mut();
    if let Err(rejection) = apply(headers, outcome, config) {
        return reject(&rejection, false);
    }
    if matches!(config.transport, Transport::Cookie) {
        if after.checked {
            append_vary(headers, VARY_CSRF);
        }
        if loaded {
            append_vary(headers, VARY_COOKIE);
        }
    }
    response
}

/// The token the client presented, under the configured transport. Never from the URL or a
/// form field.
fn read_token(
    headers: &HeaderMap,
    config: &SessionConfig,
) -> Result<Option<Token>, SessionRejection> {
    match &config.transport {
        Transport::Cookie => {
            let found = locate_session_cookie(
                headers,
                &config.cookie_name,
                config.max_cookie_header_bytes,
            )?;
            Ok(found.map(|(value, range)| Token::new(value, range)))
        }
        Transport::Bearer { header, .. } => find_bearer(headers, header),
    }
}

/// `<header>: Bearer <token>` (scheme case-insensitive, as RFC 9110 says). Two such headers
/// are refused; any other scheme is no session.
fn find_bearer(headers: &HeaderMap, name: &HeaderName) -> Result<Option<Token>, SessionRejection> {
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
    let start = 7 + bytes[7..].iter().take_while(|&&b| b == b' ').count();
    let end = bytes.len()
        - bytes[start..]
            .iter()
            .rev()
            .take_while(|&&b| b == b' ')
            .count();
    Ok((start < end).then(|| Token::new(value, start..end)))
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

/// Where the request came from, kept raw: turned into a [`ClientInfo`] only if a session is
/// started, so requests that never use the session pay nothing for it.
fn client_info(parts: &http::request::Parts) -> ClientSource {
    #[cfg(feature = "axum")]
    let ip = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    #[cfg(not(feature = "axum"))]
    let ip = None;
    ClientSource {
        user_agent: parts.headers.get(header::USER_AGENT).cloned(),
        ip,
    }
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
///
/// Written out directly rather than through the `cookie` crate's `Display`, which cost more
/// than the whole session store call for a new session. The name and path were checked when
/// the layer was built ([`SessionConfig::validate`]); the value is a token (base64url or a
/// sealed token, never `;`).
pub(crate) fn set_cookie(
    config: &SessionConfig,
    value: &str,
    max_age_secs: Option<u64>,
    removal: bool,
) -> String {
    use std::fmt::Write as _;

    let mut out = String::with_capacity(config.cookie_name.len() + value.len() + 96);
    out.push_str(&config.cookie_name);
    out.push('=');
    out.push_str(value);
    if config.http_only {
        out.push_str("; HttpOnly");
    }
    out.push_str(match config.same_site {
        cookie::SameSite::Strict => "; SameSite=Strict",
        cookie::SameSite::Lax => "; SameSite=Lax",
        cookie::SameSite::None => "; SameSite=None",
    });
    if config.secure {
        out.push_str("; Secure");
    }
    out.push_str("; Path=");
    out.push_str(&config.path);
    if let Some(domain) = &config.domain {
        out.push_str("; Domain=");
        out.push_str(domain.strip_prefix('.').unwrap_or(domain));
    }
    if let Some(secs) = max_age_secs {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        let _ = write!(out, "; Max-Age={secs}");
    }
    if removal {
        out.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    }
    out
}

fn append_vary(headers: &mut HeaderMap, value: HeaderValue) {
    headers.append(header::VARY, value);
}

/// Built once: `from_static` checks its text on every call when not in a constant.
const VARY_COOKIE: HeaderValue = HeaderValue::from_static("cookie");
const VARY_CSRF: HeaderValue = HeaderValue::from_static("origin, sec-fetch-site");

fn reject<B>(rejection: &SessionRejection, vary: bool) -> Response<ResponseBody<B>> {
    let mut response = rejection.to_response().map(Either::Right);
    if vary {
        append_vary(response.headers_mut(), VARY_CSRF);
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
        let found = |h: &HeaderMap| {
            find_bearer(h, &name)
                .unwrap()
                .map(|t| t.as_str().to_owned())
        };
        assert_eq!(found(&h), None);
        h.insert(&name, HeaderValue::from_static("Basic abc"));
        assert_eq!(found(&h), None);
        h.insert(&name, HeaderValue::from_static("bearer tok"));
        assert_eq!(found(&h).as_deref(), Some("tok"));
        h.insert(&name, HeaderValue::from_static("Bearer  tok  "));
        assert_eq!(found(&h).as_deref(), Some("tok"));
        h.insert(&name, HeaderValue::from_static("Bearer "));
        assert_eq!(found(&h), None);
        h.insert(&name, HeaderValue::from_static("Bearer    "));
        assert_eq!(found(&h), None);
        h.insert(&name, HeaderValue::from_static("Bearer a"));
        h.append(&name, HeaderValue::from_static("Bearer b"));
        assert!(matches!(
            find_bearer(&h, &name),
            Err(SessionRejection::Ambiguous)
        ));
    }

    /// The hand-written `Set-Cookie` says what the `cookie` crate would: parsed back, every
    /// attribute is the configured one.
    #[test]
    fn set_cookie_values_parse_back_to_the_configuration() {
        use cookie::{Cookie, SameSite};
        let configs = [
            SessionConfig::default(),
            SessionConfig::default().insecure_dev_mode(),
            SessionConfig::default()
                .cookie_name("sid")
                .same_site(SameSite::Strict)
                .path("/app")
                .domain(".example.com"),
            SessionConfig::default()
                .cookie_name("__Secure-sid")
                .same_site(SameSite::None),
        ];
        for config in configs {
            for (value, max_age, removal) in [
                ("tok-en_1", Some(3600), false),
                ("", Some(0), true),
                ("t", None, false),
            ] {
                let text = set_cookie(&config, value, max_age, removal);
                let parsed = Cookie::parse(text.as_str()).expect(&text);
                assert_eq!(parsed.name(), &*config.cookie_name, "{text}");
                assert_eq!(parsed.value(), value, "{text}");
                assert_eq!(
                    parsed.http_only(),
                    Some(true).filter(|_| config.http_only),
                    "{text}"
                );
                assert_eq!(
                    parsed.secure(),
                    Some(true).filter(|_| config.secure),
                    "{text}"
                );
                assert_eq!(parsed.same_site(), Some(config.same_site), "{text}");
                assert_eq!(parsed.path(), Some(&*config.path), "{text}");
                assert_eq!(
                    parsed.domain(),
                    config.domain.as_deref().map(|d| d.trim_start_matches('.')),
                    "{text}"
                );
                assert_eq!(
                    parsed.max_age().map(|d| d.whole_seconds()),
                    max_age.map(|s| s as i64),
                    "{text}"
                );
                assert_eq!(
                    parsed.expires_datetime(),
                    removal.then_some(cookie::time::OffsetDateTime::UNIX_EPOCH),
                    "{text}"
                );
            }
        }
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
