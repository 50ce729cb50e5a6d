//! Helpers shared by the integration tests: engines on a manual clock, a store that is down.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tessera_core::{
    ClientInfo, Commit, Engine, Key, ManualClock, MemoryStore, Policy, Record, Session, Store,
    StoreError, Timestamp,
};
use tessera_token::{CookieEngine, CookieKey, JwtEngine, JwtKey, KeyRing, Revocation};

/// A round second, so JWT second-granularity claims line up with millisecond deadlines.
pub const T0: u64 = 1_800_000_000_000;

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

pub fn policy() -> Policy {
    Policy::default()
        .idle_timeout(Duration::from_secs(600))
        .absolute_timeout(Duration::from_secs(3600))
        .touch_interval(Duration::from_secs(60))
}

pub fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_millis(T0))
}

pub fn revocation(store: Arc<dyn Store>) -> Revocation {
    Revocation::new(store).with_staleness(Duration::ZERO)
}

pub fn cookie_engine(clock: &ManualClock) -> CookieEngine {
    CookieEngine::new(KeyRing::new(CookieKey::generate("c1").unwrap()))
        .with_policy(policy())
        .with_clock(clock.clone())
}

pub fn jwt_engine(clock: &ManualClock) -> JwtEngine {
    JwtEngine::new(KeyRing::new(JwtKey::generate_ed25519("ed1").unwrap()))
        .unwrap()
        .with_policy(policy())
        .with_clock(clock.clone())
}

/// A named engine with its clock and its revocation store.
pub type Fixture = (&'static str, Arc<dyn Engine>, ManualClock, Arc<MemoryStore>);

/// One engine of each stateless kind (cookie, JWT EdDSA, JWT HS256), each on its own manual
/// clock, all with revocation in one memory store.
pub fn engines() -> Vec<Fixture> {
    let mut out: Vec<Fixture> = Vec::new();
    let clock = self::clock();
    let store = Arc::new(MemoryStore::new());
    let engine = cookie_engine(&clock).with_revocation(revocation(store.clone()));
    out.push(("cookie", Arc::new(engine), clock, store));
    let clock = self::clock();
    let store = Arc::new(MemoryStore::new());
    let engine = jwt_engine(&clock).with_revocation(revocation(store.clone()));
    out.push(("jwt-eddsa", Arc::new(engine), clock, store));
    let clock = self::clock();
    let store = Arc::new(MemoryStore::new());
    let engine = JwtEngine::new(KeyRing::new(JwtKey::generate_hs256("hs1").unwrap()))
        .unwrap()
        .with_policy(policy())
        .with_clock(clock.clone())
        .with_revocation(revocation(store.clone()));
    out.push(("jwt-hs256", Arc::new(engine), clock, store));
    out
}

/// Commits a new session holding `subject` (if any) and `n = 1`; returns its token.
pub async fn issue(engine: &dyn Engine, subject: Option<&str>) -> String {
    let mut session = engine.start(ClientInfo::default());
    session.insert("n", &1).unwrap();
    if let Some(subject) = subject {
        session.login(subject);
    }
    assert_eq!(engine.commit(&mut session).await.unwrap(), Commit::Created);
    session
        .issued_token()
        .expect("a new session issues a token")
        .to_owned()
}

pub async fn load(engine: &dyn Engine, token: &str) -> Option<Session> {
    engine.load(token).await.expect("no store outage")
}

/// A store whose server is down: every operation fails with `Unavailable`.
pub struct DownStore;

fn down() -> StoreError {
    StoreError::unavailable(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "store down",
    ))
}

#[async_trait]
impl Store for DownStore {
    fn name(&self) -> &'static str {
        "down"
    }
    async fn create(&self, _: &Record) -> Result<(), StoreError> {
        Err(down())
    }
    async fn load(&self, _: &Key, _: Timestamp) -> Result<Option<Record>, StoreError> {
        Err(down())
    }
    async fn update(&self, _: &Record, _: u64, _: Timestamp) -> Result<(), StoreError> {
        Err(down())
    }
    async fn touch(&self, _: &Key, _: Timestamp, _: Timestamp) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn delete(&self, _: &Key) -> Result<(), StoreError> {
        Err(down())
    }
    async fn rotate(&self, _: &Key, _: u64, _: &Record, _: Timestamp) -> Result<(), StoreError> {
        Err(down())
    }
    async fn list_subject(&self, _: &str, _: Timestamp) -> Result<Vec<Record>, StoreError> {
        Err(down())
    }
    async fn delete_subject(
        &self,
        _: &str,
        _: Option<&Key>,
        _: Timestamp,
    ) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn purge_expired(&self, _: Timestamp, _: usize) -> Result<u64, StoreError> {
        Err(down())
    }
}
