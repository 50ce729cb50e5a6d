//! The server-side session record, its data map and its storage encoding.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::id::Key;
use crate::time::Timestamp;

/// Everything the server keeps about one session. Stores keep these keyed by [`Record::key`].
///
/// Cheap to clone: the data map and the strings are reference-counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The SHA-256 of the session ID.
    pub key: Key,
    /// Who is logged in, if anyone.
    pub subject: Option<Arc<str>>,
    /// The application's data.
    pub data: Data,
    /// When the session was created (for a logged-in session: when its current ID was issued
    /// at login).
    pub created_at: Timestamp,
    /// When the subject last logged in on this session.
    pub authenticated_at: Option<Timestamp>,
    /// The last activity the server wrote down (moves at most once per touch interval).
    pub last_seen_at: Timestamp,
    /// The record is dead from this time on unless activity moves it: `last_seen_at + idle
    /// timeout`, never past `absolute_deadline`.
    pub idle_deadline: Timestamp,
    /// The record is dead from this time on, whatever the activity.
    pub absolute_deadline: Timestamp,
    /// Counts committed updates; the compare-and-swap token of [`Store::update`](crate::Store::update).
    pub version: u64,
    /// The per-session secret from which CSRF tokens are derived; replaced at every login.
    pub csrf_secret: [u8; 32],
    /// Where the session was created from, for device lists.
    pub client: ClientInfo,
}

impl Record {
    /// The earlier of the two deadlines: the record is dead at and after this time.
    pub fn deadline(&self) -> Timestamp {
        self.idle_deadline.min(self.absolute_deadline)
    }

    /// Whether the record is still alive at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.deadline()
    }

    /// Encodes the record for a store: one format byte ([`FORMAT_V1`]) and then the fields in
    /// [postcard](https://postcard.jamesmunns.com/wire-format) encoding, data values as JSON
    /// text. Bytes 1..33 are always the key, so a store can read the key of an encoded record
    /// without decoding it. Stores may keep some fields in columns of their own as well
    /// (deadlines, version, subject) for their queries.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// [`Record::encode`], appending to `out` (so a caller can reuse one buffer).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let wire = WireRef {
            key: self.key.as_bytes(),
            subject: self.subject.as_deref(),
            data: &self.data.0,
            created_at: self.created_at.as_millis(),
            authenticated_at: self.authenticated_at.map(Timestamp::as_millis),
            last_seen_at: self.last_seen_at.as_millis(),
            idle_deadline: self.idle_deadline.as_millis(),
            absolute_deadline: self.absolute_deadline.as_millis(),
            version: self.version,
            csrf_secret: &self.csrf_secret,
            ip: self.client.ip.as_deref(),
            user_agent: self.client.user_agent.as_deref(),
        };
        // Room for the fixed part (format, key, secret, times: under 140 bytes), the optional
        // strings and the data, so the buffer grows at most once.
        let strings = [&self.subject, &self.client.ip, &self.client.user_agent]
            .iter()
            .filter_map(|s| s.as_deref().map(|s| s.len() + 2))
            .sum::<usize>();
        out.reserve(140 + strings + self.data.encoded_len_hint());
        out.push(FORMAT_V1);
        // Serializing plain data into a Vec cannot fail.
        *out = postcard::to_extend(&wire, std::mem::take(out))
            .expect("encoding a record into memory cannot fail");
    }

    /// Decodes what [`Record::encode`] produced.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for an unknown format byte, truncated or trailing bytes, or values that
    /// are not the JSON they must be. Stores treat such a record as absent ("no session") and log
    /// it; they never panic on it.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (&format, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if format != FORMAT_V1 {
            return Err(DecodeError::UnknownFormat(format));
        }
        // The two 32-byte arrays are raw bytes in postcard's encoding (a fixed-size array has no
        // length prefix): copied directly here rather than decoded byte by byte through serde,
        // which cost more than the rest of the record together. The bytes are those `encode`
        // writes with `WireRef` in one piece.
        let (key, rest) = take_array(rest)?;
        let (middle, rest): (WireMiddle<'_>, &[u8]) =
            postcard::take_from_bytes(rest).map_err(DecodeError::Malformed)?;
        let (csrf_secret, rest) = take_array(rest)?;
        let (tail, trailing): (WireTail<'_>, &[u8]) =
            postcard::take_from_bytes(rest).map_err(DecodeError::Malformed)?;
        if !trailing.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        let data = Data::from_entries(middle.data)?;
        Ok(Self {
            key: Key::from_bytes(key),
            subject: middle.subject.map(Arc::from),
            data,
            created_at: Timestamp::from_millis(middle.created_at),
            authenticated_at: middle.authenticated_at.map(Timestamp::from_millis),
            last_seen_at: Timestamp::from_millis(middle.last_seen_at),
            idle_deadline: Timestamp::from_millis(middle.idle_deadline),
            absolute_deadline: Timestamp::from_millis(middle.absolute_deadline),
            version: middle.version,
            csrf_secret,
            client: ClientInfo {
                ip: tail.ip.map(Arc::from),
                user_agent: tail.user_agent.map(Arc::from),
            },
        })
    }
}

/// The subject of an encoded record, read without decoding the rest (it follows the key);
/// `None` for no subject or a damaged encoding.
pub(crate) fn encoded_subject(bytes: &[u8]) -> Option<&str> {
    let rest = bytes
        .get(33..)
        .filter(|_| bytes.first() == Some(&FORMAT_V1))?;
    postcard::take_from_bytes::<Option<&str>>(rest).ok()?.0
}

/// The first 32 bytes of `bytes` and the rest.
fn take_array(bytes: &[u8]) -> Result<([u8; 32], &[u8]), DecodeError> {
    let (array, rest) = bytes
        .split_first_chunk::<32>()
        .ok_or(DecodeError::Malformed(
            postcard::Error::DeserializeUnexpectedEnd,
        ))?;
    Ok((*array, rest))
}

/// The format byte that starts every encoded record.
pub const FORMAT_V1: u8 = 1;

#[derive(Serialize)]
struct WireRef<'a> {
    key: &'a [u8; 32],
    subject: Option<&'a str>,
    data: &'a [(Box<str>, Box<str>)],
    created_at: u64,
    authenticated_at: Option<u64>,
    last_seen_at: u64,
    idle_deadline: u64,
    absolute_deadline: u64,
    version: u64,
    csrf_secret: &'a [u8; 32],
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
}

/// The fields of [`WireRef`] between the key and the CSRF secret, decoded (strings borrowed
/// from the input where they are copied into an `Arc` anyway).
#[derive(Deserialize)]
struct WireMiddle<'a> {
    #[serde(borrow)]
    subject: Option<&'a str>,
    data: Vec<(Box<str>, Box<str>)>,
    created_at: u64,
    authenticated_at: Option<u64>,
    last_seen_at: u64,
    idle_deadline: u64,
    absolute_deadline: u64,
    version: u64,
}

/// The fields of [`WireRef`] after the CSRF secret.
#[derive(Deserialize)]
struct WireTail<'a> {
    #[serde(borrow)]
    ip: Option<&'a str>,
    #[serde(borrow)]
    user_agent: Option<&'a str>,
}

/// Where a session came from, shown in device lists. Both fields are as the app reported them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's IP address.
    pub ip: Option<Arc<str>>,
    /// The client's `User-Agent`.
    pub user_agent: Option<Arc<str>>,
}

/// A session's data: string keys mapped to values kept as JSON text.
///
/// Values are serialized once, when they are set, and parsed only when read. The map is
/// shared copy-on-write, so cloning a [`Record`] does not copy it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Data(Arc<Vec<(Box<str>, Box<str>)>>);

impl Data {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    fn from_entries(mut entries: Vec<(Box<str>, Box<str>)>) -> Result<Self, DecodeError> {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(DecodeError::DuplicateDataKey);
        }
        for (_, value) in &entries {
            serde_json::from_str::<serde::de::IgnoredAny>(value).map_err(DecodeError::Value)?;
        }
        Ok(Self(Arc::new(entries)))
    }

    /// Builds a map from a JSON object.
    pub fn from_json_object(object: serde_json::Map<String, serde_json::Value>) -> Self {
        let entries = object
            .into_iter()
            .map(|(k, v)| (k.into_boxed_str(), v.to_string().into_boxed_str()))
            .collect();
        // serde_json::Map iterates in key order (BTreeMap) or insertion order (preserve_order);
        // from_entries sorts either way, and values are valid JSON by construction.
        Self::from_entries(entries).expect("a JSON object has unique keys and valid values")
    }

    /// The map as a JSON object.
    pub fn to_json_object(&self) -> serde_json::Map<String, serde_json::Value> {
        self.iter()
            .map(|(k, v)| {
                let value = serde_json::from_str(v).unwrap_or(serde_json::Value::Null);
                (k.to_owned(), value)
            })
            .collect()
    }

    /// The JSON text stored under `key`.
    pub fn get_raw(&self, key: &str) -> Option<&str> {
        self.position(key).ok().map(|i| &*self.0[i].1)
    }

    /// Stores JSON text under `key`. The caller guarantees `json` is valid JSON.
    pub(crate) fn set_raw(&mut self, key: &str, json: Box<str>) {
        let entries = Arc::make_mut(&mut self.0);
        match entries.binary_search_by(|(k, _)| (**k).cmp(key)) {
            Ok(i) => entries[i].1 = json,
            Err(i) => entries.insert(i, (key.into(), json)),
        }
    }

    /// Sets `key` to a JSON value.
    pub fn set_json(&mut self, key: &str, value: &serde_json::Value) {
        self.set_raw(key, value.to_string().into_boxed_str());
    }

    /// Removes `key`; true if it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        match self.position(key) {
            Ok(i) => {
                Arc::make_mut(&mut self.0).remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        if !self.0.is_empty() {
            self.0 = Arc::default();
        }
    }

    /// The entries in key order, values as JSON text.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key))
    }

    fn encoded_len_hint(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len() + 4).sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `sample(Key::from_bytes([42; 32])).encode()`: format byte, key, subject, data, the six
    /// times and version, the CSRF secret, IP, user agent.
    const FROZEN_V1: &str = concat!(
        "01",
        "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a",
        "0105616c696365",
        "020463617274105b226170706c65222c2270656172225d016e0133",
        "010102030405060707070707070707070707070707070707070707070707070707070707070707",
        "01093132372e302e302e310108746573742f312e30",
    );

    pub(crate) fn sample(key: Key) -> Record {
        let mut data = Data::new();
        data.set_json("cart", &serde_json::json!(["apple", "pear"]));
        data.set_json("n", &serde_json::json!(3));
        Record {
            key,
            subject: Some("alice".into()),
            data,
            created_at: Timestamp::from_millis(1),
            authenticated_at: Some(Timestamp::from_millis(2)),
            last_seen_at: Timestamp::from_millis(3),
            idle_deadline: Timestamp::from_millis(4),
            absolute_deadline: Timestamp::from_millis(5),
            version: 6,
            csrf_secret: [7; 32],
            client: ClientInfo {
                ip: Some("127.0.0.1".into()),
                user_agent: Some("test/1.0".into()),
            },
        }
    }

    #[test]
    fn encoding_round_trips() {
        let record = sample(crate::SessionId::generate().key());
        let bytes = record.encode();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(&bytes[1..33], record.key.as_bytes());
        assert_eq!(Record::decode(&bytes).unwrap(), record);
    }

    /// Records written by earlier builds stay readable: a format-1 encoding frozen as bytes.
    #[test]
    fn a_frozen_format_1_record_decodes() {
        let record = sample(Key::from_bytes([42; 32]));
        let hex: String = record.encode().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, FROZEN_V1);
        let bytes: Vec<u8> = (0..FROZEN_V1.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&FROZEN_V1[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(Record::decode(&bytes).unwrap(), record);
    }

    #[test]
    fn the_subject_reads_without_a_decode() {
        let mut record = sample(Key::from_bytes([1; 32]));
        assert_eq!(encoded_subject(&record.encode()), Some("alice"));
        record.subject = None;
        assert_eq!(encoded_subject(&record.encode()), None);
        assert_eq!(encoded_subject(&[FORMAT_V1, 1, 2]), None);
        assert_eq!(encoded_subject(&[]), None);
    }

    #[test]
    fn damaged_encodings_are_errors_not_panics() {
        let bytes = sample(crate::SessionId::generate().key()).encode();
        assert!(matches!(Record::decode(&[]), Err(DecodeError::Empty)));
        assert!(matches!(
            Record::decode(&[9, 1, 2]),
            Err(DecodeError::UnknownFormat(9))
        ));
        for cut in 1..bytes.len() {
            assert!(Record::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            Record::decode(&longer),
            Err(DecodeError::TrailingBytes)
        ));
    }

    #[test]
    fn data_is_copy_on_write() {
        let mut a = Data::new();
        a.set_json("x", &serde_json::json!(1));
        let mut b = a.clone();
        b.set_json("x", &serde_json::json!(2));
        assert_eq!(a.get_raw("x"), Some("1"));
        assert_eq!(b.get_raw("x"), Some("2"));
        assert!(b.remove("x"));
        assert!(!b.remove("x"));
        assert_eq!(a.len(), 1);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Record::decode(&bytes);
        }

        #[test]
        fn arbitrary_data_round_trips(entries in proptest::collection::btree_map("[a-z]{1,8}", any::<i64>(), 0..8)) {
            let mut record = sample(crate::SessionId::generate().key());
            record.data = Data::new();
            for (k, v) in &entries {
                record.data.set_json(k, &serde_json::json!(v));
            }
            prop_assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        }
    }
}
