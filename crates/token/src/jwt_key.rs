//! Keys for JWTs: Ed25519 (EdDSA) and HMAC-SHA256 (HS256), each pinned to its algorithm.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::KeyError;
use crate::material::{KeyId, MIN_KEY_BYTES, check_material, decode_base64, random};

/// The JOSE `typ` every Tessera session JWT carries (RFC 8725 §3.11 explicit typing), so a
/// token of another kind signed with the same key is never taken for a session.
pub const JWT_TYP: &str = "session+jwt";

/// The signature algorithm a [`JwtKey`] is pinned to. A token is verified only with the
/// algorithm of the key its `kid` names; the `alg` header must match it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Ed25519 signatures (`alg` `EdDSA`, RFC 8037): public keys can be published (JWKS), so
    /// other services verify tokens without being able to mint them.
    EdDsa,
    /// HMAC-SHA256 (`alg` `HS256`) with a secret of at least 256 bits: only holders of the
    /// secret can verify, and they can also mint.
    Hs256,
}

impl Algorithm {
    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Hs256 => "HS256",
        }
    }
}

/// One JWT key with its id (`kid`) and its pinned [`Algorithm`].
///
/// `Debug` shows the id and algorithm only.
///
/// # Example
///
/// ```
/// use tessera_token::{Algorithm, JwtKey};
///
/// let ed = JwtKey::generate_ed25519("ed-1")?;
/// assert_eq!(ed.algorithm(), Algorithm::EdDsa);
/// // Another service gets only the public half: it can verify, not sign.
/// let public = JwtKey::ed25519_public("ed-1", &ed.public_key().unwrap())?;
/// assert!(!public.can_sign());
/// // HS256 secrets under 256 bits are refused.
/// assert!(JwtKey::hs256("hs-1", &[0x5a; 16]).is_err());
/// # Ok::<_, tessera_token::KeyError>(())
/// ```
#[derive(Clone)]
pub struct JwtKey {
    id: KeyId,
    kind: Kind,
    /// The base64url JOSE header this key signs with, made once.
    header: String,
}

#[derive(Clone)]
enum Kind {
    Ed25519 {
        signing: Option<Box<SigningKey>>,
        verifying: VerifyingKey,
    },
    Hs256 {
        secret: Box<[u8]>,
        mac: Hmac<Sha256>,
    },
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm())
            .field("can_sign", &self.can_sign())
            .finish_non_exhaustive()
    }
}

impl JwtKey {
    /// A fresh Ed25519 key pair from the OS CSPRNG.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidId`]; [`KeyError::Random`].
    pub fn generate_ed25519(id: &str) -> Result<Self, KeyError> {
        let seed = random::<32>().map_err(KeyError::Random)?;
        Self::ed25519_from_seed(id, &seed)
    }

    /// An Ed25519 key pair from its 32-byte secret seed.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidId`]; [`KeyError::WrongLength`] unless 32 bytes;
    /// [`KeyError::LowEntropy`] for text or patterned bytes.
    pub fn ed25519_from_seed(id: &str, seed: &[u8]) -> Result<Self, KeyError> {
        let id = KeyId::new(id)?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| KeyError::WrongLength {
            len: seed.len(),
            expected: 32,
        })?;
        check_material(&seed, MIN_KEY_BYTES)?;
        let signing = SigningKey::from_bytes(&seed);
        let verifying = signing.verifying_key();
        Ok(Self::build(
            id,
            Kind::Ed25519 {
                signing: Some(Box::new(signing)),
                verifying,
            },
        ))
    }

    /// An Ed25519 seed from base64 (standard or URL-safe).
    ///
    /// # Errors
    ///
    /// [`KeyError::Base64`], and as [`JwtKey::ed25519_from_seed`].
    pub fn ed25519_from_base64(id: &str, seed: &str) -> Result<Self, KeyError> {
        Self::ed25519_from_seed(id, &decode_base64(seed)?)
    }

    /// A verify-only Ed25519 key from its 32-byte public key (for example from another
    /// service's JWKS, or a retired key whose seed was destroyed).
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidId`]; [`KeyError::WrongLength`]; [`KeyError::InvalidPublicKey`]
    /// for bytes that are not a curve point, or a weak (small-order) one.
    pub fn ed25519_public(id: &str, public: &[u8]) -> Result<Self, KeyError> {
        let id = KeyId::new(id)?;
        let public: [u8; 32] = public.try_into().map_err(|_| KeyError::WrongLength {
            len: public.len(),
            expected: 32,
        })?;
        let verifying = VerifyingKey::from_bytes(&public).map_err(KeyError::InvalidPublicKey)?;
        if verifying.is_weak() {
            return Err(KeyError::InvalidPublicKey(
                ed25519_dalek::SignatureError::new(),
            ));
        }
        Ok(Self::build(
            id,
            Kind::Ed25519 {
                signing: None,
                verifying,
            },
        ))
    }

    /// A fresh 256-bit HS256 secret from the OS CSPRNG.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidId`]; [`KeyError::Random`].
    pub fn generate_hs256(id: &str) -> Result<Self, KeyError> {
        let secret = random::<32>().map_err(KeyError::Random)?;
        Self::hs256(id, &secret)
    }

    /// An HS256 key from a secret of at least 32 raw bytes from a CSPRNG.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidId`]; [`KeyError::TooShort`] under 32 bytes;
    /// [`KeyError::LowEntropy`] for passphrases, undecoded text and patterned bytes.
    pub fn hs256(id: &str, secret: &[u8]) -> Result<Self, KeyError> {
        let id = KeyId::new(id)?;
        check_material(secret, MIN_KEY_BYTES)?;
        let mac =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
        Ok(Self::build(
            id,
            Kind::Hs256 {
                secret: secret.into(),
                mac,
            },
        ))
    }

    /// An HS256 secret from base64 (standard or URL-safe).
    ///
    /// # Errors
    ///
    /// [`KeyError::Base64`], and as [`JwtKey::hs256`].
    pub fn hs256_from_base64(id: &str, secret: &str) -> Result<Self, KeyError> {
        Self::hs256(id, &decode_base64(secret)?)
    }

    fn build(id: KeyId, kind: Kind) -> Self {
        let algorithm = match kind {
            Kind::Ed25519 { .. } => Algorithm::EdDsa,
            Kind::Hs256 { .. } => Algorithm::Hs256,
        };
        let header = serde_json::json!({
            "alg": algorithm.name(),
            "typ": JWT_TYP,
            "kid": id.as_str(),
        });
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        Self { id, kind, header }
    }

    /// The key's id (`kid`).
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The algorithm the key is pinned to.
    pub fn algorithm(&self) -> Algorithm {
        match self.kind {
            Kind::Ed25519 { .. } => Algorithm::EdDsa,
            Kind::Hs256 { .. } => Algorithm::Hs256,
        }
    }

    /// Whether the key can sign (false for a verify-only Ed25519 public key).
    pub fn can_sign(&self) -> bool {
        match &self.kind {
            Kind::Ed25519 { signing, .. } => signing.is_some(),
            Kind::Hs256 { .. } => true,
        }
    }

    /// The Ed25519 public key (not secret), `None` for HS256.
    pub fn public_key(&self) -> Option<[u8; 32]> {
        match &self.kind {
            Kind::Ed25519 { verifying, .. } => Some(verifying.to_bytes()),
            Kind::Hs256 { .. } => None,
        }
    }

    /// The secret in base64url, to persist a generated key: the Ed25519 seed or the HS256
    /// secret. `None` for a verify-only key. This is the secret itself.
    pub fn expose_secret_base64(&self) -> Option<String> {
        match &self.kind {
            Kind::Ed25519 { signing, .. } => signing
                .as_ref()
                .map(|s| URL_SAFE_NO_PAD.encode(s.to_bytes())),
            Kind::Hs256 { secret, .. } => Some(URL_SAFE_NO_PAD.encode(secret)),
        }
    }

    /// The JWK of the public key (RFC 8037), `None` for HS256 (a shared secret is never
    /// published).
    pub fn to_jwk(&self) -> Option<serde_json::Value> {
        self.public_key().map(|public| {
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(public),
                "kid": self.id.as_str(),
                "alg": Algorithm::EdDsa.name(),
                "use": "sig",
            })
        })
    }

    pub(crate) fn header(&self) -> &str {
        &self.header
    }

    pub(crate) fn same_material(&self, other: &Self) -> bool {
        match (&self.kind, &other.kind) {
            (Kind::Ed25519 { verifying: a, .. }, Kind::Ed25519 { verifying: b, .. }) => {
                bool::from(a.as_bytes().ct_eq(b.as_bytes()))
            }
            (Kind::Hs256 { secret: a, .. }, Kind::Hs256 { secret: b, .. }) => {
                bool::from(a.ct_eq(b))
            }
            _ => false,
        }
    }

    /// The signature over `signing_input`, `None` for a verify-only key.
    pub(crate) fn sign(&self, signing_input: &[u8]) -> Option<Vec<u8>> {
        match &self.kind {
            Kind::Ed25519 { signing, .. } => signing
                .as_ref()
                .map(|s| s.sign(signing_input).to_bytes().to_vec()),
            Kind::Hs256 { mac, .. } => {
                let mut mac = mac.clone();
                mac.update(signing_input);
                Some(mac.finalize().into_bytes().to_vec())
            }
        }
    }

    /// Verifies with the audited primitives: `verify_strict` for Ed25519 (rejects
    /// non-canonical and small-order signatures and keys), a constant-time tag comparison for
    /// HMAC.
    pub(crate) fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match &self.kind {
            Kind::Ed25519 { verifying, .. } => {
                let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
                    return false;
                };
                verifying
                    .verify_strict(signing_input, &Signature::from_bytes(&bytes))
                    .is_ok()
            }
            Kind::Hs256 { mac, .. } => {
                let mut mac = mac.clone();
                mac.update(signing_input);
                mac.verify_slice(signature).is_ok()
            }
        }
    }
}

impl crate::ring::KeyRing<JwtKey> {
    /// The JWKS document (RFC 7517) of the ring's public keys, primary first, so other
    /// services can verify session JWTs on their own. HS256 keys are never included.
    ///
    /// # Example
    ///
    /// ```
    /// use tessera_token::{JwtKey, KeyRing};
    ///
    /// let ring = KeyRing::new(JwtKey::generate_ed25519("ed-2")?)
    ///     .with_key(JwtKey::generate_hs256("hs-1")?)?;
    /// let jwks = ring.jwks();
    /// assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    /// assert_eq!(jwks["keys"][0]["kid"], "ed-2");
    /// # Ok::<_, tessera_token::KeyError>(())
    /// ```
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self.keys().filter_map(JwtKey::to_jwk).collect();
        serde_json::json!({ "keys": keys })
    }
}
