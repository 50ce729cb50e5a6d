//! Strict JSON for untrusted token parts: duplicate member names are an error at any depth.
//!
//! `serde_json` keeps the last of two members with the same name, so `{"sub":"a","sub":"b"}`
//! would mean different things to different parsers (RFC 8725 §2.x, the "duplicate claim"
//! attack). This visitor builds the same `serde_json::Value`, but refuses such documents.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `bytes` as one JSON value with no duplicate member names; `None` otherwise.
pub(crate) fn parse_strict(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Strict>(bytes).ok().map(|s| s.0)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without duplicate member names")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(de::Error::custom("duplicate member name"));
            }
            let Strict(value) = map.next_value()?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth_and_after_unescaping() {
        assert!(parse_strict(br#"{"a":1,"b":[1,{"c":null}]}"#).is_some());
        assert!(parse_strict(br#"{"a":1,"a":2}"#).is_none());
        assert!(parse_strict(br#"{"x":{"a":1,"a":1}}"#).is_none());
        assert!(parse_strict(br#"[{"a":1,"a":1}]"#).is_none());
        assert!(parse_strict(br#"{"a":1,"\u0061":2}"#).is_none());
    }

    #[test]
    fn non_json_and_trailing_bytes_are_refused() {
        for bad in [
            &b""[..],
            b"{",
            b"{}x",
            b"{} {}",
            b"{'a':1}",
            b"NaN",
            b"\xff",
        ] {
            assert!(parse_strict(bad).is_none(), "{bad:?}");
        }
        assert_eq!(parse_strict(b" {} "), Some(Value::Object(Map::new())));
    }
}
