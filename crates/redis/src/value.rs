//! How one session is stored: a Redis string, a fixed-width header the scripts can read and
//! patch in place, then the record itself.
//!
//! | bytes | holds |
//! |---|---|
//! | 0..20 | the version, 20 decimal digits (compared as text by the scripts) |
//! | 20..35 | the idle deadline, Unix ms, 15 digits |
//! | 35..50 | the absolute deadline, Unix ms, 15 digits |
//! | 50..65 | the last-seen time, Unix ms, 15 digits |
//! | 65 | `1` if the record has a subject, else `0` |
//! | 66..71 | the subject's length in bytes, 5 digits |
//! | 71.. | the subject, then the whole record as [`Record::encode`] makes it |
//!
//! `touch` rewrites bytes 20..65 in place (`SETRANGE`), so the idle deadline and last-seen time
//! in the header override the record's on load; the version and subject are written together
//! with the record and always agree with it. Fixed-width decimal keeps the scripts simple
//! (`string.sub` and `tonumber`, exact for every deadline: they are clamped below 2^53) and the
//! values readable in `redis-cli`.

use tessera_core::{Key, Record, Timestamp};

/// Where each header field is (byte offsets, end exclusive).
pub(crate) const VERSION: std::ops::Range<usize> = 0..20;
pub(crate) const IDLE: std::ops::Range<usize> = 20..35;
const ABSOLUTE: std::ops::Range<usize> = 35..50;
const LAST_SEEN: std::ops::Range<usize> = 50..65;
const HAS_SUBJECT: usize = 65;
const SUBJECT_LEN: std::ops::Range<usize> = 66..71;
/// The fixed part of the header.
pub(crate) const HEADER: usize = 71;
/// The longest subject the header can describe.
pub(crate) const MAX_SUBJECT: usize = 99_999;

/// Whether `record`'s subject fits the header (at most [`MAX_SUBJECT`] bytes); check it before
/// [`encode_into`].
pub(crate) fn fits(record: &Record) -> bool {
    record.subject.as_deref().unwrap_or_default().len() <= MAX_SUBJECT
}

/// About as many bytes as [`encode_into`] appends for `record` (rounded up), to size a buffer.
pub(crate) fn len_hint(record: &Record) -> usize {
    HEADER + record.subject.as_deref().map_or(0, str::len) + record.encoded_len_hint()
}

/// Appends the value stored for `record` (a record that [`fits`]) to `out`, its deadlines
/// clamped by `clamp`.
pub(crate) fn encode_into(out: &mut Vec<u8>, record: &Record, clamp: impl Fn(Timestamp) -> u64) {
    let subject = record.subject.as_deref().unwrap_or_default();
    debug_assert!(subject.len() <= MAX_SUBJECT);
    let start = out.len();
    out.resize(start + HEADER, b'0');
    let header = &mut out[start..];
    put_digits(&mut header[VERSION], record.version);
    put_digits(&mut header[IDLE], clamp(record.idle_deadline));
    put_digits(&mut header[ABSOLUTE], clamp(record.absolute_deadline));
    put_digits(&mut header[LAST_SEEN], clamp(record.last_seen_at));
    header[HAS_SUBJECT] = if record.subject.is_some() { b'1' } else { b'0' };
    put_digits(&mut header[SUBJECT_LEN], subject.len() as u64);
    out.extend_from_slice(subject.as_bytes());
    record.encode_into(out);
}

/// `value` zero-padded to `width` (at most 20) decimal digits, as the scripts compare and
/// write them; kept on the stack.
pub(crate) fn digits(value: u64, width: usize) -> Digits {
    let mut digits = Digits {
        buffer: [b'0'; 20],
        width: width.min(20),
    };
    put_digits(&mut digits.buffer[..digits.width], value);
    digits
}

/// The text [`digits`] makes.
pub(crate) struct Digits {
    buffer: [u8; 20],
    width: usize,
}

impl std::ops::Deref for Digits {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buffer[..self.width]
    }
}

/// Writes `value` right-aligned into `field`, zero-padded (the field is as wide as the header
/// says; a value too wide for it keeps its lowest digits, which `debug_assert` catches).
fn put_digits(field: &mut [u8], value: u64) {
    let mut buffer = [0u8; 20];
    let text = crate::resp::decimal(&mut buffer, value);
    debug_assert!(
        text.len() <= field.len(),
        "{value} does not fit {} digits",
        field.len()
    );
    let text = &text[text.len().saturating_sub(field.len())..];
    let pad = field.len() - text.len();
    field[..pad].fill(b'0');
    field[pad..].copy_from_slice(text);
}

/// The record stored under `key`, with the header's idle deadline and last-seen time laid
/// over the record's own.
pub(crate) fn decode(key: &Key, value: &[u8]) -> Result<Record, &'static str> {
    if value.len() < HEADER {
        return Err("shorter than the header");
    }
    let number = |range: std::ops::Range<usize>| -> Result<u64, &'static str> {
        value[range].iter().try_fold(0u64, |n, &b| {
            if !b.is_ascii_digit() {
                return Err("non-numeric header field");
            }
            n.checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or("header field out of range")
        })
    };
    let version = number(VERSION)?;
    let idle = number(IDLE)?;
    let last_seen = number(LAST_SEEN)?;
    let subject_len = usize::try_from(number(SUBJECT_LEN)?).map_err(|_| "bad subject length")?;
    let blob = value
        .get(HEADER + subject_len..)
        .ok_or("subject longer than the value")?;
    let mut record = Record::decode(blob).map_err(|_| "malformed record")?;
    if record.key != *key {
        return Err("record stored under another key");
    }
    if record.version != version
        || record.subject.is_some() != (value[HAS_SUBJECT] == b'1')
        || record.subject.as_deref().unwrap_or_default().as_bytes()
            != &value[HEADER..HEADER + subject_len]
    {
        return Err("header disagrees with the record");
    }
    record.idle_deadline = Timestamp::from_millis(idle);
    record.last_seen_at = Timestamp::from_millis(last_seen);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::SessionId;
    use tessera_core::testing::fresh_record;

    fn millis(t: Timestamp) -> u64 {
        t.as_millis()
    }

    /// The value for `record` on its own; `None` if its subject is too long.
    fn encode(record: &Record, clamp: impl Fn(Timestamp) -> u64) -> Option<Vec<u8>> {
        if !fits(record) {
            return None;
        }
        let mut value = Vec::new();
        encode_into(&mut value, record, clamp);
        Some(value)
    }

    #[test]
    fn a_record_round_trips_and_the_header_is_fixed_width_text() {
        for subject in [Some("alice"), None, Some("")] {
            let mut record = fresh_record(subject);
            record.version = 7;
            let value = encode(&record, millis).unwrap();
            assert_eq!(&value[VERSION], b"00000000000000000007");
            assert_eq!(&value[IDLE], &*digits(record.idle_deadline.as_millis(), 15));
            assert_eq!(
                value[HAS_SUBJECT],
                if subject.is_some() { b'1' } else { b'0' }
            );
            assert!(value.len() <= len_hint(&record));
            let back = decode(&record.key, &value).unwrap();
            assert_eq!(back.data, record.data);
            assert_eq!(back.subject, record.subject);
            assert_eq!(back.version, 7);
        }
    }

    #[test]
    fn the_header_s_idle_deadline_and_last_seen_override_the_record_s() {
        let record = fresh_record(Some("alice"));
        let mut value = encode(&record, millis).unwrap();
        // What the touch script does: one SETRANGE over idle, absolute, last seen.
        let patch = [&*digits(123, 15), &value[ABSOLUTE], &*digits(45, 15)].concat();
        value[IDLE.start..LAST_SEEN.end].copy_from_slice(&patch);
        let touched = decode(&record.key, &value).unwrap();
        assert_eq!(touched.idle_deadline, Timestamp::from_millis(123));
        assert_eq!(touched.last_seen_at, Timestamp::from_millis(45));
        assert_eq!(touched.absolute_deadline, record.absolute_deadline);
    }

    #[test]
    fn damaged_values_are_refused() {
        let record = fresh_record(Some("alice"));
        let value = encode(&record, millis).unwrap();
        let other = SessionId::generate().key();
        assert!(decode(&other, &value).is_err());
        assert!(decode(&record.key, &value[..value.len() - 1]).is_err());
        assert!(decode(&record.key, &value[..HEADER - 1]).is_err());
        assert!(decode(&record.key, &[]).is_err());
        for (at, byte) in [(3, b'x'), (HAS_SUBJECT, b'0'), (70, b'9'), (HEADER, b'A')] {
            let mut bad = value.clone();
            bad[at] = byte;
            assert!(decode(&record.key, &bad).is_err(), "byte {at}");
        }
        let mut other_version = value.clone();
        other_version[VERSION.end - 1] = b'9';
        assert!(decode(&record.key, &other_version).is_err());
    }

    #[test]
    fn digits_are_zero_padded_to_their_width() {
        assert_eq!(&*digits(0, 5), b"00000");
        assert_eq!(&*digits(42, 5), b"00042");
        assert_eq!(&*digits(99_999, 5), b"99999");
        assert_eq!(&*digits(u64::MAX, 20), u64::MAX.to_string().as_bytes());
        for value in [1, 9, 10, 99, 100, 1_733_000_000_000, 999_999_999_999_999] {
            assert_eq!(&*digits(value, 15), format!("{value:015}").as_bytes());
        }
    }

    #[test]
    fn a_version_beyond_u64_is_refused() {
        let record = fresh_record(None);
        let mut value = encode(&record, millis).unwrap();
        value[VERSION].copy_from_slice(b"99999999999999999999");
        assert_eq!(
            decode(&record.key, &value).err(),
            Some("header field out of range")
        );
    }

    #[test]
    fn a_subject_too_long_for_the_header_is_refused() {
        let mut record = fresh_record(None);
        record.subject = Some("a".repeat(MAX_SUBJECT + 1).into());
        assert!(encode(&record, millis).is_none());
        record.subject = Some("a".repeat(MAX_SUBJECT).into());
        assert!(encode(&record, millis).is_some());
    }
}
