//! Keys for encrypted cookies (XChaCha20-Poly1305).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use subtle::ConstantTimeEq;

use crate::error::KeyError;
use crate::material::{KeyId, check_material, decode_base64, random};

/// XChaCha20-Poly1305 key length.
const KEY_BYTES: usize = 32;
/// XChaCha20-Poly1305 nonce length: 192 bits, so random nonces never repeat in practice.
pub(crate) const NONCE_BYTES: usize = 24;
/// Poly1305 tag length.
pub(crate) const TAG_BYTES: usize = 16;

/// One 256-bit XChaCha20-Poly1305 key with its id, for [`CookieEngine`](crate::CookieEngine).
///
/// `Debug` shows the id only.
///
/// # Example
///
/// ```
/// use tessera_token::CookieKey;
///
/// let key = CookieKey::generate("k1")?;
/// // Persist it (a secret: keep it in your secret store, never in a log) and load it back.
/// let text = key.expose_base64();
/// let again = CookieKey::from_base64("k1", &text)?;
/// assert_eq!(again.id().as_str(), "k1");
/// // Passphrases are refused.
/// assert!(CookieKey::from_bytes("k2", b"my secret cookie password 123456").is_err());
/// # Ok::<_, tessera_token::KeyError>(())
/// ```
#[derive(Clone)]
pub struct CookieKey {
    id: KeyId,
    bytes: [u8; KEY_BYTES],
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl CookieKey {
    /// A fresh key from the OS CSPRNG.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidId`]; [`KeyError::Random`] if the OS has no randomness to give.
    pub fn generate(id: &str) -> Result<Self, KeyError> {
        let bytes = random::<KEY_BYTES>().map_err(KeyError::Random)?;
        Self::from_bytes(id, &bytes)
    }

    /// A key from 32 raw bytes that came from a CSPRNG (or a KDF).
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidId`]; [`KeyError::TooShort`] / [`KeyError::WrongLength`] unless
    /// exactly 32 bytes; [`KeyError::LowEntropy`] for text or patterned bytes.
    pub fn from_bytes(id: &str, bytes: &[u8]) -> Result<Self, KeyError> {
        let id = KeyId::new(id)?;
        check_material(bytes, KEY_BYTES)?;
        let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| KeyError::WrongLength {
            len: bytes.len(),
            expected: KEY_BYTES,
        })?;
        let cipher = XChaCha20Poly1305::new(&bytes.into());
        Ok(Self { id, bytes, cipher })
    }

    /// A key from its base64 text (standard or URL-safe alphabet).
    ///
    /// # Errors
    ///
    /// [`KeyError::Base64`], and as [`CookieKey::from_bytes`].
    pub fn from_base64(id: &str, text: &str) -> Result<Self, KeyError> {
        Self::from_bytes(id, &decode_base64(text)?)
    }

    /// The key in base64url, to persist a generated key. This is the secret itself.
    pub fn expose_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.bytes)
    }

    /// The key's id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub(crate) fn same_material(&self, other: &Self) -> bool {
        bool::from(self.bytes.ct_eq(&other.bytes))
    }

    /// `nonce ‖ ciphertext ‖ tag`, with a fresh random nonce.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = random::<NONCE_BYTES>().map_err(SealError::Random)?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plaintext of `nonce ‖ ciphertext ‖ tag`, or `None` for anything not sealed by this
    /// key under this associated data.
    pub(crate) fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES + TAG_BYTES {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
            .ok()
    }
}

/// Why sealing failed (mapped to [`TokenError`](crate::TokenError) by the engine).
pub(crate) enum SealError {
    Random(getrandom::Error),
    Encrypt,
}
