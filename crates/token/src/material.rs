//! Key ids, key material checks and randomness shared by both token kinds.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::error::KeyError;

/// Every Tessera key has at least this many bytes (256 bits).
pub const MIN_KEY_BYTES: usize = 32;

/// The id a token carries to name the key that sealed or signed it: 1 to 32 characters of
/// `A-Z a-z 0-9 - _`. Ids are not secret; they travel in every token.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Box<str>);

impl KeyId {
    /// Checks and wraps an id.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidId`] for an empty id, one over 32 characters, or any other
    /// character (so an id can never smuggle `.`, `/` or `..` into a token or a lookup).
    pub fn new(id: &str) -> Result<Self, KeyError> {
        if Self::is_valid(id) {
            Ok(Self(id.into()))
        } else {
            Err(KeyError::InvalidId)
        }
    }

    pub(crate) fn is_valid(id: &str) -> bool {
        (1..=32).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Refuses key material that is short or that does not look like CSPRNG output.
///
/// The heuristics are deliberately coarse, so a real random key is never refused (the odds
/// are below 10^-13 for a 32-byte key): all bytes printable ASCII (a passphrase, or a hex or
/// base64 string passed without decoding it), or fewer than 12 distinct byte values (zeros,
/// repeated or counting patterns).
pub(crate) fn check_material(bytes: &[u8], min: usize) -> Result<(), KeyError> {
    if bytes.len() < min {
        return Err(KeyError::TooShort {
            len: bytes.len(),
            min,
        });
    }
    if bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(KeyError::LowEntropy(
            "text (a passphrase, or undecoded hex/base64)",
        ));
    }
    let mut seen = [false; 256];
    for &b in bytes {
        seen[usize::from(b)] = true;
    }
    if seen.iter().filter(|s| **s).count() < 12 {
        return Err(KeyError::LowEntropy("a repeated pattern"));
    }
    Ok(())
}

/// Decodes key material given as base64 (standard or URL-safe alphabet, padded or not).
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, KeyError> {
    let text = text.trim();
    let unpadded = text.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(unpadded)
        .or_else(|_| STANDARD.decode(text))
        .map_err(KeyError::Base64)
}

/// `N` bytes from the OS CSPRNG.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strict() {
        for good in ["a", "k1", "2026-11_primary", &"x".repeat(32)] {
            assert!(KeyId::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../k1",
            "k1/..",
            "k.1",
            "k 1",
            "k1\0",
            "ключ",
            &"x".repeat(33),
        ] {
            assert!(matches!(KeyId::new(bad), Err(KeyError::InvalidId)), "{bad}");
        }
    }

    #[test]
    fn weak_material_is_refused_and_random_material_is_not() {
        assert!(matches!(
            check_material(&[7; 16], 32),
            Err(KeyError::TooShort { len: 16, min: 32 })
        ));
        assert!(matches!(
            check_material(b"correct horse battery staple!!!!", 32),
            Err(KeyError::LowEntropy(_))
        ));
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert!(matches!(
            check_material(hex.as_bytes(), 32),
            Err(KeyError::LowEntropy(_))
        ));
        assert!(matches!(
            check_material(&[0; 32], 32),
            Err(KeyError::LowEntropy(_))
        ));
        let counting: Vec<u8> = (0..32).map(|i| 200 + (i % 4)).collect();
        assert!(matches!(
            check_material(&counting, 32),
            Err(KeyError::LowEntropy(_))
        ));
        for _ in 0..1000 {
            let key = random::<32>().unwrap();
            check_material(&key, 32).unwrap();
        }
    }

    #[test]
    fn base64_in_either_alphabet_decodes() {
        let key = [0xfbu8; 32];
        let url = URL_SAFE_NO_PAD.encode(key);
        let std = STANDARD.encode(key);
        assert_eq!(decode_base64(&url).unwrap(), key);
        assert_eq!(decode_base64(&std).unwrap(), key);
        assert!(matches!(
            decode_base64("not base64!"),
            Err(KeyError::Base64(_))
        ));
    }
}
