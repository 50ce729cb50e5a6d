//! The per-request session handle: loads lazily, on first use, and is committed by the layer
//! after the handler returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tessera_core::{
    ClientInfo, Commit, Engine, Key, Loading, Record, Session as CoreSession, SessionId, Timestamp,
};

use crate::csrf::{self, CsrfFailure, Verdict};
use crate::rejection::SessionRejection;

/// The raw client details of a request (cheap to keep: the header value is reference-counted).
pub(crate) struct ClientSource {
    pub(crate) user_agent: Option<http::HeaderValue>,
    pub(crate) ip: Option<std::net::IpAddr>,
}

impl ClientSource {
    fn info(&self) -> ClientInfo {
        const MAX_USER_AGENT: usize = 256;
        let user_agent = self
            .user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(|ua| {
                let mut end = ua.len().min(MAX_USER_AGENT);
                while !ua.is_char_boundary(end) {
                    end -= 1;
                }
                ua[..end].into()
            });
        ClientInfo {
            ip: self.ip.map(|ip| ip.to_string().into()),
            user_agent,
        }
    }
}

/// The token a request presented (cookie value or bearer token): a range of one of its header
/// values. Header values are reference-counted, so keeping the token copies nothing.
pub(crate) struct Token {
    header: http::HeaderValue,
    range: std::ops::Range<usize>,
}

impl Token {
    /// `range` must lie inside `header`'s bytes.
    pub(crate) fn new(header: &http::HeaderValue, range: std::ops::Range<usize>) -> Self {
        debug_assert!(range.end <= header.len());
        Self {
            header: header.clone(),
            range,
        }
    }

    /// The token's text; a token that is not UTF-8 is empty, which no engine accepts.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The token's bytes, as the client sent them.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.header
            .as_bytes()
            .get(self.range.clone())
            .unwrap_or_default()
    }
}

/// Log target of every event the layer emits.
pub(crate) const TARGET: &str = "tessera_http";

/// A request's session, as handlers see it: a cheap, cloneable handle that loads the session
/// from the engine the first time it is used, so a request that never touches it costs no
/// store call.
///
/// The [`SessionLayer`](crate::SessionLayer) puts one in every request's extensions; with the
/// `axum` feature it is also an extractor. Changes are written back by the layer after the
/// handler returns, before the response headers go out.
///
/// Every method is `async` (the first call may load) and fails with a [`SessionRejection`]
/// when the store is down (503), when the request failed the CSRF check (403), or when a value
/// does not (de)serialize (500). Rejections implement `IntoResponse`, so `?` works in axum
/// handlers that return `Result<_, SessionRejection>`.
///
/// # Example
///
/// ```
/// use tessera_http::{Session, SessionRejection};
///
/// async fn add_to_cart(session: Session) -> Result<String, SessionRejection> {
///     session
///         .update("cart", |cart: Option<Vec<String>>| {
///             let mut cart = cart.unwrap_or_default();
///             cart.push("tea".into());
///             Some(cart)
///         })
///         .await?;
///     let cart: Vec<String> = session.get("cart").await?.unwrap_or_default();
///     Ok(format!("{} items", cart.len()))
/// }
/// ```
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token_presented", &self.shared.token.is_some())
            .field("verdict", &self.shared.verdict)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    engine: Arc<dyn Engine>,
    /// The token the client presented (cookie value or bearer token): a secret, never logged.
    token: Option<Token>,
    client: ClientSource,
    verdict: Verdict,
    exempt: AtomicBool,
    slot: SlotLock,
}

/// The slot and whether a task holds it across a wait.
struct Cell {
    slot: Slot,
    busy: bool,
}

/// The request's slot behind a lock that costs an uncontended mutex when nobody waits (the usual
/// case: one handler, then the layer), and that a task holds across a wait (a load from a
/// store that answers later, a commit) by marking it busy. The mutex itself is only ever held
/// for synchronous work, never across an `await` (its guard is not `Send`, so a future that
/// did would not compile into the `Send` handler futures).
///
/// It replaced a `tokio::sync::Mutex`, whose release alone cost more than a hundred
/// instructions on every use.
struct SlotLock {
    cell: Mutex<Cell>,
    /// Signalled when a busy holder lets go.
    freed: tokio::sync::Notify,
}

impl SlotLock {
    fn new() -> Self {
        Self {
            cell: Mutex::new(Cell {
                slot: Slot::Unloaded,
                busy: false,
            }),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// The cell, whatever its state (a holder that panicked left nothing half-done that
    /// matters here: the slot is replaced whole).
    fn cell(&self) -> MutexGuard<'_, Cell> {
        self.cell.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cell, unless a task holds it busy.
    fn try_lock(&self) -> Option<MutexGuard<'_, Cell>> {
        let cell = self.cell();
        (!cell.busy).then_some(cell)
    }

    /// The cell, once no task holds it busy.
    async fn lock(&self) -> MutexGuard<'_, Cell> {
        loop {
            // Registered before the check, so a release between the two is not missed.
            let freed = self.freed.notified();
            if let Some(cell) = self.try_lock() {
                return cell;
            }
            freed.await;
        }
    }

    /// Keeps the cell for the caller across a wait: others wait until the returned [`Busy`] is
    /// dropped (also when the wait is cancelled).
    fn hold(&self, mut cell: MutexGuard<'_, Cell>) -> Busy<'_> {
        cell.busy = true;
        drop(cell);
        Busy(self)
    }
}

/// A cell held busy; see [`SlotLock::hold`].
struct Busy<'a>(&'a SlotLock);

impl Busy<'_> {
    /// The held cell, for synchronous work (drop the guard before the `Busy`).
    fn cell(&self) -> MutexGuard<'_, Cell> {
        self.0.cell()
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.cell().busy = false;
        self.0.freed.notify_waiters();
    }
}

/// A loaded session taken out of a busy cell for a commit, put back when dropped (also when the
/// commit is cancelled), before the cell is let go.
struct Taken<'a> {
    loaded: Option<Loaded>,
    busy: Busy<'a>,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(loaded) = self.loaded.take() {
            self.busy.cell().slot = Slot::Loaded(loaded);
        }
    }
}

// Not boxed: the slot lives inside the handle's one `Arc` allocation already, and a box would
// cost every request that uses its session one more allocation.
#[allow(clippy::large_enum_variant)]
enum Slot {
    Unloaded,
    Loaded(Loaded),
    Finished,
}

struct Loaded {
    session: CoreSession,
    /// The CSRF check failed: the session may not be read or changed, and is not committed.
    blocked: Option<CsrfFailure>,
    /// A token was presented, but the engine did not know it (unknown, expired, malformed).
    presented_dead: bool,
    outcome: Outcome,
}

/// What the commits of one request mean for the client.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// A token to send (new session, login, rotation, re-sealed stateless state).
    pub(crate) issued: Option<String>,
    /// The session's absolute deadline, which bounds the cookie's `Max-Age`.
    pub(crate) absolute_deadline: Option<Timestamp>,
    /// Tell the client to forget its token.
    pub(crate) clear: bool,
    /// The session was destroyed by this request (logout): also send `Clear-Site-Data`.
    pub(crate) destroyed: bool,
    /// The engine's time at the last commit.
    pub(crate) now: Option<Timestamp>,
}

impl Outcome {
    pub(crate) fn touches_client(&self) -> bool {
        self.issued.is_some() || self.clear
    }
}

impl Session {
    pub(crate) fn new(
        engine: Arc<dyn Engine>,
        token: Option<Token>,
        client: ClientSource,
        verdict: Verdict,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                engine,
                token,
                client,
                verdict,
                exempt: AtomicBool::new(false),
                slot: SlotLock::new(),
            }),
        }
    }

    /// Turns the CSRF check off for this request (what [`NoCsrf`](crate::NoCsrf) does).
    pub(crate) fn exempt_from_csrf(&self) {
        self.shared.exempt.store(true, Ordering::Release);
    }

    /// Runs `f` on the loaded session, loading it first if needed.
    async fn with_loaded<R>(
        &self,
        f: impl FnOnce(&mut Loaded) -> Result<R, SessionRejection>,
    ) -> Result<R, SessionRejection> {
        let shared = &*self.shared;
        // The guard lives in this block only: it must not be held across the wait below.
        let (busy, later) = {
            let mut cell = shared.slot.lock().await;
            if !matches!(cell.slot, Slot::Unloaded) {
                return apply(&mut cell.slot, f);
            }
            match shared.load_now_into(&mut cell.slot)? {
                None => return apply(&mut cell.slot, f),
                // The store answers later: the slot stays this call's across the wait.
                Some(later) => (shared.slot.hold(cell), later),
            }
        };
        let loaded = later.await;
        let mut cell = busy.cell();
        shared.settle(&mut cell.slot, loaded)?;
        apply(&mut cell.slot, f)
    }

    /// Runs `f` on the engine's session object, for anything this handle has no method for.
    ///
    /// # Errors
    ///
    /// As every method of this type: store outage (503), failed CSRF check (403).
    pub async fn with<R>(
        &self,
        f: impl FnOnce(&mut CoreSession) -> R,
    ) -> Result<R, SessionRejection> {
        self.with_loaded(|l| Ok(f(&mut l.session))).await
    }

    /// Reads the value under `key`.
    ///
    /// # Errors
    ///
    /// [`SessionRejection::Data`] if the stored value is not a `T`, and as [`Session::with`].
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionRejection> {
        self.with_loaded(|l| Ok(l.session.get(key)?)).await
    }

    /// Sets `key` to `value` (a blind write).
    ///
    /// # Errors
    ///
    /// [`SessionRejection::Data`] if `value` does not serialize, and as [`Session::with`].
    pub async fn insert<T: Serialize + ?Sized + Sync>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), SessionRejection> {
        self.with_loaded(|l| Ok(l.session.insert(key, value)?))
            .await
    }

    /// Removes `key`; returns whether it was there.
    ///
    /// # Errors
    ///
    /// As [`Session::with`].
    pub async fn remove(&self, key: &str) -> Result<bool, SessionRejection> {
        self.with_loaded(|l| Ok(l.session.remove(key))).await
    }

    /// Removes every data entry (the session itself and its login stay).
    ///
    /// # Errors
    ///
    /// As [`Session::with`].
    pub async fn clear(&self) -> Result<(), SessionRejection> {
        self.with_loaded(|l| {
            l.session.clear();
            Ok(())
        })
        .await
    }

    /// Read-modify-write of one value; on a commit conflict `f` runs again on the value another
    /// request committed, so concurrent updates (a cart, a counter) are never lost. `f` may run
    /// more than once and must not have side effects.
    ///
    /// # Errors
    ///
    /// [`SessionRejection::Data`] if the stored value is not a `T`, and as [`Session::with`].
    pub async fn update<T, F>(&self, key: &str, f: F) -> Result<(), SessionRejection>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(Option<T>) -> Option<T> + Send + Sync + 'static,
    {
        self.with_loaded(|l| Ok(l.session.update(key, f)?)).await
    }

    /// Logs `subject` in: at commit the session gets a new ID (the old one dies at once) and a
    /// new CSRF secret, so tokens minted before the login stop working.
    ///
    /// # Errors
    ///
    /// As [`Session::with`].
    pub async fn login(&self, subject: impl Into<Arc<str>>) -> Result<(), SessionRejection> {
        let subject = subject.into();
        self.with_loaded(|l| {
            l.session.login(subject);
            Ok(())
        })
        .await
    }

    /// Gives the session a new ID and CSRF secret at commit, keeping the subject: for any
    /// privilege change other than a login.
    ///
    /// # Errors
    ///
    /// As [`Session::with`].
    pub async fn rotate(&self) -> Result<(), SessionRejection> {
        self.with_loaded(|l| {
            l.session.rotate();
            Ok(())
        })
        .await
    }

    /// Destroys the session at commit; the layer expires the cookie with the same attributes
    /// and sends `Clear-Site-Data: "cache", "cookies", "storage"`.
    ///
    /// # Errors
    ///
    /// As [`Session::with`].
    pub async fn logout(&self) -> Result<(), SessionRejection> {
        self.with_loaded(|l| {
            l.session.logout();
            Ok(())
        })
        .await
    }

    /// The logged-in subject, if any (including a login made by this request).
    ///
    /// # Errors
    ///
    /// As [`Session::with`].
    pub async fn subject(&self) -> Result<Option<String>, SessionRejection> {
        self.with_loaded(|l| Ok(l.session.subject().map(str::to_owned)))
            .await
    }

    /// A CSRF token for forms (field `csrf_token`) and scripts (header `X-CSRF-Token`).
    ///
    /// Masked afresh on every call, so embedding it in a compressed page that also reflects
    /// user input leaks nothing (BREACH). It is bound to the session's CSRF secret, which
    /// changes at login. A new session is stored so that the token can be checked on the next
    /// request.
    ///
    /// # Errors
    ///
    /// As [`Session::with`].
    pub async fn csrf_token(&self) -> Result<String, SessionRejection> {
        self.with_loaded(|l| {
            // The engine stores a new session only when asked to; the secret behind the token
            // must survive to the next request.
            l.session.keep();
            Ok(csrf::mask(l.session.csrf_secret()))
        })
        .await
    }

    /// The session's non-secret handle (the store key), as device lists show it; `None` for a
    /// session not stored yet, or for engines without one (stateless tokens).
    ///
    /// # Errors
    ///
    /// As [`Session::with`].
    pub async fn handle(&self) -> Result<Option<Key>, SessionRejection> {
        self.with_loaded(|l| Ok(l.session.key())).await
    }

    /// True if the request presented a live session (rather than getting a new one).
    ///
    /// # Errors
    ///
    /// As [`Session::with`].
    pub async fn exists(&self) -> Result<bool, SessionRejection> {
        self.with_loaded(|l| Ok(!l.session.is_new())).await
    }

    /// A copy of the record as this request sees it (subject, data, deadlines, client).
    ///
    /// # Errors
    ///
    /// As [`Session::with`].
    pub async fn record(&self) -> Result<Record, SessionRejection> {
        self.with_loaded(|l| Ok(l.session.record().clone())).await
    }

    /// Commits now instead of after the handler, and returns the token the client must be
    /// given, if a new one was issued: for bearer APIs whose login handler returns the token
    /// in its body. The layer still sends it too (cookie or response header), and commits any
    /// later change after the handler.
    ///
    /// # Errors
    ///
    /// [`SessionRejection::Unavailable`] if the store fails, [`SessionRejection::LimitReached`]
    /// if a login is refused, and as [`Session::with`].
    pub async fn commit_now(&self) -> Result<Option<String>, SessionRejection> {
        let shared = &*self.shared;
        // Held busy throughout: the commit waits for the store.
        let busy = shared.slot.hold(shared.slot.lock().await);
        let later = {
            let mut cell = busy.cell();
            if matches!(cell.slot, Slot::Unloaded) {
                shared.load_now_into(&mut cell.slot)?
            } else {
                None
            }
        };
        if let Some(later) = later {
            let loaded = later.await;
            shared.settle(&mut busy.cell().slot, loaded)?;
        }
        let loaded = {
            let mut cell = busy.cell();
            match std::mem::replace(&mut cell.slot, Slot::Finished) {
                Slot::Loaded(loaded) if loaded.blocked.is_none() => loaded,
                other => {
                    let refused = match &other {
                        Slot::Loaded(Loaded {
                            blocked: Some(reason),
                            ..
                        }) => SessionRejection::Csrf(*reason),
                        _ => SessionRejection::Finished,
                    };
                    cell.slot = other;
                    return Err(refused);
                }
            }
        };
        let mut taken = Taken {
            loaded: Some(loaded),
            busy,
        };
        let loaded = taken.loaded.as_mut().expect("just put there");
        loaded.commit(&*shared.engine).await?;
        Ok(loaded.session.issued_token().map(str::to_owned))
    }

    /// Loads the session (if the handler used it) and commits it; called once by the layer.
    pub(crate) async fn finish(
        &self,
        log_read_only_failure: bool,
    ) -> Result<Outcome, SessionRejection> {
        let slot = std::mem::replace(&mut self.shared.slot.lock().await.slot, Slot::Finished);
        let Slot::Loaded(mut loaded) = slot else {
            return Ok(Outcome::default());
        };
        if loaded.blocked.is_some() {
            return Ok(Outcome::default());
        }
        let read_only = !loaded.session.is_modified();
        match loaded.commit(&*self.shared.engine).await {
            Ok(()) => {}
            Err(rejection) if read_only && log_read_only_failure => {
                tracing::warn!(target: TARGET, session = %short(&loaded.session), error = %rejection,
                    "committing a read-only session failed; the response goes out unchanged");
            }
            Err(rejection) => return Err(rejection),
        }
        Ok(loaded.take_outcome())
    }

    /// Closes the handle at once when there is nothing to commit (the handler never used the
    /// session, the CSRF check blocked it, or it was only read and no touch is due), giving what
    /// the client must be told and whether the session was used. `None` if a commit must run:
    /// then [`Session::finish`] must be called.
    pub(crate) fn finish_without_commit(&self) -> Option<(Outcome, bool)> {
        let mut cell = self.shared.slot.try_lock()?;
        let slot = &mut cell.slot;
        if matches!(&*slot, Slot::Loaded(l) if l.blocked.is_none() && !l.session.is_clean()) {
            return None;
        }
        // Read in place and dropped in place: moving the session out would copy it.
        let finished = match &mut *slot {
            Slot::Unloaded => (Outcome::default(), false),
            Slot::Loaded(loaded) if loaded.blocked.is_none() => (loaded.take_outcome(), true),
            Slot::Loaded(_) | Slot::Finished => (Outcome::default(), true),
        };
        *slot = Slot::Finished;
        Some(finished)
    }
}

impl Shared {
    /// Fills `slot` (which is `Unloaded`) with the presented session or a new one if that needs
    /// no waiting; else gives back the engine's load to await (and then [`Shared::settle`]).
    ///
    /// The session is several hundred bytes, and every copy of it is a `memcpy` on every
    /// request that uses its session, so it goes into the slot as directly as the engine allows:
    /// the part that may wait holds nothing but the engine's future across the wait (a session
    /// held there would also make the handler's future, which axum boxes, that much larger).
    fn load_now_into<'a>(
        &'a self,
        slot: &mut Slot,
    ) -> Result<Option<LoadFuture<'a>>, SessionRejection> {
        let Some(token) = &self.token else {
            *slot = Slot::Loaded(Loaded::new(self.engine.start(self.client.info()), false));
            self.check_csrf(slot);
            return Ok(None);
        };
        // As bytes: the engine checks what it needs (an ID is ASCII), the same as for the text.
        match self.engine.load_now_raw(token.as_bytes()) {
            Loading::Ready(loaded) => self.settle(slot, loaded).map(|()| None),
            Loading::Later(later) => Ok(Some(later)),
        }
    }

    /// Puts what the engine loaded for the presented token into `slot`.
    fn settle(
        &self,
        slot: &mut Slot,
        loaded: Result<Option<CoreSession>, tessera_core::Error>,
    ) -> Result<(), SessionRejection> {
        match loaded {
            // Written straight into the slot (the session is several hundred bytes, and a
            // `Loaded` built first and then moved in is one more copy of it).
            Ok(Some(session)) => *slot = Slot::Loaded(Loaded::new(session, false)),
            Ok(None) => {
                let token = self.token.as_ref().map_or("", Token::as_str);
                tracing::info!(target: TARGET, presented = %token_short(token),
                    "unknown, expired or malformed session token presented; starting a new session");
                *slot = Slot::Loaded(Loaded::new(self.engine.start(self.client.info()), true));
            }
            Err(error) => {
                tracing::error!(target: TARGET, %error, "loading the session failed");
                return Err(SessionRejection::from_engine(error));
            }
        }
        self.check_csrf(slot);
        Ok(())
    }

    /// Applies the request's CSRF verdict to the session just put in `slot`.
    fn check_csrf(&self, slot: &mut Slot) {
        let Slot::Loaded(loaded) = slot else {
            return;
        };
        let blocked = if self.exempt.load(Ordering::Acquire) {
            None
        } else {
            match &self.verdict {
                Verdict::NotChecked | Verdict::Passed => None,
                Verdict::Failed(reason) => Some(*reason),
                Verdict::NeedsToken(None) => Some(CsrfFailure::MissingToken),
                Verdict::NeedsToken(Some(token)) => {
                    (!csrf::verify(loaded.session.csrf_secret(), token))
                        .then_some(CsrfFailure::BadToken)
                }
            }
        };
        if let Some(reason) = blocked {
            tracing::warn!(target: TARGET, session = %short(&loaded.session), %reason, "CSRF check failed");
        }
        loaded.blocked = blocked;
    }
}

/// Runs `f` on the loaded session in `slot` (filled by the caller), unless the CSRF check
/// blocked it or the layer has finished with it.
fn apply<R>(
    slot: &mut Slot,
    f: impl FnOnce(&mut Loaded) -> Result<R, SessionRejection>,
) -> Result<R, SessionRejection> {
    match slot {
        Slot::Loaded(loaded) => match loaded.blocked {
            Some(reason) => Err(SessionRejection::Csrf(reason)),
            None => f(loaded),
        },
        Slot::Finished => Err(SessionRejection::Finished),
        Slot::Unloaded => unreachable!("loaded by the caller"),
    }
}

/// The part of a load that waits for the store.
type LoadFuture<'a> = std::pin::Pin<
    Box<dyn Future<Output = Result<Option<CoreSession>, tessera_core::Error>> + Send + 'a>,
>;

impl Loaded {
    #[inline(always)]
    fn new(session: CoreSession, presented_dead: bool) -> Self {
        Self {
            session,
            blocked: None,
            presented_dead,
            outcome: Outcome::default(),
        }
    }

    /// What the client must be told once the commits are done.
    fn take_outcome(&mut self) -> Outcome {
        let mut outcome = std::mem::take(&mut self.outcome);
        if self.presented_dead && !outcome.touches_client() && self.session.is_new() {
            // The client holds a token nobody knows: make it forget it.
            outcome.clear = true;
        }
        outcome
    }

    async fn commit(&mut self, engine: &dyn Engine) -> Result<(), SessionRejection> {
        let commit = match engine.commit(&mut self.session).await {
            Ok(commit) => commit,
            Err(error) => {
                tracing::error!(target: TARGET, session = %short(&self.session), %error, "committing the session failed");
                return Err(SessionRejection::from_engine(error));
            }
        };
        match commit {
            Commit::Created => {
                tracing::info!(target: TARGET, session = %short(&self.session), "session created");
            }
            Commit::Rotated => {
                tracing::info!(target: TARGET, session = %short(&self.session),
                    "session rotated: new ID issued, old one invalidated");
            }
            Commit::Destroyed => tracing::info!(target: TARGET, "session destroyed (logout)"),
            Commit::Ended => {
                tracing::info!(target: TARGET, "session expired or was revoked while in use; changes dropped");
            }
            _ => {}
        }
        let outcome = &mut self.outcome;
        outcome.now = Some(engine.now());
        if commit.clears_id() {
            outcome.issued = None;
            outcome.clear = true;
            outcome.destroyed |= commit == Commit::Destroyed;
        } else if let Some(token) = self.session.issued_token() {
            outcome.issued = Some(token.to_owned());
            outcome.absolute_deadline = Some(self.session.record().absolute_deadline);
            outcome.clear = false;
        }
        Ok(())
    }
}

/// The short, non-secret handle of a session for logs ("-" when it has none).
fn short(session: &CoreSession) -> String {
    session
        .key()
        .map_or_else(|| "-".to_owned(), |key| key.short())
}

/// The short handle a presented token would have, if it is shaped like a session ID. The key
/// is a hash of the ID, so this reveals nothing of the token.
fn token_short(token: &str) -> String {
    SessionId::parse(token).map_or_else(|| "malformed".to_owned(), |id| id.key().short())
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::{Pin, pin};
    use std::sync::atomic::AtomicUsize;
    use std::task::Poll;

    use tessera_core::{Error, MemoryStore, Policy, Sessions};
    use tokio::sync::Semaphore;

    use super::*;

    type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

    /// An engine whose loads and commits wait for a permit of `gate`, so that a test decides
    /// when the store answers.
    struct Gated {
        inner: Sessions,
        gate: Semaphore,
        loads: AtomicUsize,
    }

    impl Engine for Gated {
        fn start(&self, client: ClientInfo) -> CoreSession {
            self.inner.start_with_client(client)
        }
        fn load<'a, 'b, 'c>(
            &'a self,
            token: &'b str,
        ) -> BoxFuture<'c, Result<Option<CoreSession>, Error>>
        where
            'a: 'c,
            'b: 'c,
            Self: 'c,
        {
            Box::pin(async move {
                self.loads.fetch_add(1, Ordering::SeqCst);
                self.gate.acquire().await.expect("open").forget();
                self.inner.load(token).await
            })
        }
        fn commit<'a, 'b, 'c>(
            &'a self,
            session: &'b mut CoreSession,
        ) -> BoxFuture<'c, Result<Commit, Error>>
        where
            'a: 'c,
            'b: 'c,
            Self: 'c,
        {
            Box::pin(async move {
                self.gate.acquire().await.expect("open").forget();
                self.inner.commit(session).await
            })
        }
        fn policy(&self) -> &Policy {
            self.inner.policy()
        }
        fn now(&self) -> Timestamp {
            self.inner.now()
        }
    }

    /// A handle for a request presenting a stored session with `n = 1`, over a gated engine.
    async fn handle() -> (Session, Arc<Gated>) {
        let inner = Sessions::new(MemoryStore::new());
        let mut stored = inner.start();
        stored.insert("n", &1u64).unwrap();
        inner.commit(&mut stored).await.unwrap();
        let header = http::HeaderValue::try_from(stored.id().unwrap().expose()).unwrap();
        let token = Token::new(&header, 0..header.len());
        let engine = Arc::new(Gated {
            inner,
            gate: Semaphore::new(0),
            loads: AtomicUsize::new(0),
        });
        let client = ClientSource {
            user_agent: None,
            ip: None,
        };
        let session = Session::new(engine.clone(), Some(token), client, Verdict::NotChecked);
        (session, engine)
    }

    /// Polls `future` once.
    async fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        let mut future = Some(future);
        std::future::poll_fn(|cx| Poll::Ready(future.take().unwrap().poll(cx))).await
    }

    fn is_free(session: &Session) -> bool {
        session.shared.slot.try_lock().is_some()
    }

    #[tokio::test]
    async fn uses_of_one_handle_wait_for_a_load_in_progress_and_share_it() {
        let (session, engine) = handle().await;
        let mut first = pin!(session.get::<u64>("n"));
        let mut second = pin!(session.get::<u64>("n"));
        assert!(poll_once(first.as_mut()).await.is_pending());
        assert!(poll_once(second.as_mut()).await.is_pending());
        assert!(
            !is_free(&session),
            "the first use holds the slot while loading"
        );
        engine.gate.add_permits(1);
        let (a, b) = tokio::join!(first, second);
        assert_eq!((a.unwrap(), b.unwrap()), (Some(1), Some(1)));
        assert_eq!(engine.loads.load(Ordering::SeqCst), 1, "one load for both");
        assert!(is_free(&session));
    }

    #[tokio::test]
    async fn a_use_dropped_while_loading_lets_the_slot_go() {
        let (session, engine) = handle().await;
        {
            let mut dropped = pin!(session.get::<u64>("n"));
            assert!(poll_once(dropped.as_mut()).await.is_pending());
            assert!(!is_free(&session));
        }
        assert!(
            is_free(&session),
            "cancelled while loading: the slot is free again"
        );
        engine.gate.add_permits(1);
        assert_eq!(session.get::<u64>("n").await.unwrap(), Some(1));
        assert_eq!(engine.loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_commit_now_dropped_while_committing_puts_the_session_back() {
        let (session, engine) = handle().await;
        engine.gate.add_permits(1);
        session.insert("n", &2u64).await.unwrap();
        {
            let mut dropped = pin!(session.commit_now());
            assert!(poll_once(dropped.as_mut()).await.is_pending());
            assert!(!is_free(&session), "the commit holds the slot");
        }
        assert!(is_free(&session));
        assert_eq!(
            session.get::<u64>("n").await.unwrap(),
            Some(2),
            "still there"
        );
        // The commit now, and the layer's at the end.
        engine.gate.add_permits(2);
        assert_eq!(session.commit_now().await.unwrap(), None);
        let outcome = session.finish(false).await.unwrap();
        assert!(!outcome.touches_client());
        assert!(matches!(
            session.get::<u64>("n").await,
            Err(SessionRejection::Finished)
        ));
        assert_eq!(engine.loads.load(Ordering::SeqCst), 1);
    }
}
