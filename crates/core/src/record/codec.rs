//! The storage encoding of a [`Record`] (format 1), written and read by hand.
//!
//! Format 1 is the [postcard](https://postcard.jamesmunns.com/wire-format) encoding of the
//! record's fields in order, after one format byte: fixed-size arrays as raw bytes, integers as
//! LEB128 varints, `Option` as a 0/1 tag, strings and sequences as a varint length and then their
//! contents. Earlier builds wrote it through `postcard` and a serde struct; this module writes
//! and reads the same bytes directly, because the record is decoded on every request that
//! presents a session and the generic path (one allocation per data string, serde's visitors)
//! cost several times the rest of a memory-store load. The tests check it byte for byte against
//! the serde reference and against a frozen record.

use std::sync::Arc;

use postcard::Error as Wire;

use super::{Activity, ClientInfo, Data, Record};
use crate::error::DecodeError;
use crate::id::Key;
use crate::time::Timestamp;

/// The format byte that starts every encoded record.
pub const FORMAT_V1: u8 = 1;

/// Whether to check what only a foreign or damaged encoding could get wrong (data strings that
/// are not UTF-8, values that are not JSON). A record this process encoded itself (the memory
/// store's) was built from checked strings and needs no check.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    Checked,
    Own,
}

/// Room for the fixed part (format, key, secret, times: under 140 bytes), the optional strings
/// and the data.
pub(super) fn len_hint(record: &Record) -> usize {
    let strings = [
        &record.subject,
        &record.client.ip,
        &record.client.user_agent,
    ]
    .iter()
    .filter_map(|s| s.as_deref().map(|s| s.len() + 2))
    .sum::<usize>();
    140 + strings + record.data.encoded_len_hint()
}

pub(super) fn encode_into(record: &Record, out: &mut Vec<u8>) {
    // So the buffer grows at most once.
    out.reserve(len_hint(record));
    out.push(FORMAT_V1);
    out.extend_from_slice(record.key.as_bytes());
    put_opt_str(out, record.subject.as_deref());
    record.data.encode_into(out);
    put_varint(out, record.created_at.as_millis());
    match record.authenticated_at {
        Some(at) => {
            out.push(1);
            put_varint(out, at.as_millis());
        }
        None => out.push(0),
    }
    put_varint(out, record.last_seen_at.as_millis());
    put_varint(out, record.idle_deadline.as_millis());
    put_varint(out, record.absolute_deadline.as_millis());
    put_varint(out, record.version);
    out.extend_from_slice(&record.csrf_secret);
    put_opt_str(out, record.client.ip.as_deref());
    put_opt_str(out, record.client.user_agent.as_deref());
}

/// Decodes a format-1 record; with `activity`, its four activity fields are skipped (checked to be
/// well-formed, not decoded) and `activity` given instead.
pub(super) fn decode(
    bytes: &[u8],
    trust: Trust,
    activity: Option<Activity>,
) -> Result<Record, DecodeError> {
    let (&format, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if format != FORMAT_V1 {
        return Err(DecodeError::UnknownFormat(format));
    }
    let mut r = Reader(rest);
    let key = r.array().map_err(DecodeError::Malformed)?;
    let subject = r.opt_str().map_err(DecodeError::Malformed)?;
    let data = Data::decode(&mut r, trust)?;
    let mut fields = || -> Result<_, Wire> {
        let created_at = r.varint()?;
        let authenticated_at = r.option(Reader::varint)?;
        let times = match activity {
            None => [r.varint()?, r.varint()?, r.varint()?, r.varint()?],
            Some(known) => {
                for _ in 0..4 {
                    r.skip_varint()?;
                }
                [
                    known.last_seen_at.as_millis(),
                    known.idle_deadline.as_millis(),
                    known.absolute_deadline.as_millis(),
                    known.version,
                ]
            }
        };
        let csrf_secret = r.array()?;
        let ip = r.opt_str()?;
        let user_agent = r.opt_str()?;
        Ok((
            created_at,
            authenticated_at,
            times,
            csrf_secret,
            ip,
            user_agent,
        ))
    };
    let (created_at, authenticated_at, times, csrf_secret, ip, user_agent) =
        fields().map_err(DecodeError::Malformed)?;
    if !r.0.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    let [last_seen_at, idle_deadline, absolute_deadline, version] = times;
    Ok(Record {
        key: Key::from_bytes(key),
        subject: subject.map(Arc::from),
        data,
        created_at: Timestamp::from_millis(created_at),
        authenticated_at: authenticated_at.map(Timestamp::from_millis),
        last_seen_at: Timestamp::from_millis(last_seen_at),
        idle_deadline: Timestamp::from_millis(idle_deadline),
        absolute_deadline: Timestamp::from_millis(absolute_deadline),
        version,
        csrf_secret,
        client: ClientInfo {
            ip: ip.map(Arc::from),
            user_agent: user_agent.map(Arc::from),
        },
    })
}

/// The subject of an encoded record, read without decoding the rest (it follows the key);
/// `None` for no subject or a damaged encoding.
pub(crate) fn encoded_subject(bytes: &[u8]) -> Option<&str> {
    let rest = bytes
        .get(33..)
        .filter(|_| bytes.first() == Some(&FORMAT_V1))?;
    Reader(rest).opt_str().ok()?
}

/// A varint as postcard writes it: 7 bits a byte, least significant first.
pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

/// Reads postcard's encoding from the front of a byte slice, with postcard's own errors and
/// rules (a varint of at most 10 bytes whose last byte fits the 64 bits; an `Option` tag of 0
/// or 1; strings valid UTF-8).
#[derive(Clone, Copy)]
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    #[inline]
    fn byte(&mut self) -> Result<u8, Wire> {
        let (&b, rest) = self.0.split_first().ok_or(Wire::DeserializeUnexpectedEnd)?;
        self.0 = rest;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Wire> {
        let (array, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(Wire::DeserializeUnexpectedEnd)?;
        self.0 = rest;
        Ok(*array)
    }

    // Inlined, so that the one-byte case (lengths, counts and tags) costs no call; a decode reads
    // about ten varints.
    #[inline]
    pub(super) fn varint(&mut self) -> Result<u64, Wire> {
        if let Some((&b, rest)) = self.0.split_first() {
            if b < 0x80 {
                self.0 = rest;
                return Ok(u64::from(b));
            }
        }
        self.long_varint()
    }

    /// [`Reader::varint`] of more than one byte.
    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, Wire> {
        let bytes = self.0;
        // Up to 8 bytes (56 bits: every millisecond timestamp until the year 2^40): the 7-bit
        // groups of one little-endian word gathered in three steps instead of a loop per byte.
        if let Some(word) = bytes.first_chunk::<8>() {
            let word = u64::from_le_bytes(*word);
            let stops = !word & 0x8080_8080_8080_8080;
            if stops != 0 {
                let len = stops.trailing_zeros() as usize / 8 + 1;
                let mut v = word & (u64::MAX >> (64 - 8 * len)) & 0x7f7f_7f7f_7f7f_7f7f;
                v = (v & 0x007f_007f_007f_007f) | ((v & 0x7f00_7f00_7f00_7f00) >> 1);
                v = (v & 0x0000_3fff_0000_3fff) | ((v & 0x3fff_0000_3fff_0000) >> 2);
                v = (v & 0x0000_0000_0fff_ffff) | ((v & 0x0fff_ffff_0000_0000) >> 4);
                self.0 = &bytes[len..];
                return Ok(v);
            }
        }
        self.varint_by_bytes()
    }

    /// Steps over a varint, refusing what [`Reader::varint`] refuses.
    pub(super) fn skip_varint(&mut self) -> Result<(), Wire> {
        // Up to 8 bytes, every varint is valid: only its end is looked for.
        if let Some(word) = self.0.first_chunk::<8>() {
            let stops = !u64::from_le_bytes(*word) & 0x8080_8080_8080_8080;
            if stops != 0 {
                self.0 = &self.0[stops.trailing_zeros() as usize / 8 + 1..];
                return Ok(());
            }
        }
        self.varint().map(|_| ())
    }

    /// [`Reader::varint`] one byte at a time, as postcard reads it.
    fn varint_by_bytes(&mut self) -> Result<u64, Wire> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return if i == 9 && b > 1 {
                    Err(Wire::DeserializeBadVarint)
                } else {
                    Ok(value)
                };
            }
        }
        Err(Wire::DeserializeBadVarint)
    }

    #[inline]
    pub(super) fn len(&mut self) -> Result<usize, Wire> {
        usize::try_from(self.varint()?).map_err(|_| Wire::DeserializeBadVarint)
    }

    /// A length-prefixed run of bytes (a string's, unchecked).
    #[inline]
    pub(super) fn raw_str(&mut self) -> Result<&'a [u8], Wire> {
        let len = self.len()?;
        if len > self.0.len() {
            return Err(Wire::DeserializeUnexpectedEnd);
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(s)
    }

    pub(super) fn str(&mut self) -> Result<&'a str, Wire> {
        std::str::from_utf8(self.raw_str()?).map_err(|_| Wire::DeserializeBadUtf8)
    }

    #[inline]
    fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, Wire>,
    ) -> Result<Option<T>, Wire> {
        match self.byte()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(Wire::DeserializeBadOption),
        }
    }

    #[inline]
    fn opt_str(&mut self) -> Result<Option<&'a str>, Wire> {
        self.option(Self::str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The word-at-a-time varint reads what the byte loop reads, and leaves the same rest.
        #[test]
        fn varints_read_the_same_either_way(bytes in proptest::collection::vec(any::<u8>(), 0..14)) {
            let (mut fast, mut slow) = (Reader(&bytes), Reader(&bytes));
            let (a, b) = (fast.varint(), slow.varint_by_bytes());
            prop_assert_eq!(&a, &b);
            if a.is_ok() {
                prop_assert_eq!(fast.0, slow.0);
            }
        }

        /// Skipping a varint accepts what reading it accepts, and leaves the same rest.
        #[test]
        fn skipping_a_varint_agrees_with_reading_it(bytes in proptest::collection::vec(
            prop_oneof![any::<u8>(), 0x80..=0xffu8], 0..14,
        )) {
            let (mut skipped, mut read) = (Reader(&bytes), Reader(&bytes));
            let (a, b) = (skipped.skip_varint(), read.varint());
            prop_assert_eq!(a.is_ok(), b.is_ok());
            if a.is_ok() {
                prop_assert_eq!(skipped.0, read.0);
            }
        }

        #[test]
        fn varints_round_trip(value in prop_oneof![any::<u64>(), 0..1u64 << 56], tail in any::<[u8; 3]>()) {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            out.extend_from_slice(&tail);
            let mut r = Reader(&out);
            prop_assert_eq!(r.varint(), Ok(value));
            prop_assert_eq!(r.0, &tail[..]);
        }
    }
}
