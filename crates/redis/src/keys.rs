//! How records and subject indexes are named in Redis, and which cluster slot a name lands in.

use sha2::{Digest, Sha256};
use tessera_core::Key;

/// Key names for one store. Every name carries a Redis Cluster hash tag (`{...}`) so that the
/// slot of a name is decided by the tag alone:
///
/// - a session: `PREFIX:{KEYHEX}:r2` (tag: the 64 hex digits of the record's key; `r2`: a
///   record in the string layout of [`crate::value`]; the hashes of the first layout were
///   named `PREFIX:{KEYHEX}` and are never read);
/// - a subject index: `PREFIX:{SUBJECTHASH}:s` (tag: 32 hex digits of the SHA-256 of the
///   subject, so the subject itself never appears in a key name).
///
/// Each Lua script touches keys of one tag only, so no command ever spans slots.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The name of the string that holds the record under `key`.
    pub(crate) fn session(&self, key: &Key) -> String {
        let mut name = Vec::with_capacity(self.prefix.len() + 70);
        self.write_session(&mut name, key);
        String::from_utf8(name).expect("the prefix is UTF-8 and the rest ASCII")
    }

    /// [`Keys::session`], appended to `out` (straight into a command, with no `String` of its
    /// own).
    pub(crate) fn write_session(&self, out: &mut Vec<u8>, key: &Key) {
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(b":{");
        push_hex(out, key.as_bytes());
        out.extend_from_slice(b"}:r2");
    }

    /// The name of the sorted set that indexes the sessions of `subject`.
    pub(crate) fn subject(&self, subject: &str) -> String {
        let digest = Sha256::digest(subject.as_bytes());
        let mut name = String::with_capacity(self.prefix.len() + 40);
        name.push_str(&self.prefix);
        name.push_str(":{");
        let mut hex = Vec::with_capacity(32);
        push_hex(&mut hex, &digest[..16]);
        name.push_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
        name.push_str("}:s");
        name
    }

    /// A `SCAN MATCH` pattern for this store's subject indexes.
    pub(crate) fn subject_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 8);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(":{*}:s");
        pattern
    }
}

/// Lower-case hex of up to 32 bytes, appended in one piece.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 64];
    let bytes = &bytes[..bytes.len().min(32)];
    for (pair, b) in digits.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    out.extend_from_slice(&digits[..2 * bytes.len()]);
}

/// The Redis Cluster slot of a key name (CRC16/XMODEM of the hash tag, or of the whole name
/// when it has no non-empty tag), as the cluster specification defines it.
pub(crate) fn slot(name: &[u8]) -> u16 {
    let tagged = name
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &name[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(name);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % 16384
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::SessionId;

    #[test]
    fn slots_follow_the_cluster_specification() {
        // Reference values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn names_carry_one_tag_each() {
        let keys = Keys::new("app");
        let key = SessionId::generate().key();
        let name = keys.session(&key);
        assert!(name.starts_with("app:{") && name.ends_with("}:r2"));
        assert_eq!(name.len(), "app:{}:r2".len() + 64);
        let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(name, format!("app:{{{hex}}}:r2"));
        let subject = keys.subject("alice");
        assert!(subject.starts_with("app:{") && subject.ends_with("}:s"));
        assert!(!subject.contains("alice"));
        assert_eq!(keys.subject("alice"), subject);
        assert_ne!(keys.subject("bob"), subject);
        assert_eq!(Keys::new("a*b").subject_pattern(), "a\\*b:{*}:s");
        // Same prefix, different tags: the slot is the tag's, whatever the prefix.
        assert_eq!(
            slot(name.as_bytes()),
            slot(Keys::new("other").session(&key).as_bytes())
        );
    }
}
