//! Revocation kept in the SQLite store: the same records as in memory, through the same
//! `Store` contract.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{block_on, issue, load, policy};
use tessera_core::{Commit, Engine, Store};
use tessera_sqlite::SqliteStore;
use tessera_token::{CookieEngine, CookieKey, JwtEngine, JwtKey, KeyRing, Revocation};

#[test]
fn logout_and_log_out_everywhere_through_sqlite() {
    block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let clock = common::clock();
        let revocation = Revocation::new(store.clone()).with_staleness(Duration::ZERO);
        let cookie = CookieEngine::new(KeyRing::new(CookieKey::generate("c").unwrap()))
            .with_policy(policy())
            .with_clock(clock.clone())
            .with_revocation(revocation.clone());
        let jwt = JwtEngine::new(KeyRing::new(JwtKey::generate_ed25519("e").unwrap()))
            .unwrap()
            .with_policy(policy())
            .with_clock(clock.clone())
            .with_revocation(revocation.clone());
        let engines: [Arc<dyn Engine>; 2] = [Arc::new(cookie.clone()), Arc::new(jwt)];

        for engine in &engines {
            let token = issue(&**engine, Some("alice")).await;
            let mut session = load(&**engine, &token).await.unwrap();
            session.logout();
            assert_eq!(
                engine.commit(&mut session).await.unwrap(),
                Commit::Destroyed
            );
            assert!(load(&**engine, &token).await.is_none());
        }

        let cookie_token = issue(&cookie, Some("bob")).await;
        let other = issue(&cookie, Some("carol")).await;
        clock.advance(Duration::from_millis(1));
        cookie.revoke_subject("bob").await.unwrap();
        assert!(load(&cookie, &cookie_token).await.is_none());
        assert!(load(&cookie, &other).await.is_some());
        assert!(
            store
                .list_subject("bob", engines[0].now())
                .await
                .unwrap()
                .is_empty()
        );

        // A deny entry that expired but was not purged yet does not block a new one.
        let now = engines[0].now();
        revocation
            .deny("jti-x", now.saturating_add(Duration::from_secs(1)), now)
            .await
            .unwrap();
        clock.advance(Duration::from_secs(2));
        let later = engines[0].now();
        assert!(!revocation.is_denied("jti-x", later).await.unwrap());
        revocation
            .deny(
                "jti-x",
                later.saturating_add(Duration::from_secs(60)),
                later,
            )
            .await
            .unwrap();
        assert!(revocation.is_denied("jti-x", later).await.unwrap());
    });
}
