//! Scaffolding for tests against a real server: a store that cleans up after the test, and the
//! skip-or-fail rule for a server that is down.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::{BoxError, StoreError};
use crate::id::Key;
use crate::record::Record;
use crate::store::{Capabilities, Store};
use crate::time::Timestamp;

type Cleanup = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A store for one test, with a cleanup (a table to drop, keys to delete) that runs when it is
/// dropped, so repeated runs leave nothing behind. Every [`Store`] call goes to the wrapped
/// store unchanged.
///
/// The cleanup runs on a thread and runtime of its own, so dropping inside a runtime is fine;
/// a failed cleanup is reported on stderr, not raised.
pub struct Scoped<S: ?Sized> {
    /// Behind a mutex only so that the wrapper is `Sync`, as a store must be; just `drop` takes
    /// it.
    cleanup: Mutex<Option<Cleanup>>,
    inner: S,
}

impl<S: Store> Scoped<S> {
    /// Wraps `inner`; `cleanup` runs (once) when the wrapper is dropped.
    pub fn new<F, E>(inner: S, cleanup: F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        Self {
            inner,
            cleanup: Mutex::new(Some(Box::pin(
                async move { cleanup.await.map_err(Into::into) },
            ))),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for Scoped<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The wrapped store's own methods (a `migrate`, say) are reachable through the wrapper.
impl<S: ?Sized> std::ops::Deref for Scoped<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.inner
    }
}

impl<S: ?Sized> Drop for Scoped<S> {
    fn drop(&mut self) {
        let cleanup = match self.cleanup.get_mut() {
            Ok(cleanup) => cleanup.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let Some(cleanup) = cleanup else {
            return;
        };
        // Drop may run inside a runtime, so the cleanup gets a thread and runtime of its own.
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(cleanup)
        })
        .join();
        if let Ok(Err(error)) = done {
            eprintln!("could not clean up after the test: {error}");
        }
    }
}

crate::store::forward_store!(Scoped<S>);

/// Whether every store server is required (`TESSERA_REQUIRE_STORES=1`, as in CI) rather than
/// skipped when it is down.
pub fn stores_required() -> bool {
    std::env::var("TESSERA_REQUIRE_STORES").is_ok_and(|v| v == "1")
}

/// The skip-or-fail rule for a store server that is down, applied to the result of connecting
/// to it: the store if connecting worked; `None` if the server is unavailable (after saying
/// which test is skipped, with the error and its causes, on the real stderr, past libtest's
/// capture, so that a skipped suite is visible in a plain `cargo test`).
///
/// `server` names it (`"PostgreSQL"`), `url` says where it was looked for.
///
/// # Panics
///
/// If the server is unavailable under `TESSERA_REQUIRE_STORES=1` (see [`stores_required`]), or
/// connecting failed for another reason (bad settings are the test's fault, not the server's).
pub fn store_or_skip<S>(server: &str, url: &str, connected: Result<S, StoreError>) -> Option<S> {
    let error = match connected {
        Ok(store) => return Some(store),
        Err(StoreError::Unavailable(error)) => error,
        Err(error) => panic!("connecting to {server} failed: {error:?}"),
    };
    assert!(
        !stores_required(),
        "{server} at {url} is required (TESSERA_REQUIRE_STORES=1) but unavailable: {error}"
    );
    let line = format!(
        "skipped {server} store test: server at {url} unavailable: {}",
        error_chain(&*error)
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    None
}

/// An error with its causes, `outer: inner: ...`, for a message or a check of what an error
/// says all the way down.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
