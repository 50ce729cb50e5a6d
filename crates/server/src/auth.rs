//! Forward-auth: `GET /v1/auth` for nginx `auth_request`, Traefik ForwardAuth and Envoy
//! ext_authz. No API key: the proxy passes the user's `Cookie` or `Authorization` header.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::{Commit, SessionId};

use crate::error::ApiError;
use crate::metrics::{count_commit, count_unknown_session};
use crate::state::AppState;

/// The response headers naming who the request is from.
pub(crate) const SUBJECT_HEADER: &str = "tessera-subject";
/// The session's handle (not its token).
pub(crate) const SESSION_HEADER: &str = "tessera-session";

/// 200 with `Tessera-Subject` and `Tessera-Session` for a live, logged-in session; 401
/// otherwise (no token, two session cookies, unknown/expired/revoked, or anonymous); 503 when
/// the store fails (the proxy then fails closed). Counts as activity.
pub(crate) async fn forward_auth(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = match token(&headers, state.cookie_name) {
        Ok(Some(token)) => token,
        Ok(None) => return denied("no session"),
        Err(reason) => return denied(reason),
    };
    let Some(id) = SessionId::parse(token) else {
        count_unknown_session();
        return denied("no live session");
    };
    let mut session = match state.sessions.load_id(id).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            count_unknown_session();
            return denied("no live session");
        }
        Err(error) => return ApiError::from(error).into_response(),
    };
    match state.sessions.commit(&mut session).await {
        Ok(Commit::Ended) => return denied("no live session"),
        Ok(commit) => count_commit(commit),
        Err(error) => return ApiError::from(error).into_response(),
    }
    let Some(subject) = session.subject() else {
        return denied("the session is not logged in");
    };
    let Ok(subject) = HeaderValue::from_bytes(subject.as_bytes()) else {
        return denied("the subject cannot be sent in a header");
    };
    let handle = session
        .key()
        .map(|key| key.handle())
        .and_then(|handle| HeaderValue::from_str(&handle).ok());
    let mut response = StatusCode::OK.into_response();
    let out = response.headers_mut();
    out.insert(SUBJECT_HEADER, subject);
    if let Some(handle) = handle {
        out.insert(SESSION_HEADER, handle);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn denied(reason: &'static str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", reason).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The token from `Authorization: Bearer`, else from the session cookie. Two cookies with the
/// session's name are refused, never "first wins".
fn token<'h>(headers: &'h HeaderMap, cookie_name: &str) -> Result<Option<&'h str>, &'static str> {
    if let Some(token) = crate::api::bearer(headers) {
        return Ok(Some(token));
    }
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else {
            continue;
        };
        for pair in text.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if name.trim() == cookie_name {
                if found.is_some() {
                    return Err("two session cookies");
                }
                found = Some(value.trim().trim_matches('"'));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn token_sources() {
        let h = headers(&[("cookie", "a=1; __Host-session=tok; b=2")]);
        assert_eq!(token(&h, "__Host-session"), Ok(Some("tok")));
        assert_eq!(token(&h, "session"), Ok(None));
        let h = headers(&[
            ("authorization", "Bearer abc"),
            ("cookie", "__Host-session=tok"),
        ]);
        assert_eq!(token(&h, "__Host-session"), Ok(Some("abc")));
        let h = headers(&[("cookie", "session=a"), ("cookie", "session=b")]);
        assert!(token(&h, "session").is_err());
        let h = headers(&[("cookie", "session=a; session=b")]);
        assert!(token(&h, "session").is_err());
    }
}
