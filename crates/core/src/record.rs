//! The server-side session record, its data map and its storage encoding.

mod codec;

use std::sync::Arc;

use crate::error::DecodeError;
use crate::id::Key;
use crate::time::Timestamp;
pub use codec::FORMAT_V1;
pub(crate) use codec::encoded_subject;
use codec::{Reader, Trust};

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
        codec::encode_into(self, out);
    }

    /// About as many bytes as [`Record::encode`] makes, rounded up for every record short of
    /// values over 16 KiB: for a store that sizes a buffer before encoding into it, so that the
    /// buffer is allocated once.
    pub fn encoded_len_hint(&self) -> usize {
        codec::len_hint(self)
    }

    /// Decodes what [`Record::encode`] produced.
    ///
    /// The data map stays in its encoded form (one allocation) until it is changed, and
    /// values are looked up in place: a request that only reads its session pays for no
    /// string it does not read.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for an unknown format byte, truncated or trailing bytes, or values that
    /// are not the JSON they must be. Stores treat such a record as absent ("no session") and log
    /// it; they never panic on it.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, Trust::Checked, None)
    }

    /// [`Record::decode`] for bytes this process encoded itself (the memory store's): the data
    /// values were JSON when they were set, so they are not parsed again.
    #[cfg(test)]
    pub(crate) fn decode_own(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, Trust::Own, None)
    }

    /// [`Record::decode_own`] for a store that keeps the fields activity changes beside the
    /// encoding, newer than the encoded ones: those are skipped, not decoded, and the record
    /// gets `activity` instead.
    pub(crate) fn decode_own_with(bytes: &[u8], activity: Activity) -> Result<Self, DecodeError> {
        codec::decode(bytes, Trust::Own, Some(activity))
    }
}

/// The fields of a [`Record`] that change without a rewrite of the rest (a touch moves the first
/// two, an update all four), for stores that keep them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Activity {
    pub(crate) last_seen_at: Timestamp,
    pub(crate) idle_deadline: Timestamp,
    pub(crate) absolute_deadline: Timestamp,
    pub(crate) version: u64,
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
/// shared copy-on-write, so cloning a [`Record`] does not copy it. A map read from a store stays
/// in its encoded form until it is changed (reads find their value in place), so loading a
/// session costs at most one allocation for its data, not one per string, and none for a map of
/// a few small values, which is kept inline.
#[derive(Clone)]
pub struct Data(Repr);

#[derive(Clone)]
enum Repr {
    /// Sorted by key, keys unique.
    Entries(Arc<Vec<(Box<str>, Box<str>)>>),
    /// The map as format 1 encodes it (a count, then each key and its value as length-prefixed
    /// UTF-8), checked when decoded: keys ascending and unique, at most [`LAZY_MAX`] entries.
    Encoded(Arc<[u8]>),
    /// [`Repr::Encoded`] for an encoding of at most [`INLINE_MAX`] bytes, held without an
    /// allocation.
    Inline(Inline),
}

/// The longest map encoding kept inline: as long as it can be without making [`Data`] larger
/// than a tag and an `Arc<[u8]>`.
const INLINE_MAX: usize = 22;

#[derive(Clone, Copy)]
struct Inline {
    len: u8,
    bytes: [u8; INLINE_MAX],
}

/// What a [`Repr`] holds, with the two encoded forms seen as one.
enum View<'a> {
    Entries(&'a Arc<Vec<(Box<str>, Box<str>)>>),
    Encoded(&'a [u8]),
}

impl Repr {
    fn view(&self) -> View<'_> {
        match self {
            Self::Entries(entries) => View::Entries(entries),
            Self::Encoded(bytes) => View::Encoded(bytes),
            Self::Inline(inline) => View::Encoded(&inline.bytes[..usize::from(inline.len)]),
        }
    }

    /// A checked map encoding, inline if it is short enough.
    fn encoded(section: &[u8]) -> Self {
        if section.len() <= INLINE_MAX {
            let mut bytes = [0; INLINE_MAX];
            bytes[..section.len()].copy_from_slice(section);
            #[allow(clippy::cast_possible_truncation)] // at most INLINE_MAX
            let len = section.len() as u8;
            Self::Inline(Inline { len, bytes })
        } else {
            Self::Encoded(Arc::from(section))
        }
    }
}

/// An inline map being written: entries in key order after a count byte that is filled in last.
struct InlineWriter {
    bytes: [u8; INLINE_MAX],
    at: usize,
    count: u8,
}

impl InlineWriter {
    /// Appends one entry; `None` if it does not fit.
    fn entry(&mut self, key: &str, json: &str) -> Option<()> {
        self.string(key)?;
        self.string(json)?;
        self.count += 1;
        Some(())
    }

    /// A string with its length; every length that fits inline is one varint byte.
    fn string(&mut self, s: &str) -> Option<()> {
        let len = u8::try_from(s.len()).ok().filter(|&len| len < 0x80)?;
        let end = self.at + 1 + s.len();
        let slot = self.bytes.get_mut(self.at..end)?;
        slot[0] = len;
        slot[1..].copy_from_slice(s.as_bytes());
        self.at = end;
        Some(())
    }
}

/// Larger maps are decoded into entries at once, so that a lookup never scans more than this.
const LAZY_MAX: usize = 16;

impl Default for Data {
    /// The empty map, inline (its encoding is one byte, a count of zero): no allocation.
    fn default() -> Self {
        Self(Repr::Inline(Inline {
            len: 1,
            bytes: [0; INLINE_MAX],
        }))
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Data {}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

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
        Ok(Self(Repr::Entries(Arc::new(entries))))
    }

    /// Reads the map's encoding from `r`, checking its shape (and, unless `trust` says the bytes
    /// are this process's own, that every string is UTF-8 and every value JSON).
    fn decode(r: &mut Reader<'_>, trust: Trust) -> Result<Self, DecodeError> {
        let start = *r;
        let count = r.len().map_err(DecodeError::Malformed)?;
        let mut sorted = true;
        let mut previous: Option<&[u8]> = None;
        // Bounded by the input: every entry consumes at least two bytes or fails.
        for _ in 0..count {
            let key = r.raw_str().map_err(DecodeError::Malformed)?;
            let value = r.raw_str().map_err(DecodeError::Malformed)?;
            if trust == Trust::Checked {
                let (Ok(_), Ok(value)) = (std::str::from_utf8(key), std::str::from_utf8(value))
                else {
                    return Err(DecodeError::Malformed(postcard::Error::DeserializeBadUtf8));
                };
                serde_json::from_str::<serde::de::IgnoredAny>(value).map_err(DecodeError::Value)?;
            }
            match previous.map(|p| p.cmp(key)) {
                Some(std::cmp::Ordering::Equal) => return Err(DecodeError::DuplicateDataKey),
                Some(std::cmp::Ordering::Greater) => sorted = false,
                _ => {}
            }
            previous = Some(key);
        }
        let section = &start.0[..start.0.len() - r.0.len()];
        if sorted && count <= LAZY_MAX {
            return Ok(Self(Repr::encoded(section)));
        }
        // Not in key order (no encoder of ours writes that, but the format allows it) or
        // large: decoded into entries.
        let entries = EncodedIter::new(section)
            .map(|(k, v)| (Box::from(k), Box::from(v)))
            .collect();
        Self::from_entries(entries)
    }

    /// Builds a map from a JSON object.
    pub fn from_json_object(object: serde_json::Map<String, serde_json::Value>) -> Self {
        let entries = object
            .into_iter()
            .map(|(k, v)| (k.into_boxed_str(), v.to_string().into_boxed_str()))
            .collect();
        // serde_json::Map iterates in key order (BTreeMap) or insertion order (preserve_order);
        // from_entries sorts either way, and values are valid JSON by construction.
        Self::from_entries(entries).expect("a JSON object has unique keys")
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
        match self.0.view() {
            View::Entries(entries) => position(entries, key).ok().map(|i| &*entries[i].1),
            View::Encoded(bytes) => {
                let mut r = Reader(bytes);
                let count = r.len().ok()?;
                for _ in 0..count {
                    let (k, v) = (r.raw_str().ok()?, r.raw_str().ok()?);
                    match k.cmp(key.as_bytes()) {
                        std::cmp::Ordering::Less => {}
                        std::cmp::Ordering::Equal => return std::str::from_utf8(v).ok(),
                        std::cmp::Ordering::Greater => return None,
                    }
                }
                None
            }
        }
    }

    /// The entries, decoded (once) and unshared, for a change.
    fn entries_mut(&mut self) -> &mut Vec<(Box<str>, Box<str>)> {
        if let View::Encoded(bytes) = self.0.view() {
            let entries = EncodedIter::new(bytes)
                .map(|(k, v)| (Box::from(k), Box::from(v)))
                .collect();
            self.0 = Repr::Entries(Arc::new(entries));
        }
        match &mut self.0 {
            Repr::Entries(entries) => Arc::make_mut(entries),
            Repr::Encoded(_) | Repr::Inline(_) => unreachable!("decoded above"),
        }
    }

    /// An inline map with `key` set to `json`, if the result still fits inline: a small map (a
    /// counter, a user ID) changes without an allocation. `None` for a map held otherwise or
    /// a result too long.
    fn set_inline(&self, key: &str, json: &str) -> Option<Inline> {
        let Repr::Inline(inline) = &self.0 else {
            return None;
        };
        let mut out = InlineWriter {
            bytes: [0; INLINE_MAX],
            at: 1,
            count: 0,
        };
        let mut pending = Some((key, json));
        for (k, v) in EncodedIter::new(&inline.bytes[..usize::from(inline.len)]) {
            if let Some((key, json)) = pending.filter(|&(key, _)| key <= k) {
                out.entry(key, json)?;
                pending = None;
                if key == k {
                    continue; // replaced
                }
            }
            out.entry(k, v)?;
        }
        if let Some((key, json)) = pending {
            out.entry(key, json)?;
        }
        // At most INLINE_MAX / 3 entries: the count is one varint byte too.
        out.bytes[0] = out.count;
        #[allow(clippy::cast_possible_truncation)] // at most INLINE_MAX
        let len = out.at as u8;
        Some(Inline {
            len,
            bytes: out.bytes,
        })
    }

    /// Stores JSON text under `key`. The caller guarantees `json` is valid JSON.
    pub(crate) fn set_raw(&mut self, key: &str, json: Box<str>) {
        if let Some(inline) = self.set_inline(key, &json) {
            self.0 = Repr::Inline(inline);
            return;
        }
        let entries = self.entries_mut();
        match position(entries, key) {
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
        if self.get_raw(key).is_none() {
            return false;
        }
        let entries = self.entries_mut();
        match position(entries, key) {
            Ok(i) => {
                entries.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        if !self.is_empty() {
            *self = Self::default();
        }
    }

    /// The entries in key order, values as JSON text.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        match self.0.view() {
            View::Entries(entries) => Iter::Entries(entries.iter()),
            View::Encoded(bytes) => Iter::Encoded(EncodedIter::new(bytes)),
        }
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        match self.0.view() {
            View::Entries(entries) => entries.len(),
            View::Encoded(bytes) => Reader(bytes).len().unwrap_or(0),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn encoded_len_hint(&self) -> usize {
        match self.0.view() {
            View::Entries(entries) => entries.iter().map(|(k, v)| k.len() + v.len() + 4).sum(),
            View::Encoded(bytes) => bytes.len(),
        }
    }

    /// Appends the map's format-1 encoding.
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self.0.view() {
            View::Entries(entries) => {
                codec::put_varint(out, entries.len() as u64);
                for (k, v) in entries.iter() {
                    codec::put_str(out, k);
                    codec::put_str(out, v);
                }
            }
            View::Encoded(bytes) => out.extend_from_slice(bytes),
        }
    }
}

fn position(entries: &[(Box<str>, Box<str>)], key: &str) -> Result<usize, usize> {
    entries.binary_search_by(|(k, _)| (**k).cmp(key))
}

/// The entries of an encoded map that was checked when decoded.
struct EncodedIter<'a> {
    r: Reader<'a>,
    left: usize,
}

impl<'a> EncodedIter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let mut r = Reader(bytes);
        let left = r.len().unwrap_or(0);
        Self { r, left }
    }
}

impl<'a> Iterator for EncodedIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        Some((self.r.str().ok()?, self.r.str().ok()?))
    }
}

enum Iter<'a> {
    Entries(std::slice::Iter<'a, (Box<str>, Box<str>)>),
    Encoded(EncodedIter<'a>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Entries(entries) => entries.next().map(|(k, v)| (&**k, &**v)),
            Self::Encoded(encoded) => encoded.next(),
        }
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

    /// The serde structs earlier builds encoded and decoded format 1 with, through postcard: the
    /// reference the hand-written codec is checked against.
    mod reference {
        use serde::{Deserialize, Serialize};

        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        pub(super) struct Wire {
            pub(super) key: [u8; 32],
            pub(super) subject: Option<String>,
            pub(super) data: Vec<(String, String)>,
            pub(super) created_at: u64,
            pub(super) authenticated_at: Option<u64>,
            pub(super) last_seen_at: u64,
            pub(super) idle_deadline: u64,
            pub(super) absolute_deadline: u64,
            pub(super) version: u64,
            pub(super) csrf_secret: [u8; 32],
            pub(super) ip: Option<String>,
            pub(super) user_agent: Option<String>,
        }

        pub(super) fn encode(wire: &Wire) -> Vec<u8> {
            postcard::to_extend(wire, vec![super::FORMAT_V1]).unwrap()
        }

        /// What the reference decoder accepted: `Some` if it decoded the bytes whole.
        pub(super) fn decode(bytes: &[u8]) -> Option<Wire> {
            let rest = bytes.strip_prefix(&[super::FORMAT_V1])?;
            match postcard::take_from_bytes::<Wire>(rest) {
                Ok((wire, [])) => Some(wire),
                _ => None,
            }
        }
    }

    fn to_wire(record: &Record) -> reference::Wire {
        reference::Wire {
            key: *record.key.as_bytes(),
            subject: record.subject.as_deref().map(str::to_owned),
            data: record
                .data
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            created_at: record.created_at.as_millis(),
            authenticated_at: record.authenticated_at.map(Timestamp::as_millis),
            last_seen_at: record.last_seen_at.as_millis(),
            idle_deadline: record.idle_deadline.as_millis(),
            absolute_deadline: record.absolute_deadline.as_millis(),
            version: record.version,
            csrf_secret: record.csrf_secret,
            ip: record.client.ip.as_deref().map(str::to_owned),
            user_agent: record.client.user_agent.as_deref().map(str::to_owned),
        }
    }

    fn arbitrary_record() -> impl Strategy<Value = Record> {
        let strings = || proptest::option::of("\\PC{0,12}");
        let times = proptest::array::uniform6(prop_oneof![any::<u64>(), 0..300u64]);
        (
            any::<[u8; 32]>(),
            strings(),
            proptest::collection::btree_map("\\PC{0,6}", any::<i64>(), 0..20),
            times,
            any::<bool>(),
            any::<[u8; 32]>(),
            strings(),
            strings(),
        )
            .prop_map(
                |(key, subject, entries, t, authenticated, secret, ip, ua)| {
                    let mut data = Data::new();
                    for (k, v) in &entries {
                        data.set_json(k, &serde_json::json!(v));
                    }
                    Record {
                        key: Key::from_bytes(key),
                        subject: subject.map(Arc::from),
                        data,
                        created_at: Timestamp::from_millis(t[0]),
                        authenticated_at: authenticated.then(|| Timestamp::from_millis(t[1])),
                        last_seen_at: Timestamp::from_millis(t[2]),
                        idle_deadline: Timestamp::from_millis(t[3]),
                        absolute_deadline: Timestamp::from_millis(t[4]),
                        version: t[5],
                        csrf_secret: secret,
                        client: ClientInfo {
                            ip: ip.map(Arc::from),
                            user_agent: ua.map(Arc::from),
                        },
                    }
                },
            )
    }

    #[test]
    fn unsorted_entries_from_elsewhere_are_sorted_and_duplicates_refused() {
        let mut wire = to_wire(&sample(Key::from_bytes([3; 32])));
        wire.data.reverse();
        let record = Record::decode(&reference::encode(&wire)).unwrap();
        assert_eq!(record, sample(Key::from_bytes([3; 32])));
        wire.data.push(wire.data[0].clone());
        assert!(matches!(
            Record::decode(&reference::encode(&wire)),
            Err(DecodeError::DuplicateDataKey)
        ));
        wire.data.pop();
        wire.data[0].1 = "not json".into();
        assert!(matches!(
            Record::decode(&reference::encode(&wire)),
            Err(DecodeError::Value(_))
        ));
    }

    #[test]
    fn a_decoded_map_reads_and_changes_like_a_built_one() {
        let built = sample(Key::from_bytes([5; 32])).data;
        let mut decoded = Record::decode(&sample(Key::from_bytes([5; 32])).encode())
            .unwrap()
            .data;
        assert_eq!(decoded, built);
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded.get_raw("n"), Some("3"));
        assert_eq!(decoded.get_raw("cart"), Some(r#"["apple","pear"]"#));
        assert_eq!(decoded.get_raw("a"), None);
        assert_eq!(decoded.get_raw("m"), None);
        assert_eq!(decoded.get_raw("z"), None);
        let before = decoded.clone();
        assert!(!decoded.remove("zz"));
        assert!(decoded.remove("cart"));
        decoded.set_json("x", &serde_json::json!(1));
        assert_eq!(decoded.iter().collect::<Vec<_>>(), [("n", "3"), ("x", "1")]);
        assert_eq!(before, built, "the decoded map is copy-on-write");
        decoded.clear();
        assert!(decoded.is_empty());
    }

    /// Which form a decoded map took: "entries", "shared" or "inline".
    fn form(data: &Data) -> &'static str {
        match data.0 {
            Repr::Entries(_) => "entries",
            Repr::Encoded(_) => "shared",
            Repr::Inline(_) => "inline",
        }
    }

    #[test]
    fn a_small_decoded_map_is_inline_and_reads_and_changes_like_a_built_one() {
        let mut built = Data::new();
        built.set_json("n", &serde_json::json!(0));
        built.set_json("t", &serde_json::json!("dark"));
        let mut record = sample(Key::from_bytes([6; 32]));
        record.data = built.clone();
        let mut decoded = Record::decode(&record.encode()).unwrap().data;
        assert_eq!(form(&decoded), "inline");
        assert_eq!(decoded, built);
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded.get_raw("n"), Some("0"));
        assert_eq!(decoded.get_raw("t"), Some("\"dark\""));
        assert_eq!(decoded.get_raw("m"), None);
        let before = decoded.clone();
        assert!(decoded.remove("n"));
        decoded.set_json("x", &serde_json::json!(1));
        assert_eq!(form(&decoded), "entries");
        assert_eq!(
            decoded.iter().collect::<Vec<_>>(),
            [("t", "\"dark\""), ("x", "1")]
        );
        assert_eq!(before, built, "the inline map was copied, not changed");
        // The longest inline encoding and the shortest shared one.
        // (One entry: the count, the key and the value, each string with its length.)
        for (len, expected) in [(INLINE_MAX - 4, "inline"), (INLINE_MAX - 3, "shared")] {
            let mut data = Data::new();
            data.set_raw("k", format!("\"{}\"", "x".repeat(len - 2)).into_boxed_str());
            record.data = data;
            let bytes = record.encode();
            assert_eq!(form(&Record::decode(&bytes).unwrap().data), expected);
            assert_eq!(Record::decode(&bytes).unwrap(), record);
        }
    }

    proptest! {
        /// Whatever form a decoded map takes (inline, shared or entries), it reads, iterates,
        /// encodes and changes as the map it was built from.
        #[test]
        fn decoded_maps_of_every_size_behave_like_built_ones(
            entries in proptest::collection::btree_map("[a-z]{1,4}", 0..1000i64, 0..20),
            probe in "[a-z]{1,4}",
        ) {
            let mut built = Data::new();
            for (k, v) in &entries {
                built.set_json(k, &serde_json::json!(v));
            }
            let mut record = sample(Key::from_bytes([8; 32]));
            record.data = built.clone();
            let mut decoded = Record::decode_own(&record.encode()).unwrap().data;
            prop_assert_eq!(&decoded, &built);
            prop_assert_eq!(decoded.len(), built.len());
            prop_assert_eq!(decoded.get_raw(&probe), built.get_raw(&probe));
            let mut out = Vec::new();
            decoded.encode_into(&mut out);
            let mut expected = Vec::new();
            built.encode_into(&mut expected);
            prop_assert_eq!(out, expected);
            prop_assert_eq!(decoded.remove(&probe), built.remove(&probe));
            decoded.set_json("zz", &serde_json::json!(true));
            built.set_json("zz", &serde_json::json!(true));
            prop_assert_eq!(decoded, built);
        }

        /// Setting keys on a new map keeps it inline while its encoding fits (no allocation),
        /// and it reads, encodes and decodes like the same entries held as a vector.
        #[test]
        fn a_small_map_stays_inline_as_keys_are_set(
            sets in proptest::collection::vec(("[a-c]{0,2}", 0..100_000i64), 1..8),
        ) {
            let mut data = Data::new();
            let mut model = std::collections::BTreeMap::new();
            // Once it spills into entries, the map stays there (even if a later value is
            // shorter).
            let mut spilled = false;
            for (key, value) in &sets {
                data.set_json(key, &serde_json::json!(value));
                model.insert(key.clone(), value.to_string());
                let entries = Data(Repr::Entries(Arc::new(
                    model.iter().map(|(k, v)| (Box::from(&**k), Box::from(&**v))).collect(),
                )));
                let (mut ours, mut theirs) = (Vec::new(), Vec::new());
                data.encode_into(&mut ours);
                entries.encode_into(&mut theirs);
                prop_assert_eq!(&ours, &theirs);
                spilled |= ours.len() > INLINE_MAX;
                prop_assert_eq!(form(&data), if spilled { "entries" } else { "inline" });
                prop_assert_eq!(&data, &entries);
                prop_assert_eq!(data.len(), model.len());
                prop_assert_eq!(data.get_raw(key), Some(&*value.to_string()));
                let mut record = sample(Key::from_bytes([9; 32]));
                record.data = data.clone();
                prop_assert_eq!(Record::decode(&record.encode()).unwrap().data, data.clone());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Record::decode(&bytes);
        }

        /// The hand-written encoder writes exactly what postcard wrote through the serde
        /// structs, and the decoder reads it back to the same record, whether its data map was
        /// built or decoded.
        #[test]
        fn the_codec_matches_the_serde_reference(record in arbitrary_record()) {
            let bytes = record.encode();
            prop_assert_eq!(&bytes, &reference::encode(&to_wire(&record)));
            prop_assert!(bytes.len() <= record.encoded_len_hint());
            let decoded = Record::decode(&bytes).unwrap();
            prop_assert_eq!(&decoded, &record);
            prop_assert!(bytes.len() <= decoded.encoded_len_hint());
            prop_assert_eq!(decoded.encode(), bytes.clone());
            prop_assert_eq!(Record::decode_own(&bytes).unwrap(), record.clone());
            let activity = Activity {
                last_seen_at: Timestamp::from_millis(record.version ^ 1),
                idle_deadline: Timestamp::from_millis(u64::MAX),
                absolute_deadline: Timestamp::ZERO,
                version: record.created_at.as_millis(),
            };
            let mut expected = record;
            expected.last_seen_at = activity.last_seen_at;
            expected.idle_deadline = activity.idle_deadline;
            expected.absolute_deadline = activity.absolute_deadline;
            expected.version = activity.version;
            prop_assert_eq!(Record::decode_own_with(&bytes, activity).unwrap(), expected);
        }

        /// On any bytes, damaged or not, the decoder accepts what the reference accepted (and
        /// decodes it to the same fields), and nothing the reference refused, except unsorted
        /// data, which both read (the reference as it is, this one sorted).
        #[test]
        fn the_decoder_accepts_what_the_reference_accepted(
            record in arbitrary_record(),
            cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        ) {
            let mut bytes = record.encode();
            for (at, byte) in cuts {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            let ours = Record::decode(&bytes);
            // Skipping the activity fields refuses exactly what decoding them refuses.
            let activity = Activity {
                last_seen_at: Timestamp::ZERO,
                idle_deadline: Timestamp::ZERO,
                absolute_deadline: Timestamp::ZERO,
                version: 0,
            };
            prop_assert_eq!(
                Record::decode_own_with(&bytes, activity).is_ok(),
                Record::decode_own(&bytes).is_ok()
            );
            match reference::decode(&bytes) {
                Some(mut wire) => {
                    let valid = wire.data.iter().all(|(_, v)| {
                        serde_json::from_str::<serde::de::IgnoredAny>(v).is_ok()
                    });
                    wire.data.sort();
                    let unique = wire.data.windows(2).all(|w| w[0].0 != w[1].0);
                    match ours {
                        Ok(ours) => prop_assert_eq!(to_wire(&ours), wire),
                        Err(error) => prop_assert!(!valid || !unique, "{error}"),
                    }
                }
                None => prop_assert!(ours.is_err()),
            }
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
