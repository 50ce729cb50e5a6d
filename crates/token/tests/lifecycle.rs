//! The session lifecycle on both stateless engines: the same commit results and the same
//! idle/absolute expiry as server-side sessions.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{block_on, engines, issue, load};
use tessera_core::{ClientInfo, Commit, Engine, Error, MemoryStore, StoreError};
use tessera_token::Revocation;

#[test]
fn an_empty_new_session_issues_nothing() {
    block_on(async {
        for (name, engine, _, _) in engines() {
            let mut session = engine.start(ClientInfo::default());
            assert_eq!(
                engine.commit(&mut session).await.unwrap(),
                Commit::Unchanged,
                "{name}"
            );
            assert!(session.issued_token().is_none(), "{name}");
            let mut session = engine.start(ClientInfo::default());
            session.logout();
            assert_eq!(
                engine.commit(&mut session).await.unwrap(),
                Commit::Unchanged,
                "{name}"
            );
        }
    });
}

#[test]
fn data_subject_and_csrf_secret_survive_the_round_trip() {
    block_on(async {
        for (name, engine, _, _) in engines() {
            let client = ClientInfo {
                ip: Some("192.0.2.7".into()),
                user_agent: Some("test/1".into()),
            };
            let mut session = engine.start(client.clone());
            session.insert("cart", &vec!["tea", "pear"]).unwrap();
            session
                .insert("nested", &serde_json::json!({"a": [1, {"b": null}]}))
                .unwrap();
            session.login("alice");
            let csrf = *session.csrf_secret();
            assert_eq!(engine.commit(&mut session).await.unwrap(), Commit::Created);
            let token = session.issued_token().unwrap().to_owned();
            assert!(!token.is_empty());

            let loaded = load(&*engine, &token).await.expect(name);
            assert_eq!(loaded.subject(), Some("alice"), "{name}");
            assert_eq!(loaded.csrf_secret(), &csrf, "{name}");
            assert_eq!(
                loaded.get::<Vec<String>>("cart").unwrap().unwrap(),
                ["tea", "pear"],
                "{name}"
            );
            assert_eq!(
                loaded.get::<serde_json::Value>("nested").unwrap().unwrap(),
                serde_json::json!({"a": [1, {"b": null}]})
            );
            assert_eq!(loaded.record().client, client, "{name}");
            assert_eq!(loaded.record(), session.record(), "{name}");
        }
    });
}

#[test]
fn reading_is_unchanged_and_touch_waits_for_the_interval() {
    block_on(async {
        for (name, engine, clock, _) in engines() {
            let token = issue(&*engine, Some("alice")).await;
            clock.advance(Duration::from_secs(59));
            let mut session = load(&*engine, &token).await.unwrap();
            assert_eq!(
                engine.commit(&mut session).await.unwrap(),
                Commit::Unchanged,
                "{name}"
            );
            assert!(session.issued_token().is_none(), "{name}");

            clock.advance(Duration::from_secs(1));
            let mut session = load(&*engine, &token).await.unwrap();
            let jti = session.record().key;
            assert!(session.touch_due(), "{name}");
            assert_eq!(
                engine.commit(&mut session).await.unwrap(),
                Commit::Touched,
                "{name}"
            );
            let touched = session.issued_token().unwrap().to_owned();
            assert_ne!(touched, token, "{name}");
            let again = load(&*engine, &touched).await.unwrap();
            assert_eq!(
                again.record().key,
                jti,
                "{name}: a touch keeps the token id"
            );
            assert_eq!(again.record().last_seen_at, engine.now(), "{name}");
            assert_eq!(
                again.record().idle_deadline,
                engine.now().saturating_add(Duration::from_secs(600)),
                "{name}"
            );
        }
    });
}

#[test]
fn idle_timeout_kills_an_untouched_token_and_touching_keeps_it_alive() {
    block_on(async {
        for (name, engine, clock, _) in engines() {
            let token = issue(&*engine, Some("alice")).await;
            clock.advance(Duration::from_secs(300));
            let mut session = load(&*engine, &token).await.unwrap();
            assert_eq!(engine.commit(&mut session).await.unwrap(), Commit::Touched);
            let touched = session.issued_token().unwrap().to_owned();

            clock.advance(Duration::from_secs(300));
            // 600 s after issue: the first token is dead, the touched one is not.
            assert!(load(&*engine, &token).await.is_none(), "{name}");
            assert!(load(&*engine, &touched).await.is_some(), "{name}");
            clock.advance(Duration::from_millis(299_999));
            assert!(load(&*engine, &touched).await.is_some(), "{name}");
            clock.advance(Duration::from_millis(1));
            assert!(load(&*engine, &touched).await.is_none(), "{name}");
        }
    });
}

#[test]
fn absolute_timeout_wins_over_activity() {
    block_on(async {
        for (name, engine, clock, _) in engines() {
            let mut token = issue(&*engine, Some("alice")).await;
            // Touch every 5 minutes: the idle deadline never passes, the absolute one does.
            for _ in 0..11 {
                clock.advance(Duration::from_secs(300));
                let mut session = load(&*engine, &token).await.expect(name);
                engine.commit(&mut session).await.unwrap();
                token = session.issued_token().unwrap().to_owned();
                assert!(session.record().idle_deadline <= session.record().absolute_deadline);
            }
            clock.advance(Duration::from_secs(299));
            assert!(load(&*engine, &token).await.is_some(), "{name}");
            clock.advance(Duration::from_secs(1));
            assert!(load(&*engine, &token).await.is_none(), "{name}");
        }
    });
}

#[test]
fn changed_data_is_resealed_with_the_same_token_id() {
    block_on(async {
        for (name, engine, _, _) in engines() {
            let token = issue(&*engine, None).await;
            let mut session = load(&*engine, &token).await.unwrap();
            let jti = session.record().key;
            session
                .update("n", |n: Option<u32>| Some(n.unwrap_or(0) + 1))
                .unwrap();
            assert_eq!(
                engine.commit(&mut session).await.unwrap(),
                Commit::Updated,
                "{name}"
            );
            let updated = session.issued_token().unwrap().to_owned();
            let session = load(&*engine, &updated).await.unwrap();
            assert_eq!(session.get::<u32>("n").unwrap(), Some(2), "{name}");
            assert_eq!(session.record().key, jti, "{name}");
            assert_eq!(session.record().version, 2, "{name}");
        }
    });
}

#[test]
fn login_rotates_the_token_line_and_kills_the_old_one() {
    block_on(async {
        for (name, engine, clock, _) in engines() {
            let anonymous = issue(&*engine, None).await;
            clock.advance(Duration::from_secs(120));
            let mut session = load(&*engine, &anonymous).await.unwrap();
            let old_jti = session.record().key;
            let old_csrf = *session.csrf_secret();
            let old_absolute = session.record().absolute_deadline;
            session.login("alice");
            assert_eq!(
                engine.commit(&mut session).await.unwrap(),
                Commit::Rotated,
                "{name}"
            );
            let token = session.issued_token().unwrap().to_owned();
            let session = load(&*engine, &token).await.unwrap();
            assert_eq!(session.subject(), Some("alice"));
            assert_ne!(session.record().key, old_jti, "{name}: new token id");
            assert_ne!(session.csrf_secret(), &old_csrf, "{name}: new CSRF secret");
            assert_eq!(
                session.get::<u32>("n").unwrap(),
                Some(1),
                "{name}: data carried"
            );
            assert_eq!(session.record().created_at, engine.now());
            assert_eq!(session.record().authenticated_at, Some(engine.now()));
            assert!(session.record().absolute_deadline > old_absolute, "{name}");
            assert!(
                load(&*engine, &anonymous).await.is_none(),
                "{name}: old line denied"
            );

            // A plain rotation keeps the absolute deadline.
            clock.advance(Duration::from_secs(120));
            let mut session = load(&*engine, &token).await.unwrap();
            let absolute = session.record().absolute_deadline;
            session.rotate();
            assert_eq!(engine.commit(&mut session).await.unwrap(), Commit::Rotated);
            assert_eq!(session.record().absolute_deadline, absolute, "{name}");
            assert!(load(&*engine, &token).await.is_none(), "{name}");
        }
    });
}

#[test]
fn logout_destroys_and_denies_every_copy() {
    block_on(async {
        for (name, engine, _, _) in engines() {
            let token = issue(&*engine, Some("alice")).await;
            let mut session = load(&*engine, &token).await.unwrap();
            session.logout();
            assert_eq!(
                engine.commit(&mut session).await.unwrap(),
                Commit::Destroyed
            );
            assert!(session.is_gone());
            assert!(session.issued_token().is_none());
            assert!(load(&*engine, &token).await.is_none(), "{name}");
        }
    });
}

#[test]
fn without_revocation_a_logout_only_clears_the_client() {
    block_on(async {
        let clock = common::clock();
        let engine = common::cookie_engine(&clock);
        let token = issue(&engine, None).await;
        let mut session = load(&engine, &token).await.unwrap();
        session.logout();
        assert_eq!(
            engine.commit(&mut session).await.unwrap(),
            Commit::Destroyed
        );
        // Documented: a copy stays valid until it expires.
        assert!(load(&engine, &token).await.is_some());
        assert!(matches!(
            engine.revoke_subject("alice").await,
            Err(Error::Store(StoreError::Unsupported { .. }))
        ));
    });
}

#[test]
fn a_session_too_big_for_a_cookie_is_an_error_the_app_sees() {
    block_on(async {
        for (name, engine, _, _) in engines() {
            let mut session = engine.start(ClientInfo::default());
            session.insert("blob", &"x".repeat(3000)).unwrap();
            let error = engine.commit(&mut session).await.unwrap_err();
            let tessera_core::Error::TooLarge { size, limit } = error else {
                panic!("{name}: {error:?}");
            };
            assert!(!error.is_outage(), "{name}: not a 503");
            assert!(size > limit && limit <= 4096, "{name}");
            assert!(session.issued_token().is_none(), "{name}");
            // A session that fits is fine.
            let mut session = engine.start(ClientInfo::default());
            session.insert("blob", &"x".repeat(1500)).unwrap();
            assert_eq!(engine.commit(&mut session).await.unwrap(), Commit::Created);
            assert!(session.issued_token().unwrap().len() <= 4096);
        }
    });
}

#[test]
fn a_revocation_store_outage_fails_the_request_instead_of_dropping_the_session() {
    block_on(async {
        let clock = common::clock();
        let healthy = Arc::new(MemoryStore::new());
        let up = common::cookie_engine(&clock).with_revocation(common::revocation(healthy));
        let token = issue(&up, Some("alice")).await;
        let down = up
            .clone()
            .with_revocation(Revocation::new(Arc::new(common::DownStore)));
        let error = down.load(&token).await.unwrap_err();
        assert!(error.is_outage(), "{error:?}");
        // Logout cannot be reported done when the deny list could not be written.
        let mut session = up.load(&token).await.unwrap().unwrap();
        session.logout();
        assert!(down.commit(&mut session).await.unwrap_err().is_outage());
    });
}

#[test]
fn garbage_is_no_session() {
    block_on(async {
        for (name, engine, _, _) in engines() {
            let token = issue(&*engine, None).await;
            let cases = [
                String::new(),
                ".".into(),
                "..".into(),
                "c1.".into(),
                "ed1..".into(),
                format!("{token}."),
                format!(".{token}"),
                format!("{token} "),
                token[..token.len() - 1].to_owned(),
                token.replace('.', ""),
                "A".repeat(100 * 1024),
                "\u{0}".repeat(10),
            ];
            for case in cases {
                assert!(load(&*engine, &case).await.is_none(), "{name}: {case:.40}");
            }
        }
    });
}
