//! What the Redis store leaves on the server: native expiry on every record, subject indexes
//! that expire with their members and are pruned lazily (with a grace period) and by the
//! bounded sweep of `purge_expired`, and ownership checks in "log out everywhere". Runs against
//! 127.0.0.1:6379; skipped if it is down.

use std::time::Duration;

use redis::AsyncCommands;
use sha2::{Digest, Sha256};
use tessera_core::testing::fresh_record;
use tessera_core::{Key, SessionId, Store, StoreError, Timestamp};
use tessera_redis::{RedisOptions, RedisStore};

const URL: &str = "redis://127.0.0.1:6379";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn session_name(prefix: &str, key: &Key) -> String {
    format!("{prefix}:{{{}}}:r2", hex(key.as_bytes()))
}

fn subject_name(prefix: &str, subject: &str) -> String {
    format!(
        "{prefix}:{{{}}}:s",
        hex(&Sha256::digest(subject.as_bytes())[..16])
    )
}

fn unique(name: &str) -> String {
    format!(
        "{name}_{}",
        SessionId::generate().key().short().to_lowercase()
    )
}

async fn open(
    prefix: &str,
    options: RedisOptions,
) -> Option<(RedisStore, redis::aio::MultiplexedConnection)> {
    let required = std::env::var("TESSERA_REQUIRE_STORES").is_ok_and(|v| v == "1");
    match RedisStore::connect_with(URL, options.key_prefix(prefix)).await {
        Ok(store) => {
            let raw = redis::Client::open(URL)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            Some((store, raw))
        }
        Err(error @ StoreError::Unavailable(_)) if !required => {
            eprintln!("skipping the Redis layout tests: {URL} unreachable ({error:?})");
            None
        }
        Err(error) => panic!("Redis at {URL} is required but unusable: {error:?}"),
    }
}

async fn expire_time(raw: &mut redis::aio::MultiplexedConnection, name: &str) -> i64 {
    redis::cmd("PEXPIRETIME")
        .arg(name)
        .query_async(raw)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_record_expires_natively_at_its_earlier_deadline() {
    let prefix = unique("t_layout_expiry");
    let Some((store, mut raw)) = open(&prefix, RedisOptions::default()).await else {
        return;
    };
    let record = fresh_record(Some("alice"));
    store.create(&record).await.unwrap();
    let name = session_name(&prefix, &record.key);
    assert_eq!(
        expire_time(&mut raw, &name).await,
        record.idle_deadline.as_millis() as i64
    );

    // One string: a fixed-width text header (version, idle and absolute deadlines, last seen,
    // subject), then the record.
    let kind: String = redis::cmd("TYPE")
        .arg(&name)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(kind, "string");
    let stored: Vec<u8> = raw.get(&name).await.unwrap();
    let header = format!(
        "{:020}{:015}{:015}{:015}1{:05}alice",
        record.version,
        record.idle_deadline.as_millis(),
        record.absolute_deadline.as_millis(),
        record.last_seen_at.as_millis(),
        5
    );
    assert_eq!(&stored[..header.len()], header.as_bytes());
    assert_eq!(&stored[header.len()..], record.encode().as_slice());

    let now = Timestamp::now();
    let later = now.saturating_add(Duration::from_secs(90 * 60));
    assert!(store.touch(&record.key, later, now).await.unwrap());
    assert_eq!(expire_time(&mut raw, &name).await, later.as_millis() as i64);
    // The touch patched the header in place and left the record bytes alone.
    let touched: Vec<u8> = raw.get(&name).await.unwrap();
    assert_eq!(
        &touched[20..65],
        format!(
            "{:015}{:015}{:015}",
            later.as_millis(),
            record.absolute_deadline.as_millis(),
            now.as_millis()
        )
        .as_bytes()
    );
    assert_eq!(&touched[65..], &stored[65..]);

    // Past the absolute deadline the touch is capped, and so is the server's expiry.
    let way_later = record
        .absolute_deadline
        .saturating_add(Duration::from_secs(3600));
    assert!(store.touch(&record.key, way_later, now).await.unwrap());
    assert_eq!(
        expire_time(&mut raw, &name).await,
        record.absolute_deadline.as_millis() as i64
    );

    // The subject index lives at least as long as its longest-lived member can.
    let index = subject_name(&prefix, "alice");
    assert!(expire_time(&mut raw, &index).await >= record.absolute_deadline.as_millis() as i64);
}

#[tokio::test]
async fn the_subject_index_is_pruned_lazily_after_the_grace_period() {
    let prefix = unique("t_layout_prune");
    // Default grace: a member whose record is gone stays for a while (a create may be in flight).
    let Some((store, mut raw)) = open(&prefix, RedisOptions::default()).await else {
        return;
    };
    let index = subject_name(&prefix, "alice");
    let record = fresh_record(Some("alice"));
    store.create(&record).await.unwrap();
    store.delete(&record.key).await.unwrap();
    assert!(
        store
            .list_subject("alice", Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );
    let members: u64 = raw.zcard(&index).await.unwrap();
    assert_eq!(members, 1);

    // No grace: the same list drops it.
    let Some((eager, _)) = open(&prefix, RedisOptions::default().index_grace(Duration::ZERO)).await
    else {
        return;
    };
    assert!(
        eager
            .list_subject("alice", Timestamp::now())
            .await
            .unwrap()
            .is_empty()
    );
    let members: u64 = raw.zcard(&index).await.unwrap();
    assert_eq!(members, 0);
}

#[tokio::test]
async fn logging_out_everywhere_spares_a_session_now_owned_by_someone_else() {
    let prefix = unique("t_layout_owner");
    let Some((store, _raw)) = open(&prefix, RedisOptions::default()).await else {
        return;
    };
    let now = Timestamp::now();
    let record = fresh_record(Some("alice"));
    store.create(&record).await.unwrap();
    let mut bobs = record.clone();
    bobs.subject = Some("bob".into());
    bobs.version = 2;
    store.update(&bobs, 1, now).await.unwrap();

    // Still in alice's index (pruned lazily), but not alice's any more.
    assert_eq!(store.delete_subject("alice", None, now).await.unwrap(), 0);
    assert_eq!(
        store.load(&record.key, now).await.unwrap(),
        Some(bobs.clone())
    );
    assert_eq!(store.list_subject("bob", now).await.unwrap(), vec![bobs]);
    assert_eq!(store.delete_subject("bob", None, now).await.unwrap(), 1);
    assert!(store.load(&record.key, now).await.unwrap().is_none());
}

#[tokio::test]
async fn a_damaged_record_loads_as_absent_not_as_an_error() {
    let prefix = unique("t_layout_damaged");
    let Some((store, mut raw)) = open(&prefix, RedisOptions::default()).await else {
        return;
    };
    let record = fresh_record(None);
    store.create(&record).await.unwrap();
    let name = session_name(&prefix, &record.key);
    // The record after the header (no subject: it starts at byte 71) overwritten.
    let _: i64 = raw
        .setrange(&name, 71, b"\x01garbage".as_slice())
        .await
        .unwrap();
    assert!(
        store
            .load(&record.key, Timestamp::now())
            .await
            .unwrap()
            .is_none()
    );
    let _: () = raw.del(&name).await.unwrap();
}

#[tokio::test]
async fn purging_sweeps_subject_indexes_in_bounded_steps() {
    let prefix = unique("t_layout_sweep");
    let options = RedisOptions::default().index_grace(Duration::ZERO);
    let Some((store, mut raw)) = open(&prefix, options).await else {
        return;
    };
    let index = subject_name(&prefix, "alice");
    let gone = fresh_record(Some("alice"));
    let kept = fresh_record(Some("alice"));
    store.create(&gone).await.unwrap();
    store.create(&kept).await.unwrap();
    store.delete(&gone.key).await.unwrap();
    // Each call looks at a bounded slice of the keyspace; the sweep goes round until it has
    // seen the index (bounded: the database holds far fewer than 10 000 000 keys).
    let mut calls = 0;
    loop {
        assert_eq!(
            store.purge_expired(Timestamp::now(), 1000).await.unwrap(),
            0
        );
        calls += 1;
        let members: u64 = raw.zcard(&index).await.unwrap();
        if members == 1 {
            break;
        }
        assert!(calls < 10_000, "the sweep never reached the index");
    }
    let listed = store.list_subject("alice", Timestamp::now()).await.unwrap();
    assert_eq!(listed, vec![kept]);
}
