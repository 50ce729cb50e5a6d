//! Session IDs (the secret the client holds) and store keys (what the server files them under).

use std::fmt;

use sha2::{Digest, Sha256};

/// Length of a session ID in bytes (256 bits).
pub const ID_BYTES: usize = 32;
/// Length of an encoded session ID or key: 32 bytes in base64url without padding.
pub const ENCODED_LEN: usize = 43;

/// A session ID: 32 bytes from the operating system's CSPRNG.
///
/// This is the bearer secret: whoever presents it is the session. It travels to the client
/// encoded as 43 characters of base64url without padding ([`SessionId::expose`]) and is never
/// stored by Tessera; stores only ever see its [`Key`].
///
/// `Debug` and `Display` print only a short prefix of the key (the same [`Key::short`] the logs
/// use), never the ID.
///
/// # Example
///
/// ```
/// use tessera_core::SessionId;
///
/// let id = SessionId::generate();
/// let token = id.expose();
/// assert_eq!(token.len(), 43);
/// assert_eq!(SessionId::parse(&token), Some(id.clone()));
/// assert!(!format!("{id:?}").contains(&token));
/// // Anything that is not exactly what `expose` produces is no session at all.
/// assert_eq!(SessionId::parse(&format!("{token}=")), None);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; ID_BYTES]);

impl SessionId {
    /// A fresh ID from the OS CSPRNG.
    ///
    /// # Panics
    ///
    /// If the operating system has no randomness to give, which leaves no safe way to go on;
    /// [`SessionId::try_generate`] returns the error instead.
    pub fn generate() -> Self {
        Self::try_generate().expect("the OS random number generator failed")
    }

    /// A fresh ID from the OS CSPRNG, or the error the OS gave.
    ///
    /// # Errors
    ///
    /// When the OS random number generator is unavailable.
    pub fn try_generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// An ID from 32 bytes the caller just drew from the OS CSPRNG (never from anything else).
    pub(crate) const fn from_os_random(bytes: [u8; ID_BYTES]) -> Self {
        Self(bytes)
    }

    /// Parses a client-supplied ID strictly: exactly 43 characters of base64url, no padding,
    /// no whitespace, canonical trailing bits. Anything else is `None` ("no session"), and costs
    /// no store call.
    pub fn parse(text: &str) -> Option<Self> {
        Self::parse_bytes(text.as_bytes())
    }

    /// [`SessionId::parse`] of bytes as a client sent them (an ID is ASCII, so bytes that are
    /// not UTF-8 are simply not an ID).
    pub(crate) fn parse_bytes(bytes: &[u8]) -> Option<Self> {
        decode_id(bytes).map(Self)
    }

    /// The ID as the client must receive it (43 characters of base64url).
    ///
    /// This is the secret: send it only to the session's owner, never to a log.
    pub fn expose(&self) -> String {
        encode_32(&self.0)
    }

    /// The store key for this ID.
    pub fn key(&self) -> Key {
        Key(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", self.key().short())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", self.key().short())
    }
}

/// The SHA-256 of a session ID: the only thing a store ever sees.
///
/// A key cannot be turned back into an ID, so a dump of any store yields no usable session,
/// and a lookup by key needs no constant-time comparison. Because it is not a secret, the key
/// in base64url is also the session's *handle*: the identifier shown in device lists and used
/// to revoke one session. Presenting a handle as a session ID does nothing, since it would be
/// hashed again.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; 32]);

impl Key {
    /// A key from its 32 raw bytes (as a store reads it back).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The handle: the key as 43 characters of base64url. Not a secret.
    pub fn handle(&self) -> String {
        encode_32(&self.0)
    }

    /// Parses a handle (strictly, like [`SessionId::parse`]).
    pub fn from_handle(text: &str) -> Option<Self> {
        SessionId::parse(text).map(|id| Self(id.0))
    }

    /// The first 8 characters of the handle: enough to follow one session through the logs.
    pub fn short(&self) -> String {
        let mut handle = self.handle();
        handle.truncate(8);
        handle
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.short())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.handle())
    }
}

/// The base64url digits, by value.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The value of each base64url digit; `0xFF` for every other byte.
const DIGITS: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// 32 bytes as 43 base64url digits without padding: what [`decode_id`] reads. Written out for
/// the one fixed length, like the decoder, because every new session and every rotation runs
/// it (the general encoder cost about four times as much); checked against it by a property
/// test.
fn encode_32(bytes: &[u8; 32]) -> String {
    let mut text = [0u8; ENCODED_LEN];
    let digit = |n: u32, shift: u32| ALPHABET[(n >> shift & 0x3F) as usize];
    for group in 0..10 {
        let [a, b, c] = [bytes[3 * group], bytes[3 * group + 1], bytes[3 * group + 2]];
        let n = u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c);
        text[4 * group..4 * group + 4].copy_from_slice(&[
            digit(n, 18),
            digit(n, 12),
            digit(n, 6),
            digit(n, 0),
        ]);
    }
    // The last two bytes: three digits, the spare low bits zero.
    let n = (u32::from(bytes[30]) << 8 | u32::from(bytes[31])) << 2;
    text[40..].copy_from_slice(&[digit(n, 12), digit(n, 6), digit(n, 0)]);
    String::from_utf8(text.to_vec()).expect("base64url digits are ASCII")
}

/// Decodes exactly what [`SessionId::expose`] writes: 43 base64url digits, no padding, the two
/// spare low bits of the last digit zero (so every ID has one spelling). Written out for the one
/// fixed length because it runs on every request that presents a session; the general decoder
/// cost several times as much. Checked against it by a property test.
fn decode_id(text: &[u8]) -> Option<[u8; ID_BYTES]> {
    let text: &[u8; ENCODED_LEN] = text.try_into().ok()?;
    let digit = |i: usize| u32::from(DIGITS[usize::from(text[i])]);
    let mut out = [0u8; ID_BYTES];
    // Any byte outside the alphabet sets bits above the six a digit uses.
    let mut invalid = 0u32;
    for group in 0..10 {
        let (a, b, c, d) = (
            digit(4 * group),
            digit(4 * group + 1),
            digit(4 * group + 2),
            digit(4 * group + 3),
        );
        invalid |= a | b | c | d;
        let n = a << 18 | b << 12 | c << 6 | d;
        out[3 * group..3 * group + 3].copy_from_slice(&n.to_be_bytes()[1..]);
    }
    let (a, b, c) = (digit(40), digit(41), digit(42));
    invalid |= a | b | c;
    let n = a << 12 | b << 6 | c;
    if invalid & !0x3F != 0 || n & 0b11 != 0 {
        return None;
    }
    out[30..].copy_from_slice(&((n >> 2) as u16).to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    /// What the general decoder makes of `text` under the same rules.
    fn reference(text: &[u8]) -> Option<[u8; ID_BYTES]> {
        let mut bytes = [0u8; ID_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(ID_BYTES) if text.len() == ENCODED_LEN => Some(bytes),
            _ => None,
        }
    }

    proptest! {
        #[test]
        fn the_id_encoder_agrees_with_the_general_one(bytes in any::<[u8; 32]>()) {
            let text = encode_32(&bytes);
            prop_assert_eq!(&text, &URL_SAFE_NO_PAD.encode(bytes));
            prop_assert_eq!(decode_id(text.as_bytes()), Some(bytes));
            prop_assert_eq!(text.capacity(), ENCODED_LEN);
        }

        #[test]
        fn the_id_decoder_agrees_with_the_general_one(
            text in proptest::collection::vec(
                proptest::sample::select(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.~ \x00\xff"
                        .to_vec(),
                ),
                41..46,
            ),
            spare_bits in 0u8..4,
        ) {
            prop_assert_eq!(decode_id(&text), reference(&text));
            // The same with only alphabet digits, so that most inputs are well-formed IDs,
            // including ones whose last digit has its spare bits set.
            let mut id = SessionId::generate().expose().into_bytes();
            let last = DIGITS[usize::from(id[42])] | spare_bits;
            id[42] = ALPHABET[usize::from(last)];
            prop_assert_eq!(decode_id(&id), reference(&id));
            prop_assert_eq!(decode_id(&id).is_some(), spare_bits == 0);
        }
    }

    #[test]
    fn generated_ids_differ_and_round_trip() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(&a.expose()), Some(a.clone()));
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn debug_and_display_never_show_the_id() {
        let id = SessionId::generate();
        let token = id.expose();
        for shown in [format!("{id:?}"), format!("{id}")] {
            assert!(!shown.contains(&token));
            assert!(!shown.contains(&token[..12]), "{shown}");
        }
    }

    #[test]
    fn malformed_ids_are_rejected() {
        let good = SessionId::generate().expose();
        let cases = [
            String::new(),
            good[..42].to_string(),
            format!("{good}A"),
            format!("{good}="),
            format!("{}=", &good[..42]),
            format!(" {}", &good[..42]),
            format!("{}\0", &good[..42]),
            format!("{}\n", &good[..42]),
            format!("{}+", &good[..42]),
            format!("{}/", &good[..42]),
            format!("{}é", &good[..41]),
            "A".repeat(10 * 1024),
            "!".repeat(43),
        ];
        for case in cases {
            assert_eq!(SessionId::parse(&case), None, "{case:?}");
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_rejected() {
        // 43 characters carry 258 bits; the last character's low two bits must be zero.
        let good = SessionId::generate().expose();
        let last = good.as_bytes()[42];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.iter().position(|&c| c == last).unwrap();
        let tweaked = alphabet[(pos & !3) | 1] as char;
        let bad = format!("{}{}", &good[..42], tweaked);
        assert_eq!(SessionId::parse(&bad), None);
    }

    #[test]
    fn handle_parses_back_to_the_key_and_is_not_a_token() {
        let id = SessionId::generate();
        let key = id.key();
        assert_eq!(Key::from_handle(&key.handle()), Some(key));
        let as_token = SessionId::parse(&key.handle()).unwrap();
        assert_ne!(as_token.key(), key);
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(bytes in proptest::array::uniform32(any::<u8>())) {
            let id = SessionId(bytes);
            prop_assert_eq!(SessionId::parse(&id.expose()), Some(id));
        }

        #[test]
        fn arbitrary_strings_never_panic_and_only_canonical_ones_parse(text in ".{0,64}") {
            if let Some(id) = SessionId::parse(&text) {
                prop_assert_eq!(id.expose(), text);
            }
        }

        #[test]
        fn arbitrary_alphabet_strings_parse_only_when_canonical(text in "[A-Za-z0-9_-]{43}") {
            match SessionId::parse(&text) {
                Some(id) => prop_assert_eq!(id.expose(), text),
                None => prop_assert!(!matches!(text.as_bytes()[42], b'A' | b'E' | b'I' | b'M' | b'Q' | b'U' | b'Y' | b'c' | b'g' | b'k' | b'o' | b's' | b'w' | b'0' | b'4' | b'8')),
            }
        }
    }
}
