//! Property tests: arbitrary input never panics and never yields a session, and arbitrary
//! session data survives the round trip through both token kinds.

mod common;

use common::{block_on, clock, issue, load};
use proptest::prelude::*;
use tessera_core::{ClientInfo, Engine};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_strings_are_no_session(text in ".{0,300}", dotted in "[A-Za-z0-9_.-]{0,300}") {
        let clock = clock();
        let engines: [Box<dyn Engine>; 2] = [
            Box::new(common::cookie_engine(&clock)),
            Box::new(common::jwt_engine(&clock)),
        ];
        for engine in &engines {
            prop_assert!(block_on(load(&**engine, &text)).is_none());
            prop_assert!(block_on(load(&**engine, &dotted)).is_none());
        }
    }

    #[test]
    fn splicing_two_genuine_tokens_is_no_session(cut_a in 0usize..400, cut_b in 0usize..400) {
        let clock = clock();
        let engines: [Box<dyn Engine>; 2] = [
            Box::new(common::cookie_engine(&clock)),
            Box::new(common::jwt_engine(&clock)),
        ];
        for engine in &engines {
            let a = block_on(issue(&**engine, Some("alice")));
            let b = block_on(issue(&**engine, Some("bob")));
            let (cut_a, cut_b) = (cut_a.min(a.len()), cut_b.min(b.len()));
            let spliced = format!("{}{}", &a[..cut_a], &b[cut_b..]);
            if spliced != a && spliced != b {
                prop_assert!(block_on(load(&**engine, &spliced)).is_none());
            }
        }
    }

    #[test]
    fn arbitrary_data_round_trips(entries in proptest::collection::btree_map("[a-z]{1,8}", any::<i64>(), 0..8), text in "\\PC{0,40}") {
        let clock = clock();
        let engines: [Box<dyn Engine>; 2] = [
            Box::new(common::cookie_engine(&clock)),
            Box::new(common::jwt_engine(&clock)),
        ];
        for engine in &engines {
            let mut session = engine.start(ClientInfo::default());
            for (k, v) in &entries {
                session.insert(k, v).unwrap();
            }
            session.insert("text", &text).unwrap();
            block_on(engine.commit(&mut session)).unwrap();
            let token = session.issued_token().unwrap().to_owned();
            let loaded = block_on(load(&**engine, &token)).unwrap();
            prop_assert_eq!(loaded.record(), session.record());
        }
    }
}
