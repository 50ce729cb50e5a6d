//! The JWT engine: the session as the claims of a compact JWS signed with EdDSA or HS256.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tessera_core::{ClientInfo, Data, Key, Record, Timestamp};

use crate::cookie::{DEFAULT_COOKIE_NAME, MAX_COOKIE_BYTES};
use crate::error::{KeyError, TokenError};
use crate::json::parse_strict;
use crate::jwt_key::{JWT_TYP, JwtKey};
use crate::lifecycle::{Codec, Core, jti, stateless_engine};
use crate::ring::KeyRing;

/// The longest header Tessera ever writes is under 100 bytes; anything much longer is refused
/// before it is decoded.
const MAX_HEADER_CHARS: usize = 512;

/// Stateless sessions as signed JWTs (RFC 7519, compact JWS), verifiable by other services
/// from the published public keys ([`KeyRing::jwks`]).
///
/// Every token has the header `{"alg", "typ": "session+jwt", "kid"}` and the claims `iss` and
/// `aud` (when configured), `sub` (when logged in), `iat`, `nbf`, `exp` (the session's
/// deadline, rounded up to the second), `jti` (the token line's id, the deny-list handle),
/// and `tsr`: the session itself (data, timestamps and exact deadlines in milliseconds, the
/// CSRF secret, the client info). JWT claims are **signed, not encrypted**: whoever holds the
/// token can read them. Use [`CookieEngine`](crate::CookieEngine) for data the client must not
/// see.
///
/// Verification refuses, with one generic "no session": more or fewer than three segments,
/// anything but strict base64url, a token over the size limit, duplicate JSON member names at
/// any depth, any header member besides `alg`, `typ` and `kid` (so `jwk`, `jku`, `x5u`, `x5c`,
/// `crit` are refused; no key is ever fetched), a `typ` other than `session+jwt`, a `kid` not
/// in the ring, an `alg` other than the one that key is pinned to (so `none` in any spelling
/// and HS256-signed-with-a-public-key fail), a bad signature, unknown claims, a missing or
/// passed `exp`, `nbf` or `iat` in the future beyond the leeway, an `iss` or `aud` other than
/// the configured ones, and (checked by the engine) a passed idle or absolute deadline or a
/// revoked token.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use tessera_core::{ClientInfo, Commit, Engine};
/// use tessera_token::{JwtEngine, JwtKey, KeyRing};
///
/// let engine = JwtEngine::new(KeyRing::new(JwtKey::generate_ed25519("ed-1")?))?
///     .with_issuer("https://auth.example")
///     .with_audience("shop");
/// let mut session = engine.start(ClientInfo::default());
/// session.login("alice");
/// assert_eq!(engine.commit(&mut session).await?, Commit::Created);
/// let jwt = session.issued_token().unwrap().to_owned();
///
/// let session = engine.load(&jwt).await?.expect("live");
/// assert_eq!(session.subject(), Some("alice"));
/// // The public keys, for services that verify on their own.
/// assert_eq!(engine.jwks()["keys"][0]["kid"], "ed-1");
/// # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct JwtEngine {
    core: Arc<Core<JwtCodec>>,
}

impl std::fmt::Debug for JwtEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let codec = &self.core.codec;
        f.debug_struct("JwtEngine")
            .field("keys", &codec.keys.keys().collect::<Vec<_>>())
            .field("issuer", &codec.issuer)
            .field("audience", &codec.audience)
            .field("leeway", &codec.leeway)
            .field("policy", &self.core.policy)
            .field("revocation", &self.core.revocation)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub(crate) struct JwtCodec {
    keys: KeyRing<JwtKey>,
    issuer: Option<Box<str>>,
    audience: Option<Box<str>>,
    leeway: Duration,
    max_bytes: usize,
    /// Tokens whose signature this ring already verified, keyed by the SHA-256 of the
    /// whole token, with their parsed claims. Only the signature check is skipped on a hit:
    /// every claim and deadline check runs again. `None` when disabled.
    memo: Option<Arc<Memo>>,
}

struct Memo {
    capacity: usize,
    verified: Mutex<HashMap<[u8; 32], Claims>>,
}

impl JwtEngine {
    /// An engine signing with the primary key of `keys`, with no `iss`/`aud`, a 30-second
    /// `nbf`/`iat` leeway, tokens that fit the default cookie, the default
    /// [`Policy`](tessera_core::Policy), the system clock and no revocation (see
    /// [`JwtEngine::with_revocation`]).
    ///
    /// # Errors
    ///
    /// [`KeyError::PrimaryCannotSign`] when the primary key is a verify-only public key.
    pub fn new(keys: KeyRing<JwtKey>) -> Result<Self, KeyError> {
        if !keys.primary().can_sign() {
            return Err(KeyError::PrimaryCannotSign(keys.primary().id().to_string()));
        }
        Ok(Self {
            core: Arc::new(Core::new(JwtCodec {
                keys,
                issuer: None,
                audience: None,
                leeway: Duration::from_secs(30),
                max_bytes: MAX_COOKIE_BYTES - DEFAULT_COOKIE_NAME.len() - 1,
                memo: Memo::new(DEFAULT_MEMO_CAPACITY),
            })),
        })
    }

    /// Tokens carry `iss` = `issuer`, and tokens with any other (or no) `iss` are refused.
    pub fn with_issuer(self, issuer: &str) -> Self {
        self.edit(|core| core.codec.issuer = Some(issuer.into()))
    }

    /// Tokens carry `aud` = `audience`, and tokens not addressed to it are refused.
    pub fn with_audience(self, audience: &str) -> Self {
        self.edit(|core| core.codec.audience = Some(audience.into()))
    }

    /// How far in the future `nbf` and `iat` may be (clock skew between instances); keep it
    /// small. `exp` and the session deadlines get no leeway.
    pub fn with_leeway(self, leeway: Duration) -> Self {
        self.edit(|core| core.codec.leeway = leeway)
    }

    /// The longest token issued or accepted, in bytes. The default keeps a token within a
    /// 4096-byte cookie named [`DEFAULT_COOKIE_NAME`].
    pub fn with_max_token_bytes(self, max: usize) -> Self {
        self.edit(|core| core.codec.max_bytes = max)
    }

    /// How many verified tokens to remember (default 4096; 0 turns the memo off).
    ///
    /// An Ed25519 verification costs tens of microseconds, and parsing the claims a few; a
    /// client sends the same token on every request until it is re-issued. The memo maps the
    /// SHA-256 of a whole token whose signature this engine's key ring verified to its parsed
    /// claims, so a repeated token skips only the signature check and the parse: `typ`, `kid`
    /// and `alg` were checked with the signature, and every claim, deadline and revocation
    /// check runs on every request. A token differing in any byte has another hash. Only
    /// tokens with a valid signature enter, so an attacker cannot fill it with forgeries; when
    /// full it is emptied.
    pub fn with_verified_token_memo(self, capacity: usize) -> Self {
        self.edit(|core| core.codec.memo = Memo::new(capacity))
    }

    /// The key ring.
    pub fn keys(&self) -> &KeyRing<JwtKey> {
        &self.core.codec.keys
    }

    /// The JWKS document of the public (Ed25519) keys: see [`KeyRing::jwks`].
    pub fn jwks(&self) -> Value {
        self.core.codec.keys.jwks()
    }
}

stateless_engine!(JwtEngine, JwtCodec);

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    exp: u64,
    jti: String,
    tsr: State,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The session inside the claims; times in milliseconds since the epoch.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    ver: u64,
    created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<u64>,
    seen: u64,
    idle: u64,
    abs: u64,
    csrf: String,
    data: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ua: Option<String>,
}

impl JwtCodec {
    fn claims(&self, record: &Record, now: Timestamp) -> Claims {
        let iat = now.as_millis() / 1000;
        Claims {
            iss: self.issuer.as_deref().map(str::to_owned),
            aud: self
                .audience
                .as_deref()
                .map(|a| Audience::One(a.to_owned())),
            sub: record.subject.as_deref().map(str::to_owned),
            iat,
            nbf: Some(iat),
            exp: record.deadline().as_millis().div_ceil(1000),
            jti: jti(record),
            tsr: State {
                ver: record.version,
                created: record.created_at.as_millis(),
                auth: record.authenticated_at.map(Timestamp::as_millis),
                seen: record.last_seen_at.as_millis(),
                idle: record.idle_deadline.as_millis(),
                abs: record.absolute_deadline.as_millis(),
                csrf: URL_SAFE_NO_PAD.encode(record.csrf_secret),
                data: record.data.to_json_object(),
                ip: record.client.ip.as_deref().map(str::to_owned),
                ua: record.client.user_agent.as_deref().map(str::to_owned),
            },
        }
    }

    /// Signs `claims` (already JSON) with `key`: the compact serialization.
    fn sign(&self, key: &JwtKey, claims: &[u8]) -> Result<String, TokenError> {
        let mut token = String::with_capacity(key.header().len() + claims.len() * 4 / 3 + 100);
        token.push_str(key.header());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let signature = key.sign(token.as_bytes()).ok_or(TokenError::Encrypt)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        if token.len() > self.max_bytes {
            return Err(TokenError::TooLarge {
                size: token.len(),
                limit: self.max_bytes,
            });
        }
        Ok(token)
    }

    /// The verified claims, or `None`. The signature is checked before the claims are parsed.
    fn verify(&self, token: &str, now: Timestamp) -> Option<Claims> {
        if token.len() > self.max_bytes {
            return None;
        }
        let digest: Option<[u8; 32]> = self
            .memo
            .as_ref()
            .map(|_| Sha256::digest(token.as_bytes()).into());
        if let (Some(memo), Some(digest)) = (&self.memo, &digest) {
            if let Some(claims) = memo.verified.lock().get(digest) {
                return self.check_claims(claims, now).then(|| claims.clone());
            }
        }
        let mut segments = token.split('.');
        let (header, payload, signature) = (segments.next()?, segments.next()?, segments.next()?);
        if segments.next().is_some() || header.len() > MAX_HEADER_CHARS {
            return None;
        }
        let key = self.header_key(header)?;
        let signing_input = &token[..header.len() + 1 + payload.len()];
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        if !key.verify(signing_input.as_bytes(), &signature) {
            return None;
        }
        let claims = parse_strict(&URL_SAFE_NO_PAD.decode(payload).ok()?)?;
        let claims: Claims = serde_json::from_value(claims).ok()?;
        if let (Some(memo), Some(digest)) = (&self.memo, digest) {
            memo.remember(digest, &claims);
        }
        self.check_claims(&claims, now).then_some(claims)
    }

    /// The key a header names, if the header is exactly what Tessera writes for that key.
    fn header_key(&self, header: &str) -> Option<&JwtKey> {
        let header = parse_strict(&URL_SAFE_NO_PAD.decode(header).ok()?)?;
        let header = header.as_object()?;
        // Exactly these three members: `jwk`, `jku`, `x5u`, `x5c`, `crit` and the rest are
        // refused, never followed.
        if header.len() != 3 {
            return None;
        }
        let alg = header.get("alg")?.as_str()?;
        let typ = header.get("typ")?.as_str()?;
        let kid = header.get("kid")?.as_str()?;
        if typ != JWT_TYP {
            return None;
        }
        let key = self.keys.get(kid)?;
        (alg == key.algorithm().name()).then_some(key)
    }

    fn check_claims(&self, claims: &Claims, now: Timestamp) -> bool {
        let now_ms = now.as_millis();
        let latest = now.saturating_add(self.leeway).as_millis();
        let seconds = |s: u64| s.saturating_mul(1000);
        if now_ms >= seconds(claims.exp) || seconds(claims.iat) > latest {
            return false;
        }
        if claims.nbf.is_some_and(|nbf| seconds(nbf) > latest) {
            return false;
        }
        let issuer_ok = claims.iss.as_deref() == self.issuer.as_deref();
        let audience_ok = match (&self.audience, &claims.aud) {
            (None, None) => true,
            (Some(ours), Some(Audience::One(theirs))) => **ours == **theirs,
            (Some(ours), Some(Audience::Many(theirs))) => theirs.iter().any(|a| **ours == **a),
            _ => false,
        };
        issuer_ok && audience_ok
    }
}

/// The memo size unless configured.
const DEFAULT_MEMO_CAPACITY: usize = 4096;

impl Memo {
    fn new(capacity: usize) -> Option<Arc<Self>> {
        (capacity > 0).then(|| {
            Arc::new(Self {
                capacity,
                verified: Mutex::new(HashMap::new()),
            })
        })
    }

    fn remember(&self, digest: [u8; 32], claims: &Claims) {
        let mut verified = self.verified.lock();
        if verified.len() >= self.capacity {
            verified.clear();
        }
        verified.insert(digest, claims.clone());
    }
}

impl Codec for JwtCodec {
    fn seal(&self, record: &Record, now: Timestamp) -> Result<String, TokenError> {
        let claims = serde_json::to_vec(&self.claims(record, now))
            .expect("claims of strings and numbers always serialize");
        self.sign(self.keys.primary(), &claims)
    }

    fn open(&self, token: &str, now: Timestamp) -> Option<Record> {
        let claims = self.verify(token, now)?;
        let key = Key::from_handle(&claims.jti)?;
        let mut csrf_secret = [0u8; 32];
        if URL_SAFE_NO_PAD
            .decode_slice(claims.tsr.csrf.as_bytes(), &mut csrf_secret)
            .ok()?
            != 32
        {
            return None;
        }
        let state = claims.tsr;
        Some(Record {
            key,
            subject: claims.sub.map(Into::into),
            data: Data::from_json_object(state.data),
            created_at: Timestamp::from_millis(state.created),
            authenticated_at: state.auth.map(Timestamp::from_millis),
            last_seen_at: Timestamp::from_millis(state.seen),
            idle_deadline: Timestamp::from_millis(state.idle),
            absolute_deadline: Timestamp::from_millis(state.abs),
            version: state.ver,
            csrf_secret,
            client: ClientInfo {
                ip: state.ip.map(Into::into),
                user_agent: state.ua.map(Into::into),
            },
        })
    }
}
