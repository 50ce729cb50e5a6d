//! A small pool of Memcached connections: at most `size` open, idle ones reused, broken ones
//! dropped.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::MemcachedError;
use crate::protocol::Connection;

#[derive(Debug)]
pub(crate) struct Pool {
    addr: String,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

/// A connection on loan. It goes back to the pool only through [`Lease::release`], after a
/// complete exchange; dropped any other way (an error, a timeout) it is closed, so a
/// connection with half a reply in its buffer is never reused.
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    pub(crate) conn: Connection,
    /// Whether the connection was idle in the pool (and so may have died since).
    pub(crate) reused: bool,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub(crate) fn new(addr: String, size: usize) -> Self {
        Self {
            addr,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size)),
        }
    }

    /// Waits for a free slot, then reuses an idle connection or opens a new one. The caller
    /// bounds the wait (the store wraps every operation in its timeout).
    pub(crate) async fn get(&self) -> Result<Lease<'_>, MemcachedError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let reused = self.idle.lock().pop();
        let (conn, reused) = match reused {
            Some(conn) => (conn, true),
            None => (Connection::open(&self.addr).await?, false),
        };
        Ok(Lease {
            pool: self,
            conn,
            reused,
            _permit: permit,
        })
    }
}

impl Pool {
    /// Closes every idle connection (after an I/O error: they are most likely dead too).
    pub(crate) fn clear_idle(&self) {
        self.idle.lock().clear();
    }
}

impl Lease<'_> {
    /// Returns the connection for reuse.
    pub(crate) fn release(self) {
        self.pool.idle.lock().push(self.conn);
    }
}
