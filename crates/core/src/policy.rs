//! Expiry, touch and per-subject limits: the rules the engine applies.

use std::time::Duration;

/// How long sessions live and how the engine keeps them.
///
/// The defaults follow NIST SP 800-63B-4 for AAL2 (§2.2.3 reauthentication): an inactivity
/// (idle) timeout of 1 hour and an overall (absolute) timeout of 24 hours.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tessera_core::{LimitAction, Policy};
///
/// let policy = Policy::default()
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .max_sessions_per_subject(Some(5), LimitAction::EvictOldest);
/// assert_eq!(policy.idle, Duration::from_secs(900));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// A session not used for this long is dead.
    pub idle: Duration,
    /// A session is dead this long after it was created (or after its last login), however
    /// much it is used.
    pub absolute: Duration,
    /// The last-seen time is written back only when it has moved at least this much, so a
    /// read-mostly session does not cost a write per request. The effective idle timeout is
    /// therefore between `idle - touch_interval` and `idle`.
    pub touch_interval: Duration,
    /// At most this many live sessions per subject (`None`: no limit).
    pub max_per_subject: Option<u32>,
    /// What a login past `max_per_subject` does.
    pub on_limit: LimitAction,
    /// How many times a commit may lose the compare-and-swap race before it gives up with
    /// [`Error::TooManyConflicts`](crate::Error::TooManyConflicts).
    pub max_commit_attempts: u32,
}

/// What happens when a login would give a subject more sessions than allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LimitAction {
    /// The login fails with [`Error::LimitReached`](crate::Error::LimitReached).
    Reject,
    /// The subject's oldest sessions (by creation time) are destroyed to make room.
    #[default]
    EvictOldest,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(60 * 60),
            absolute: Duration::from_secs(24 * 60 * 60),
            touch_interval: Duration::from_secs(60),
            max_per_subject: None,
            on_limit: LimitAction::EvictOldest,
            max_commit_attempts: 64,
        }
    }
}

impl Policy {
    /// Sets the idle timeout.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Sets the absolute timeout.
    pub fn absolute_timeout(mut self, absolute: Duration) -> Self {
        self.absolute = absolute;
        self
    }

    /// Sets the touch interval.
    pub fn touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = interval;
        self
    }

    /// Sets the per-subject limit and what happens past it.
    pub fn max_sessions_per_subject(mut self, max: Option<u32>, on_limit: LimitAction) -> Self {
        self.max_per_subject = max;
        self.on_limit = on_limit;
        self
    }

    /// Sets how many compare-and-swap attempts a commit makes.
    pub fn max_commit_attempts(mut self, attempts: u32) -> Self {
        self.max_commit_attempts = attempts.max(1);
        self
    }
}
