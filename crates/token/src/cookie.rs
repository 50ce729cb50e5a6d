//! The encrypted-cookie engine: the whole session sealed with XChaCha20-Poly1305 into the
//! cookie value.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_core::{Record, Timestamp};

use crate::cookie_key::{CookieKey, SealError};
use crate::error::{KeyError, TokenError};
use crate::lifecycle::{Codec, Core, stateless_engine};
use crate::ring::KeyRing;

/// The cookie name used unless another is set (the `__Host-` prefix makes browsers insist on
/// `Secure`, `Path=/` and no `Domain`).
pub const DEFAULT_COOKIE_NAME: &str = "__Host-session";

/// The most bytes of `name=value` a browser is guaranteed to keep for one cookie
/// (RFC 6265 §6.1); bigger cookies are dropped silently, so Tessera refuses to make them.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// Versions the format; bound into every seal together with the cookie name and key id.
const AAD_PREFIX: &[u8] = b"tessera-token/cookie/v1\0";

/// Stateless sessions in an encrypted cookie: the whole session record (subject, data,
/// timestamps, deadlines, CSRF secret, a token id) sealed with XChaCha20-Poly1305 under the
/// primary key of a [`KeyRing`], with the cookie name and key id as associated data.
///
/// The cookie value is `<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`, with a fresh
/// 192-bit random nonce at every seal (so sealing the same session twice gives different
/// values). Any change to any byte, a value moved to another cookie name, a key id not in the
/// ring: all are the same "no session", with no reason given.
///
/// Expiry is the server-side one: idle and absolute deadlines sealed inside, checked at every
/// load; the cookie is re-sealed only when the data changed or the touch interval passed
/// ([`tessera_core::Commit::Touched`]). A session too big for a cookie is an error at commit
/// ([`TokenError::TooLarge`]), never a truncated or dropped cookie.
///
/// Serve it through the same HTTP layer as server-side sessions (it implements
/// [`tessera_core::Engine`]); the cookie name given here must be the one the layer uses.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use tessera_core::{ClientInfo, Commit, Engine};
/// use tessera_token::{CookieEngine, CookieKey, KeyRing};
///
/// let engine = CookieEngine::new(KeyRing::new(CookieKey::generate("k1")?));
/// let mut session = engine.start(ClientInfo::default());
/// session.insert("theme", "dark")?;
/// assert_eq!(engine.commit(&mut session).await?, Commit::Created);
/// let cookie = session.issued_token().unwrap().to_owned();
///
/// let session = engine.load(&cookie).await?.expect("live");
/// assert_eq!(session.get::<String>("theme")?.as_deref(), Some("dark"));
/// # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct CookieEngine {
    core: Arc<Core<CookieCodec>>,
}

impl std::fmt::Debug for CookieEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieEngine")
            .field("cookie_name", &self.core.codec.name)
            .field("keys", &self.core.codec.keys.ids().collect::<Vec<_>>())
            .field("policy", &self.core.policy)
            .field("revocation", &self.core.revocation)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub(crate) struct CookieCodec {
    keys: KeyRing<CookieKey>,
    name: Box<str>,
    max_bytes: usize,
}

impl CookieEngine {
    /// An engine sealing with `keys`, for the cookie [`DEFAULT_COOKIE_NAME`], under the default
    /// [`Policy`](tessera_core::Policy), the system clock, and no revocation (see
    /// [`CookieEngine::with_revocation`]).
    pub fn new(keys: KeyRing<CookieKey>) -> Self {
        Self {
            core: Arc::new(Core::new(CookieCodec {
                keys,
                name: DEFAULT_COOKIE_NAME.into(),
                max_bytes: MAX_COOKIE_BYTES,
            })),
        }
    }

    /// The same engine for another cookie name. The name is bound into every seal: a value
    /// sealed for one name does not open under another.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidCookieName`] for an empty name or one that is not an RFC 6265 token.
    pub fn with_cookie_name(self, name: &str) -> Result<Self, KeyError> {
        if !is_cookie_name(name) {
            return Err(KeyError::InvalidCookieName);
        }
        Ok(self.edit(|core| core.codec.name = name.into()))
    }

    /// The same engine with another limit on `name=value` (default and most
    /// [`MAX_COOKIE_BYTES`]).
    pub fn with_max_cookie_bytes(self, max: usize) -> Self {
        self.edit(|core| core.codec.max_bytes = max.min(MAX_COOKIE_BYTES))
    }

    /// The cookie name seals are bound to.
    pub fn cookie_name(&self) -> &str {
        &self.core.codec.name
    }

    /// The key ring.
    pub fn keys(&self) -> &KeyRing<CookieKey> {
        &self.core.codec.keys
    }
}

stateless_engine!(CookieEngine, CookieCodec);

impl CookieCodec {
    fn aad(&self, kid: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(AAD_PREFIX.len() + self.name.len() + 1 + kid.len());
        aad.extend_from_slice(AAD_PREFIX);
        aad.extend_from_slice(self.name.as_bytes());
        aad.push(0);
        aad.extend_from_slice(kid.as_bytes());
        aad
    }

    fn seal_bytes(&self, plaintext: &[u8]) -> Result<String, TokenError> {
        let key = self.keys.primary();
        let kid = key.id().as_str();
        let sealed = key
            .seal(plaintext, &self.aad(kid))
            .map_err(|error| match error {
                SealError::Random(source) => TokenError::Random(source),
                SealError::Encrypt => TokenError::Encrypt,
            })?;
        let mut token = String::with_capacity(kid.len() + 1 + sealed.len() * 4 / 3 + 4);
        token.push_str(kid);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&sealed, &mut token);
        let size = self.name.len() + 1 + token.len();
        if size > self.max_bytes {
            return Err(TokenError::TooLarge {
                size,
                limit: self.max_bytes,
            });
        }
        Ok(token)
    }

    fn open_bytes(&self, token: &str) -> Option<Vec<u8>> {
        if self.name.len() + 1 + token.len() > self.max_bytes {
            return None;
        }
        let (kid, body) = token.split_once('.')?;
        let key = self.keys.get(kid)?;
        // Strict base64url: no padding, no other alphabet, canonical trailing bits.
        let sealed = URL_SAFE_NO_PAD.decode(body).ok()?;
        key.open(&sealed, &self.aad(kid))
    }
}

impl Codec for CookieCodec {
    fn seal(&self, record: &Record, _now: Timestamp) -> Result<String, TokenError> {
        self.seal_bytes(&record.encode())
    }

    fn open(&self, token: &str, _now: Timestamp) -> Option<Record> {
        let plaintext = self.open_bytes(token)?;
        // Authentic but undecodable can only mean a format from another version: no session.
        Record::decode(&plaintext).ok()
    }
}

/// An RFC 6265 cookie-name token: visible ASCII without separators.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(name: &str) -> CookieCodec {
        CookieCodec {
            keys: KeyRing::new(CookieKey::generate("k1").unwrap()),
            name: name.into(),
            max_bytes: MAX_COOKIE_BYTES,
        }
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let codec = codec("session");
        let token = codec.seal_bytes(&[42u8; 200]).unwrap();
        assert_eq!(codec.open_bytes(&token).unwrap(), [42u8; 200]);
        let bytes = token.as_bytes();
        let mut tried = 0;
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.to_vec();
                flipped[i] ^= 1 << bit;
                tried += 1;
                // A flip that makes the value invalid UTF-8 cannot even reach the engine.
                if let Ok(text) = std::str::from_utf8(&flipped) {
                    assert!(codec.open_bytes(text).is_none(), "byte {i} bit {bit}");
                }
            }
        }
        assert_eq!(tried, bytes.len() * 8);
    }

    #[test]
    fn cookie_names_are_checked() {
        assert!(is_cookie_name("__Host-session"));
        for bad in ["", "a b", "a=b", "a;b", "ä", "a\tb"] {
            assert!(!is_cookie_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn oversized_values_are_refused_before_decrypting() {
        let codec = codec("s");
        let token = codec.seal_bytes(b"x").unwrap();
        let padded = format!("{token}{}", "A".repeat(MAX_COOKIE_BYTES));
        assert!(codec.open_bytes(&padded).is_none());
        assert!(matches!(
            codec.seal_bytes(&[0u8; 3100]),
            Err(TokenError::TooLarge {
                limit: MAX_COOKIE_BYTES,
                ..
            })
        ));
    }
}
