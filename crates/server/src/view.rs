//! The JSON view of a session (`View` in the API reference).

use serde::Serialize;
use serde_json::{Map, Value};
use tessera_core::{Record, Timestamp};

/// A session as the API shows it. `handle` is the store key in base64url: a non-secret name
/// for lists and revocation that cannot be used as a token.
#[derive(Debug, Serialize)]
pub(crate) struct View {
    pub(crate) handle: String,
    pub(crate) subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<Map<String, Value>>,
    pub(crate) created_at: String,
    pub(crate) last_seen_at: String,
    pub(crate) expires_at: String,
    pub(crate) absolute_expires_at: String,
    pub(crate) authenticated_at: Option<String>,
    pub(crate) version: u64,
    pub(crate) client: ClientView,
}

/// Where the session's client came from.
#[derive(Debug, Serialize)]
pub(crate) struct ClientView {
    pub(crate) ip: Option<String>,
    pub(crate) user_agent: Option<String>,
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-29T22:18:51.123Z`.
pub(crate) fn rfc3339(at: Timestamp) -> String {
    humantime::format_rfc3339_millis(at.to_system_time()).to_string()
}

impl View {
    /// The full view, with `data`.
    pub(crate) fn full(record: &Record) -> Self {
        let mut view = Self::without_data(record);
        view.data = Some(record.data.to_json_object());
        view
    }

    /// The view for lists: everything but `data`.
    pub(crate) fn without_data(record: &Record) -> Self {
        Self {
            handle: record.key.handle(),
            subject: record.subject.as_deref().map(str::to_owned),
            data: None,
            created_at: rfc3339(record.created_at),
            last_seen_at: rfc3339(record.last_seen_at),
            expires_at: rfc3339(record.deadline()),
            absolute_expires_at: rfc3339(record.absolute_deadline),
            authenticated_at: record.authenticated_at.map(rfc3339),
            version: record.version,
            client: ClientView {
                ip: record.client.ip.as_deref().map(str::to_owned),
                user_agent: record.client.user_agent.as_deref().map(str::to_owned),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(
            rfc3339(Timestamp::from_millis(0)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_millis(1_764_454_731_123)),
            "2025-11-29T22:18:51.123Z"
        );
    }
}
