//! Revocation of stateless tokens through any store: "log out everywhere" (valid after) and
//! the jti deny list, across re-seals, key rotation and instances.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{block_on, engines, issue, load, policy, revocation};
use tessera_core::{Commit, Engine, MemoryStore, Store};
use tessera_token::{CookieEngine, CookieKey, JwtEngine, JwtKey, KeyRing, Revocation};

/// Runs "log out everywhere" through whichever engine type this is.
async fn revoke_subject(engine: &Arc<dyn Engine>, store: &Arc<MemoryStore>, subject: &str) {
    // The engines expose it directly; through the trait object we use the same Revocation.
    let now = engine.now();
    Revocation::new(store.clone() as Arc<dyn Store>)
        .revoke_subject(subject, now, now.saturating_add(Duration::from_secs(7200)))
        .await
        .unwrap();
}

#[test]
fn a_token_issued_before_valid_after_fails_and_a_later_login_works() {
    block_on(async {
        for (name, engine, clock, store) in engines() {
            let alice = issue(&*engine, Some("alice")).await;
            let bob = issue(&*engine, Some("bob")).await;
            let anonymous = issue(&*engine, None).await;
            clock.advance(Duration::from_secs(5));
            revoke_subject(&engine, &store, "alice").await;
            assert!(load(&*engine, &alice).await.is_none(), "{name}");
            assert!(load(&*engine, &bob).await.is_some(), "{name}");
            assert!(load(&*engine, &anonymous).await.is_some(), "{name}");
            clock.advance(Duration::from_millis(1));
            let again = issue(&*engine, Some("alice")).await;
            assert!(load(&*engine, &again).await.is_some(), "{name}");
        }
    });
}

#[test]
fn touching_or_updating_does_not_launder_a_revoked_session() {
    block_on(async {
        for (name, engine, clock, store) in engines() {
            let token = issue(&*engine, Some("alice")).await;
            clock.advance(Duration::from_secs(120));
            let mut session = load(&*engine, &token).await.unwrap();
            assert_eq!(engine.commit(&mut session).await.unwrap(), Commit::Touched);
            let touched = session.issued_token().unwrap().to_owned();
            let mut session = load(&*engine, &touched).await.unwrap();
            session.insert("x", &1).unwrap();
            assert_eq!(engine.commit(&mut session).await.unwrap(), Commit::Updated);
            let updated = session.issued_token().unwrap().to_owned();

            clock.advance(Duration::from_secs(1));
            revoke_subject(&engine, &store, "alice").await;
            for t in [&token, &touched, &updated] {
                assert!(load(&*engine, t).await.is_none(), "{name}");
            }
        }
    });
}

#[test]
fn a_denied_jti_fails_until_expiry_including_every_re_encoding() {
    block_on(async {
        for (name, engine, clock, store) in engines() {
            let first = issue(&*engine, Some("alice")).await;
            clock.advance(Duration::from_secs(60));
            let mut session = load(&*engine, &first).await.unwrap();
            engine.commit(&mut session).await.unwrap();
            let second = session.issued_token().unwrap().to_owned();
            assert_ne!(first, second, "{name}: re-encoded");
            let mut session = load(&*engine, &second).await.unwrap();
            session.logout();
            assert_eq!(
                engine.commit(&mut session).await.unwrap(),
                Commit::Destroyed
            );
            assert!(load(&*engine, &first).await.is_none(), "{name}");
            assert!(load(&*engine, &second).await.is_none(), "{name}");

            // Past the token's absolute deadline the entry has expired and is purged.
            clock.advance(Duration::from_secs(3600));
            assert_eq!(
                store.purge_expired(engine.now(), 100).await.unwrap(),
                1,
                "{name}"
            );
            assert_eq!(store.len(), 0, "{name}");
        }
    });
}

#[test]
fn a_denied_cookie_fails_when_resealed_under_a_rotated_key() {
    block_on(async {
        let clock = common::clock();
        let store = Arc::new(MemoryStore::new());
        let old = CookieKey::generate("old").unwrap();
        let before = CookieEngine::new(KeyRing::new(old.clone()))
            .with_policy(policy())
            .with_clock(clock.clone())
            .with_revocation(revocation(store.clone()));
        let after = CookieEngine::new(
            KeyRing::new(CookieKey::generate("new").unwrap())
                .with_key(old)
                .unwrap(),
        )
        .with_policy(policy())
        .with_clock(clock.clone())
        .with_revocation(revocation(store.clone()));
        let token = issue(&before, Some("alice")).await;
        let mut session = load(&after, &token).await.unwrap();
        session.insert("x", &1).unwrap();
        after.commit(&mut session).await.unwrap();
        let resealed = session.issued_token().unwrap().to_owned();
        assert!(resealed.starts_with("new."));
        let mut session = load(&before, &token).await.unwrap();
        session.logout();
        before.commit(&mut session).await.unwrap();
        assert!(load(&after, &resealed).await.is_none());
    });
}

#[test]
fn a_denied_jwt_fails_when_re_encoded_with_the_same_claims() {
    block_on(async {
        let clock = common::clock();
        let store = Arc::new(MemoryStore::new());
        let secret: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(73) ^ 0xc5).collect();
        let engine = JwtEngine::new(KeyRing::new(JwtKey::hs256("hs", &secret).unwrap()))
            .unwrap()
            .with_policy(policy())
            .with_clock(clock.clone())
            .with_revocation(revocation(store.clone()));
        let token = issue(&engine, Some("alice")).await;
        // Re-encode: same claims, other JSON layout (pretty-printed), signed with the key.
        let segments: Vec<&str> = token.split('.').collect();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[1]).unwrap()).unwrap();
        let pretty = serde_json::to_string_pretty(&claims).unwrap();
        let input = format!("{}.{}", segments[0], URL_SAFE_NO_PAD.encode(pretty));
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&secret).unwrap();
        hmac::Mac::update(&mut mac, input.as_bytes());
        let tag = hmac::Mac::finalize(mac).into_bytes();
        let re_encoded = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag));
        assert_ne!(re_encoded, token);
        assert!(
            load(&engine, &re_encoded).await.is_some(),
            "the re-encoding is valid"
        );

        let mut session = load(&engine, &token).await.unwrap();
        session.logout();
        engine.commit(&mut session).await.unwrap();
        assert!(load(&engine, &token).await.is_none());
        assert!(load(&engine, &re_encoded).await.is_none());
    });
}

#[test]
fn engines_log_out_everywhere_and_other_instances_follow_within_the_staleness_window() {
    block_on(async {
        let clock = common::clock();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let key = CookieKey::generate("k").unwrap();
        let instance = |staleness: Duration| {
            CookieEngine::new(KeyRing::new(key.clone()))
                .with_policy(policy())
                .with_clock(clock.clone())
                .with_revocation(Revocation::new(store.clone()).with_staleness(staleness))
        };
        let a = instance(Duration::from_secs(2));
        let b = instance(Duration::from_secs(2));
        let token = issue(&a, Some("alice")).await;
        assert!(load(&b, &token).await.is_some(), "b caches 'not revoked'");
        clock.advance(Duration::from_millis(500));
        a.revoke_subject("alice").await.unwrap();
        assert!(
            load(&a, &token).await.is_none(),
            "the revoking instance: at once"
        );
        assert!(load(&b, &token).await.is_some(), "b: within its window");
        clock.advance(Duration::from_millis(1500));
        assert!(load(&b, &token).await.is_none(), "b: after its window");
        // With no cache at all, every request sees the store.
        let c = instance(Duration::ZERO);
        clock.advance(Duration::from_millis(1));
        let fresh = issue(&c, Some("bob")).await;
        assert!(load(&c, &fresh).await.is_some());
        // A token issued in the very millisecond of the revocation is not "before" it.
        b.revoke_subject("bob").await.unwrap();
        assert!(load(&c, &fresh).await.is_some());
        clock.advance(Duration::from_millis(1));
        b.revoke_subject("bob").await.unwrap();
        assert!(load(&c, &fresh).await.is_none());
    });
}

#[test]
fn revocation_entries_never_appear_as_sessions() {
    block_on(async {
        let (_, engine, clock, store) = engines().remove(0);
        let token = issue(&*engine, Some("alice")).await;
        let mut session = load(&*engine, &token).await.unwrap();
        session.logout();
        engine.commit(&mut session).await.unwrap();
        revoke_subject(&engine, &store, "alice").await;
        assert_eq!(store.len(), 2);
        let now = tessera_core::Clock::now(&clock);
        assert!(store.list_subject("alice", now).await.unwrap().is_empty());
    });
}
