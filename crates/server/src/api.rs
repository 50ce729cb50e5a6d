//! The JSON API under `/v1` (every call needs `Authorization: Bearer <api key>`). The session
//! acted on is named by the `Session-Token` header, never by the URL.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tessera_core::{ClientInfo, Commit, Error, Key, Session, SessionId, Sessions};

use crate::error::ApiError;
use crate::metrics::{count_commit, count_revoked, count_unknown_session};
use crate::state::AppState;
use crate::view::View;

/// The largest request body accepted, in bytes (documented in the API reference).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest subject accepted.
pub(crate) const MAX_SUBJECT_LEN: usize = 256;
/// The header that names the session a call acts on.
pub(crate) const SESSION_TOKEN: &str = "session-token";

/// Middleware: refuses calls without the right `Authorization: Bearer <api key>`.
pub(crate) async fn require_api_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = bearer(request.headers());
    match presented {
        Some(key) if crate::keys::matches(key, &state.api_key) => next.run(request).await,
        _ => ApiError::unauthorized().into_response(),
    }
}

/// The credentials of `Authorization: Bearer <credentials>`.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// Reads a JSON body: 415 for another content type, 413 over [`MAX_BODY_BYTES`], 400 for bad
/// JSON. An empty body is `None` (for calls whose body is optional).
async fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<Option<T>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())?;
    if bytes.is_empty() {
        return Ok(None);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !(mime == "application/json"
        || (mime.starts_with("application/") && mime.ends_with("+json")))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| ApiError::bad_request(format!("malformed JSON body: {error}")))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is over the {MAX_BODY_BYTES}-byte limit"),
    )
}

/// Checks a subject: 1 to 256 characters, no control characters.
pub(crate) fn check_subject(subject: &str) -> Result<(), ApiError> {
    if subject.is_empty() || subject.chars().count() > MAX_SUBJECT_LEN {
        return Err(ApiError::bad_request(format!(
            "the subject must be 1 to {MAX_SUBJECT_LEN} characters"
        )));
    }
    if subject.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "the subject must not contain control characters",
        ));
    }
    Ok(())
}

/// Loads the session named by the `Session-Token` header: 400 when missing or malformed, 404
/// when unknown, expired or revoked, 503 when the store fails.
async fn load(sessions: &Sessions, headers: &HeaderMap) -> Result<Session, ApiError> {
    let token = headers
        .get(SESSION_TOKEN)
        .ok_or_else(|| ApiError::bad_request("the Session-Token header is missing"))?
        .to_str()
        .map_err(|_| ApiError::bad_request("malformed session token"))?;
    let id = SessionId::parse(token.trim())
        .ok_or_else(|| ApiError::bad_request("malformed session token"))?;
    match sessions.load_id(id).await? {
        Some(session) => Ok(session),
        None => {
            count_unknown_session();
            Err(ApiError::session_not_found())
        }
    }
}

/// Commits and counts; a session that ended meanwhile is a 404.
async fn commit(sessions: &Sessions, session: &mut Session) -> Result<Commit, ApiError> {
    let commit = sessions.commit(session).await?;
    count_commit(commit);
    if commit == Commit::Ended {
        return Err(ApiError::session_not_found());
    }
    Ok(commit)
}

fn token_and_view(session: &Session) -> Result<Json<Value>, ApiError> {
    let token = session
        .issued_token()
        .ok_or_else(|| ApiError::from(Error::SessionEnded))?;
    Ok(Json(
        json!({ "token": token, "session": View::full(session.record()) }),
    ))
}

/// `POST /v1/sessions` body.
#[derive(Debug, Default, Deserialize)]
struct CreateBody {
    subject: Option<String>,
    data: Option<Map<String, Value>>,
    client: Option<ClientBody>,
}

#[derive(Debug, Default, Deserialize)]
struct ClientBody {
    ip: Option<String>,
    user_agent: Option<String>,
}

/// `POST /v1/sessions` → 201 `{"token", "session"}`.
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body: CreateBody = json_body(&headers, body).await?.unwrap_or_default();
    let client = body.client.unwrap_or_default();
    if client.ip.as_ref().is_some_and(|ip| ip.len() > 64)
        || client.user_agent.as_ref().is_some_and(|ua| ua.len() > 512)
    {
        return Err(ApiError::bad_request(
            "client.ip is limited to 64 bytes and client.user_agent to 512",
        ));
    }
    let mut session = state.sessions.start_with_client(ClientInfo {
        ip: client.ip.map(Into::into),
        user_agent: client.user_agent.map(Into::into),
    });
    for (key, value) in body.data.unwrap_or_default() {
        session
            .insert(&key, &value)
            .map_err(|_| ApiError::bad_request("data values must be JSON"))?;
    }
    match body.subject {
        Some(subject) => {
            check_subject(&subject)?;
            session.login(subject);
        }
        // A session with nothing in it yet is still stored: the caller asked for one.
        None => session.rotate(),
    }
    commit(&state.sessions, &mut session).await?;
    let body = token_and_view(&session)?;
    Ok((StatusCode::CREATED, body).into_response())
}

/// `GET /v1/session` → 200 View (counts as activity).
pub(crate) async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<View>, ApiError> {
    let mut session = load(&state.sessions, &headers).await?;
    commit(&state.sessions, &mut session).await?;
    Ok(Json(View::full(session.record())))
}

/// `PATCH /v1/session`: a JSON merge patch (RFC 7396) of `data`, with optional
/// `If-Match: "<version>"` → 200 View, or 412 when the version moved.
pub(crate) async fn patch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<View>, ApiError> {
    let if_match = match headers.get(header::IF_MATCH) {
        None => None,
        Some(value) => Some(parse_if_match(value.to_str().unwrap_or(""))?),
    };
    let patch: Value = json_body(&headers, body)
        .await?
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON merge patch object"))?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object (a merge patch of data)",
        ));
    };
    let sessions = if if_match.is_some() {
        &state.strict
    } else {
        &state.sessions
    };
    let mut session = load(sessions, &headers).await?;
    if let Some(expected) = if_match {
        if session.record().version != expected {
            return Err(version_moved());
        }
    }
    for (key, value) in patch {
        if value.is_null() {
            session.remove(&key);
        } else {
            session
                .update(&key, move |current: Option<Value>| {
                    Some(merge(current, &value))
                })
                .map_err(|_| ApiError::bad_request("data could not be patched"))?;
        }
    }
    match commit(sessions, &mut session).await {
        Err(error) if if_match.is_some() && error.code == "conflict" => Err(version_moved()),
        other => other.map(|_| Json(View::full(session.record()))),
    }
}

fn version_moved() -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "version_mismatch",
        "the session changed since that version; reload and try again",
    )
}

/// `If-Match: "<version>"` (quotes optional).
fn parse_if_match(value: &str) -> Result<u64, ApiError> {
    let trimmed = value.trim();
    let inner = trimmed
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(trimmed);
    inner
        .parse()
        .map_err(|_| ApiError::bad_request("If-Match must be a session version, e.g. \"3\""))
}

/// RFC 7396 merge of `patch` into `target`.
fn merge(target: Option<Value>, patch: &Value) -> Value {
    match patch {
        Value::Object(entries) => {
            let mut object = match target {
                Some(Value::Object(object)) => object,
                _ => Map::new(),
            };
            for (key, value) in entries {
                if value.is_null() {
                    object.remove(key);
                } else {
                    let current = object.remove(key);
                    object.insert(key.clone(), merge(current, value));
                }
            }
            Value::Object(object)
        }
        other => other.clone(),
    }
}

/// `POST /v1/session/login` body.
#[derive(Debug, Deserialize)]
struct LoginBody {
    subject: String,
}

/// `POST /v1/session/login` → 200 `{"token", "session"}`; the old token is dead at once.
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body: LoginBody = json_body(&headers, body)
        .await?
        .ok_or_else(|| ApiError::bad_request("the body must be {\"subject\": \"…\"}"))?;
    check_subject(&body.subject)?;
    let mut session = load(&state.sessions, &headers).await?;
    session.login(body.subject);
    commit(&state.sessions, &mut session).await?;
    token_and_view(&session)
}

/// `POST /v1/session/rotate` → 200 `{"token", "session"}` with a new token, same subject.
pub(crate) async fn rotate(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let mut session = load(&state.sessions, &headers).await?;
    session.rotate();
    commit(&state.sessions, &mut session).await?;
    token_and_view(&session)
}

/// `DELETE /v1/session` → 204.
pub(crate) async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let mut session = load(&state.sessions, &headers).await?;
    session.logout();
    commit(&state.sessions, &mut session).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn path_error(rejection: &PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path: {rejection}"))
}

/// `GET /v1/subjects/{subject}/sessions` → 200 `{"sessions": [View without data]}`.
pub(crate) async fn list_subject(
    State(state): State<AppState>,
    subject: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(subject) = subject.map_err(|r| path_error(&r))?;
    check_subject(&subject)?;
    let records = state.sessions.list_subject(&subject).await?;
    let views: Vec<View> = records.iter().map(View::without_data).collect();
    Ok(Json(json!({ "sessions": views })))
}

/// `DELETE /v1/subjects/{subject}/sessions[?except=<handle>]` → 200 `{"revoked": n}`.
pub(crate) async fn revoke_subject(
    State(state): State<AppState>,
    subject: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(subject) = subject.map_err(|r| path_error(&r))?;
    check_subject(&subject)?;
    let Query(query) = query.map_err(|r| ApiError::bad_request(format!("bad query: {r}")))?;
    let except = match query.get("except") {
        None => None,
        Some(handle) => Some(parse_handle(handle)?),
    };
    let n = state
        .sessions
        .revoke_subject(&subject, except.as_ref())
        .await?;
    count_revoked(n);
    Ok(Json(json!({ "revoked": n })))
}

/// `DELETE /v1/sessions/{handle}` → 204, or 404 when no live session has this handle.
pub(crate) async fn revoke_handle(
    State(state): State<AppState>,
    handle: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(handle) = handle.map_err(|r| path_error(&r))?;
    let key = parse_handle(&handle)?;
    if state.sessions.record(&key).await?.is_none() {
        return Err(ApiError::session_not_found());
    }
    state.sessions.revoke(&key).await?;
    count_revoked(1);
    Ok(StatusCode::NO_CONTENT)
}

fn parse_handle(handle: &str) -> Result<Key, ApiError> {
    Key::from_handle(handle).ok_or_else(|| ApiError::bad_request("malformed session handle"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_follows_rfc_7396() {
        // The examples of RFC 7396, appendix A (a selection).
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(
                merge(Some(target.clone()), &patch),
                expected,
                "{target} + {patch}"
            );
        }
    }

    #[test]
    fn if_match_accepts_quoted_versions() {
        assert_eq!(parse_if_match("\"3\"").unwrap(), 3);
        assert_eq!(parse_if_match("7").unwrap(), 7);
        assert!(parse_if_match("\"x\"").is_err());
        assert!(parse_if_match("*").is_err());
    }

    #[test]
    fn subjects_are_checked() {
        assert!(check_subject("alice").is_ok());
        assert!(check_subject("").is_err());
        assert!(check_subject("a\nb").is_err());
        assert!(check_subject(&"x".repeat(257)).is_err());
    }
}
