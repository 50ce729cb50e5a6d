//! Encrypted cookies: tamper, name binding, fresh nonces, key rotation, key strength.

mod common;

use common::{block_on, clock, issue, load, policy};
use tessera_core::Engine;
use tessera_token::{CookieEngine, CookieKey, KeyError, KeyRing};

#[test]
fn every_single_bit_flip_over_a_sealed_cookie_fails() {
    block_on(async {
        let clock = clock();
        let engine = common::cookie_engine(&clock);
        let token = issue(&engine, Some("alice")).await;
        assert!(load(&engine, &token).await.is_some());
        let mut checked = 0;
        for i in 0..token.len() {
            for bit in 0..8 {
                let mut bytes = token.clone().into_bytes();
                bytes[i] ^= 1 << bit;
                if let Ok(text) = String::from_utf8(bytes) {
                    assert!(load(&engine, &text).await.is_none(), "byte {i} bit {bit}");
                    checked += 1;
                }
            }
        }
        // Flips to non-ASCII bytes are not strings at all; everything else was tried.
        assert!(checked >= token.len() * 7, "{checked}");
    });
}

#[test]
fn the_same_data_sealed_twice_differs() {
    block_on(async {
        let clock = clock();
        let engine = common::cookie_engine(&clock);
        let token = issue(&engine, None).await;
        // Two re-seals of one session at the same instant, same data, same token id.
        let mut tokens = Vec::new();
        for _ in 0..2 {
            let mut session = load(&engine, &token).await.unwrap();
            session.insert("n", &7).unwrap();
            engine.commit(&mut session).await.unwrap();
            let sealed = session.issued_token().unwrap().to_owned();
            tokens.push((sealed, session.record().clone()));
        }
        assert_eq!(tokens[0].1, tokens[1].1, "same record");
        assert_ne!(tokens[0].0, tokens[1].0, "different ciphertext");
    });
}

#[test]
fn a_cookie_from_name_a_fails_under_name_b() {
    block_on(async {
        let clock = clock();
        let key = CookieKey::generate("k1").unwrap();
        let a = CookieEngine::new(KeyRing::new(key.clone()))
            .with_cookie_name("a")
            .unwrap()
            .with_clock(clock.clone());
        let b = CookieEngine::new(KeyRing::new(key))
            .with_cookie_name("b")
            .unwrap()
            .with_clock(clock.clone());
        let token = issue(&a, None).await;
        assert!(load(&a, &token).await.is_some());
        assert!(load(&b, &token).await.is_none());
        assert!(matches!(
            CookieEngine::new(KeyRing::new(CookieKey::generate("k").unwrap()))
                .with_cookie_name("bad name"),
            Err(KeyError::InvalidCookieName)
        ));
    });
}

#[test]
fn key_rotation_old_key_opens_removed_key_does_not() {
    block_on(async {
        let clock = clock();
        let old = CookieKey::generate("2026-10").unwrap();
        let new = CookieKey::generate("2026-11").unwrap();
        let before = CookieEngine::new(KeyRing::new(old.clone()))
            .with_policy(policy())
            .with_clock(clock.clone());
        let during = CookieEngine::new(KeyRing::new(new.clone()).with_key(old).unwrap())
            .with_policy(policy())
            .with_clock(clock.clone());
        let after = CookieEngine::new(KeyRing::new(new))
            .with_policy(policy())
            .with_clock(clock.clone());

        let sealed_old = issue(&before, None).await;
        assert!(sealed_old.starts_with("2026-10."));
        // During rotation: the old cookie opens, and a change re-seals it under the new key.
        let mut session = load(&during, &sealed_old)
            .await
            .expect("old key still opens");
        session.insert("n", &2).unwrap();
        during.commit(&mut session).await.unwrap();
        let resealed = session.issued_token().unwrap().to_owned();
        assert!(resealed.starts_with("2026-11."));
        let sealed_new = issue(&during, None).await;
        assert!(sealed_new.starts_with("2026-11."));
        // After removal: only cookies of the new key open.
        assert!(load(&after, &sealed_old).await.is_none());
        assert!(load(&after, &resealed).await.is_some());
        assert!(load(&after, &sealed_new).await.is_some());
        // A cookie relabelled with another key id of the ring fails too.
        let relabelled = sealed_old.replacen("2026-10", "2026-11", 1);
        assert!(load(&during, &relabelled).await.is_none());
    });
}

#[test]
fn rings_refuse_duplicate_ids_and_material() {
    let key = CookieKey::generate("k1").unwrap();
    let same_id = CookieKey::generate("k1").unwrap();
    let same_material = CookieKey::from_base64("k2", &key.expose_base64()).unwrap();
    assert!(matches!(
        KeyRing::new(key.clone()).with_key(same_id),
        Err(KeyError::DuplicateId(_))
    ));
    assert!(matches!(
        KeyRing::new(key).with_key(same_material),
        Err(KeyError::DuplicateMaterial(_))
    ));
}

#[test]
fn short_and_passphrase_keys_are_refused_at_start() {
    assert!(matches!(
        CookieKey::from_bytes("k", &[0x9c; 16]),
        Err(KeyError::TooShort { .. })
    ));
    assert!(matches!(
        CookieKey::from_bytes("k", b"hunter2hunter2hunter2hunter2hunt"),
        Err(KeyError::LowEntropy(_))
    ));
    // 48 random bytes are not an XChaCha20-Poly1305 key either.
    let long: Vec<u8> = (0..48u32).map(|i| (i * 37 + 11) as u8 ^ 0xa5).collect();
    assert!(matches!(
        CookieKey::from_bytes("k", &long),
        Err(KeyError::WrongLength {
            len: 48,
            expected: 32
        })
    ));
    assert!(matches!(
        CookieKey::from_bytes(
            "../k",
            &CookieKey::generate("x")
                .unwrap()
                .expose_base64()
                .into_bytes()
        ),
        Err(KeyError::InvalidId)
    ));
    // Base64 text passed as raw bytes is caught; decoded, it is fine.
    let text = CookieKey::generate("x").unwrap().expose_base64();
    assert!(CookieKey::from_bytes("k", &text.as_bytes()[..32]).is_err());
    assert!(CookieKey::from_base64("k", &text).is_ok());
    // Debug never shows the key.
    let key = CookieKey::from_base64("k", &text).unwrap();
    assert!(!format!("{key:?}").contains(&text[..8]));
}

#[test]
fn the_engine_works_through_the_engine_trait_object() {
    block_on(async {
        let clock = clock();
        let engine: std::sync::Arc<dyn Engine> = std::sync::Arc::new(common::cookie_engine(&clock));
        let token = issue(&*engine, Some("bob")).await;
        assert_eq!(load(&*engine, &token).await.unwrap().subject(), Some("bob"));
        assert_eq!(engine.policy(), &policy());
    });
}
