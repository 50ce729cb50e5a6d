//! Error types: building keys and engines, and sealing tokens.

/// A key, key ring or engine setting was refused. Raised at start-up, so a weak or malformed
/// key never reaches production traffic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is shorter than the algorithm needs (256 bits for every Tessera key).
    #[error("the key has {len} bytes; at least {min} bytes (256 bits) are required")]
    TooShort {
        /// The key's length in bytes.
        len: usize,
        /// The least accepted.
        min: usize,
    },
    /// The key has the wrong length for its algorithm (an Ed25519 seed or public key is exactly
    /// 32 bytes; an XChaCha20-Poly1305 key is exactly 32 bytes).
    #[error("the key has {len} bytes; exactly {expected} are required")]
    WrongLength {
        /// The key's length in bytes.
        len: usize,
        /// The length the algorithm needs.
        expected: usize,
    },
    /// The key looks like a passphrase, text or a repeated pattern rather than bytes from a
    /// CSPRNG. Generate keys with the `generate` constructors, and pass raw bytes (decode
    /// base64 first, or use the `*_base64` constructors).
    #[error("the key looks like {0}, not like random bytes from a CSPRNG")]
    LowEntropy(&'static str),
    /// The base64 text of a key did not decode.
    #[error("the key is not valid base64")]
    Base64(#[source] base64::DecodeError),
    /// An Ed25519 public key that is not a valid (or is a weak, small-order) curve point.
    #[error("the Ed25519 public key is invalid or weak")]
    InvalidPublicKey(#[source] ed25519_dalek::SignatureError),
    /// A key id that is empty, longer than 32 characters, or not made of `A-Z a-z 0-9 - _`.
    #[error("key ids are 1 to 32 characters of A-Z, a-z, 0-9, '-' and '_'")]
    InvalidId,
    /// Two keys in one ring share an id.
    #[error("two keys in the ring have the id {0:?}")]
    DuplicateId(String),
    /// The same key material appears twice in one ring under different ids.
    #[error("the key {0:?} repeats the material of another key in the ring")]
    DuplicateMaterial(String),
    /// The primary key of a JWT ring can only verify (it has no private or secret part).
    #[error("the primary key {0:?} cannot sign")]
    PrimaryCannotSign(String),
    /// A cookie name that is empty or not an RFC 6265 token.
    #[error("the cookie name is empty or has characters a cookie name cannot have")]
    InvalidCookieName,
    /// The OS random number generator failed.
    #[error("the OS random number generator failed")]
    Random(#[source] getrandom::Error),
}

/// Sealing or signing a token failed.
///
/// Inside [`Engine::commit`](tessera_core::Engine::commit), [`TokenError::TooLarge`] reaches the
/// application as [`tessera_core::Error::TooLarge`], [`TokenError::Random`] as
/// [`tessera_core::Error::Random`], and the rest as [`tessera_core::Error::Store`] with
/// [`tessera_core::StoreError::Backend`] wrapping this error (the client is the "store" of a
/// stateless session): find it with `std::error::Error::source` and
/// `downcast_ref::<TokenError>()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token would not fit in a cookie: browsers keep at most 4096 bytes of
    /// `name=value`, and silently drop bigger cookies. Keep less in the session.
    #[error("the session token needs {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The bytes the cookie (or token) would need.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The AEAD refused to encrypt (only for inputs far beyond any cookie size).
    #[error("encrypting the session failed")]
    Encrypt,
    /// The OS random number generator failed.
    #[error("the OS random number generator failed")]
    Random(#[source] getrandom::Error),
}

impl From<TokenError> for tessera_core::Error {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Random(source) => Self::Random(source),
            TokenError::TooLarge { size, limit } => Self::TooLarge { size, limit },
            other => Self::Store(tessera_core::StoreError::backend(other)),
        }
    }
}
