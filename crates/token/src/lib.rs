//! Stateless sessions for Tessera: the session travels with the client, in an **encrypted
//! cookie** ([`CookieEngine`]) or a **signed JWT** ([`JwtEngine`]), so loading it needs no
//! store lookup, and yet it can be **revoked** ([`Revocation`]): a per-subject "valid after"
//! time ("log out everywhere") and a deny list of token ids, both kept in any Tessera store.
//!
//! Both engines implement [`tessera_core::Engine`], like the server-side
//! [`Sessions`](tessera_core::Sessions), so the HTTP layer and the handlers are the same for all
//! three and an application switches between them by configuration.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tessera_core::{ClientInfo, Commit, Engine, MemoryStore, Policy};
//! use tessera_token::{CookieEngine, CookieKey, KeyRing, Revocation};
//!
//! let revocation = Revocation::new(Arc::new(MemoryStore::new()));
//! let engine: Arc<dyn Engine> = Arc::new(
//!     CookieEngine::new(KeyRing::new(CookieKey::generate("2026-11")?))
//!         .with_policy(Policy::default().idle_timeout(Duration::from_secs(30 * 60)))
//!         .with_revocation(revocation),
//! );
//!
//! // Log in: the cookie value to send is the issued token.
//! let mut session = engine.start(ClientInfo::default());
//! session.login("alice");
//! session.insert("cart", &["tea"])?;
//! assert_eq!(engine.commit(&mut session).await?, Commit::Created);
//! let cookie = session.issued_token().unwrap().to_owned();
//!
//! // Next request: no store read for the session itself (only the revocation check, cached).
//! let mut session = engine.load(&cookie).await?.expect("live");
//! assert_eq!(session.subject(), Some("alice"));
//!
//! // Logout puts the token id on the deny list: a copy of the cookie is dead too.
//! session.logout();
//! assert_eq!(engine.commit(&mut session).await?, Commit::Destroyed);
//! assert!(engine.load(&cookie).await?.is_none());
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! A whole app that runs the same axum handlers on server-side, encrypted-cookie or JWT
//! sessions by a command-line flag: `examples/switch.rs`
//! (`cargo run -p tessera-token --example switch -- jwt`); its scripted check runs as a test.
//!
//! # Feature flags
//!
//! None: both engines are always built; they share almost all their code.
//!
//! # Design
//!
//! - **Same lifecycle as server-side sessions.** The idle and absolute deadlines are inside
//!   the sealed or signed token and checked on every load; the token is re-issued only when
//!   the data changed ([`Commit::Updated`](tessera_core::Commit::Updated)) or the touch
//!   interval passed ([`Commit::Touched`](tessera_core::Commit::Touched)); login and rotation
//!   start a new token line with a new `jti` and CSRF secret
//!   ([`Commit::Rotated`](tessera_core::Commit::Rotated)), and the old line is denied.
//!   Concurrent requests cannot be merged as the store's compare-and-swap merges them: the
//!   client keeps whichever token it received last.
//! - **Revocation in any store, no new store operations.** Deny-list entries and "valid
//!   after" times are ordinary records under domain-separated SHA-256 keys, expiring with the
//!   tokens they revoke; see [`Revocation`] for the cache and its staleness window. A token
//!   line keeps its `jti` and its issue time across re-seals, so revoking it also kills every
//!   re-encoded copy, and touching a revoked session cannot launder it.
//! - **One rejection.** A forged, altered, truncated, expired, revoked, misdirected or
//!   oversized token is `Ok(None)`, "no session", whatever the reason. Only store outages
//!   are errors (the request fails, it never continues without its session).
//! - **Key rings** ([`KeyRing`]): every token names its key id; the primary key seals or
//!   signs, older keys open or verify until removed. Keys are 256 bits from a CSPRNG; short,
//!   text-like (passphrases, undecoded hex/base64) or patterned keys are refused at start
//!   ([`KeyError`]).
//! - **JWT verification is memoized** per engine ([`JwtEngine::with_verified_token_memo`]):
//!   a repeated token skips only the signature check (tens of microseconds for Ed25519) and
//!   the parse, never a claim, deadline or revocation check.
//! - **Size limit is an error.** A session that does not fit a 4096-byte cookie fails the
//!   commit with [`tessera_core::Error::TooLarge`] (from [`TokenError::TooLarge`]), never a
//!   truncated cookie.
//!
//! # Which crates, and why
//!
//! - [`chacha20poly1305`] (RustCrypto) for the cookie AEAD: XChaCha20-Poly1305's 192-bit
//!   nonces can be drawn at random for every seal with no practical risk of reuse, it is
//!   constant-time in software on every CPU (AES-GCM needs AES-NI for that), and the crate
//!   was audited (NCC Group, 2020). Version 0.10 shares `digest`/`sha2` 0.10 with the rest of
//!   the workspace, so nothing compiles twice.
//! - [`ed25519_dalek`] 2 (EdDSA; `verify_strict` refuses malleable signatures and weak keys)
//!   and [`hmac`] + [`sha2`] (HS256, constant-time tag check): audited, widely used
//!   primitives. Tessera writes no signature code of its own.
//! - The JWS compact framing around them is ours, on purpose: it is a few lines of strict
//!   parsing (exactly three segments, strict base64url, exact header members, duplicate JSON
//!   member names refused at any depth, typed claims with unknown members refused), and
//!   `jsonwebtoken` would still need a pre-parser for duplicate members and for the
//!   `jwk`/`jku`/`x5u`/`x5c` headers, while its current release needs Rust 1.88 (the workspace
//!   supports 1.85) and a choice of crypto backend.
//! - [`subtle`] for constant-time comparison of key material; [`getrandom`] for every key,
//!   nonce, token id and CSRF secret.
//!
//! # What is not here
//!
//! - A JWT payload is readable by whoever holds the token (signed, not encrypted); use the
//!   encrypted cookie for data the client must not see.
//! - Device lists (`list_subject`) do not exist for stateless sessions: nobody keeps a list of
//!   the tokens out there. "Log out everywhere" works through the "valid after" time.

mod cookie;
mod cookie_key;
mod error;
mod json;
mod jwt;
mod jwt_key;
mod lifecycle;
mod material;
mod revocation;
mod ring;

pub use cookie::{CookieEngine, DEFAULT_COOKIE_NAME, MAX_COOKIE_BYTES};
pub use cookie_key::CookieKey;
pub use error::{KeyError, TokenError};
pub use jwt::JwtEngine;
pub use jwt_key::{Algorithm, JWT_TYP, JwtKey};
pub use material::{KeyId, MIN_KEY_BYTES};
pub use revocation::Revocation;
pub use ring::{KeyRing, RingKey};
