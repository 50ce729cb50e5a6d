//! Key rings: the primary key seals or signs new tokens; older keys still open or verify
//! tokens until they are removed from the ring.

use crate::cookie_key::CookieKey;
use crate::error::KeyError;
use crate::jwt_key::JwtKey;
use crate::material::KeyId;

/// A set of keys for one token kind ([`CookieKey`] or [`JwtKey`]): the first, *primary*, key
/// seals or signs every new token; every key in the ring opens or verifies tokens that name
/// its id. Rotation is: put a new key first and keep the old one in the ring while tokens
/// sealed with it may still be alive (at most the absolute timeout); then drop it, and its
/// tokens stop working.
///
/// Rings are immutable: to rotate at run time, build a new engine with the new ring (cheap).
///
/// # Example
///
/// ```
/// use tessera_token::{CookieKey, KeyRing};
///
/// let old = CookieKey::generate("2026-10")?;
/// let new = CookieKey::generate("2026-11")?;
/// let ring = KeyRing::new(new).with_key(old)?;
/// assert_eq!(ring.primary().id().as_str(), "2026-11");
/// assert!(ring.get("2026-10").is_some());
/// # Ok::<_, tessera_token::KeyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct KeyRing<K> {
    /// `keys[0]` is the primary. Rings hold a handful of keys: a linear scan is fastest.
    keys: Vec<K>,
}

/// A key that can sit in a [`KeyRing`]: [`CookieKey`] or [`JwtKey`] (sealed: no other types).
pub trait RingKey: sealed::Sealed {
    /// The key's id.
    fn id(&self) -> &KeyId;
}

mod sealed {
    /// Keeps [`RingKey`](super::RingKey) to this crate's key types.
    #[allow(unreachable_pub)]
    pub trait Sealed {
        fn same_material(&self, other: &Self) -> bool;
    }
}

macro_rules! ring_key {
    ($key:ty) => {
        impl RingKey for $key {
            fn id(&self) -> &KeyId {
                <$key>::id(self)
            }
        }

        impl sealed::Sealed for $key {
            fn same_material(&self, other: &Self) -> bool {
                <$key>::same_material(self, other)
            }
        }
    };
}

ring_key!(CookieKey);
ring_key!(JwtKey);

impl<K: RingKey> KeyRing<K> {
    /// A ring with one key, the primary.
    pub fn new(primary: K) -> Self {
        Self {
            keys: vec![primary],
        }
    }

    /// Adds an older key that still opens or verifies tokens but seals or signs none.
    ///
    /// # Errors
    ///
    /// [`KeyError::DuplicateId`] if the ring has a key with this id already;
    /// [`KeyError::DuplicateMaterial`] if it holds the same key material under another id.
    pub fn with_key(mut self, older: K) -> Result<Self, KeyError> {
        for key in &self.keys {
            if key.id() == older.id() {
                return Err(KeyError::DuplicateId(older.id().to_string()));
            }
            if sealed::Sealed::same_material(key, &older) {
                return Err(KeyError::DuplicateMaterial(older.id().to_string()));
            }
        }
        self.keys.push(older);
        Ok(self)
    }

    /// The key new tokens are sealed or signed with.
    pub fn primary(&self) -> &K {
        &self.keys[0]
    }

    /// The key with this id, if the ring holds it. Ids are looked up, never used as paths or
    /// URLs.
    pub fn get(&self, id: &str) -> Option<&K> {
        self.keys.iter().find(|k| k.id().as_str() == id)
    }

    /// The ids of all keys, primary first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|k| k.id())
    }

    /// All keys, primary first.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.keys.iter()
    }
}
