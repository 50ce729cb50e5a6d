//! The connections and the threads that own them: one writer thread, a few reader threads.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use tessera_core::StoreError;

use crate::error::{SchemaError, WorkerStopped};
use crate::options::SqliteOptions;
use crate::schema;

/// A unit of blocking work for the thread that owns a connection.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Each connection lives on a thread of its own and is fed jobs through a channel; callers await
/// the answer on a oneshot. Every write goes to the one writer thread, so writes never fight over
/// SQLite's file lock inside this process and a failed compare-and-swap can be told apart
/// (conflict or gone) with no other writer in between. Reads go to a shared queue served by the
/// reader threads: WAL mode lets them run while the writer writes, and each sees the last
/// committed state when its statement starts.
///
/// Why threads of our own rather than `tokio::task::spawn_blocking`: a round trip through the
/// blocking pool cost about 46 µs of CPU on the development machine against 6.4 µs for a
/// dedicated thread and a channel (`BENCHMARKS.md`, `sqlite-parts`), more than the query itself.
///
/// Dropping the last handle closes the channels; each thread finishes the jobs already queued,
/// closes its connection and ends.
pub(crate) struct Pool {
    writer: mpsc::Sender<Job>,
    readers: Option<mpsc::Sender<Job>>,
}

impl Pool {
    /// Opens (creating if needed) the file at `path`, switches it to WAL, migrates it, opens the
    /// readers, and starts the threads. Blocking.
    pub(crate) fn open(path: &Path, options: &SqliteOptions) -> Result<Self, SchemaError> {
        let mut writer = Connection::open(path)?;
        configure(&writer, options)?;
        // WAL is a property of the file: set once here, every later connection inherits it.
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "sqlite session store could not switch to WAL mode");
        }
        // NORMAL in WAL mode: a commit survives a crash of the process, and the last
        // transactions before a power loss may be rolled back (never corrupted). FULL would
        // add an fsync to every commit.
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        schema::migrate(&mut writer)?;
        let readers = (0..options.pool_size)
            .map(|_| {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI;
                let reader = Connection::open_with_flags(path, flags)?;
                configure(&reader, options)?;
                Ok(reader)
            })
            .collect::<Result<Vec<_>, SchemaError>>()?;
        Ok(Self::start(writer, readers))
    }

    /// A private in-memory database: one connection does everything (readers on another
    /// connection would not see it).
    pub(crate) fn in_memory(options: &SqliteOptions) -> Result<Self, SchemaError> {
        let mut writer = Connection::open_in_memory()?;
        configure(&writer, options)?;
        schema::migrate(&mut writer)?;
        Ok(Self::start(writer, Vec::new()))
    }

    fn start(writer: Connection, readers: Vec<Connection>) -> Self {
        let (write_jobs, write_queue) = mpsc::channel::<Job>();
        spawn("tessera-sqlite-writer", writer, move || {
            write_queue.recv().ok()
        });
        let readers = (!readers.is_empty()).then(|| {
            let (read_jobs, read_queue) = mpsc::channel::<Job>();
            // One queue for all readers: whichever is free takes the next job.
            let queue = Arc::new(Mutex::new(read_queue));
            for reader in readers {
                let queue = queue.clone();
                spawn("tessera-sqlite-reader", reader, move || {
                    queue.lock().recv().ok()
                });
            }
            read_jobs
        });
        Self {
            writer: write_jobs,
            readers,
        }
    }

    /// Runs `work` on the writer's thread and waits (asynchronously) for its result.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        run(&self.writer, work).await
    }

    /// Runs `work` on a free reader's thread (the writer's, when there are no readers).
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        run(self.readers.as_ref().unwrap_or(&self.writer), work).await
    }
}

async fn run<T, F>(queue: &mpsc::Sender<Job>, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
{
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move |conn| {
        // The caller may have gone (its request was cancelled); the result is then unneeded.
        let _ = reply.send(work(conn));
    });
    queue
        .send(job)
        .map_err(|_| StoreError::unavailable(WorkerStopped))?;
    // A dropped reply means the job panicked (the thread survives it, see `spawn`).
    answer
        .await
        .map_err(|_| StoreError::backend(WorkerStopped))?
}

/// Starts the thread that owns `conn` and runs the jobs `next` hands it until it returns `None`.
fn spawn(name: &str, mut conn: Connection, next: impl Fn() -> Option<Job> + Send + 'static) {
    let started = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            while let Some(job) = next() {
                // A panicking job drops its reply (the caller gets an error); the connection and
                // the thread go on serving others.
                if catch_unwind(AssertUnwindSafe(|| job(&mut conn))).is_err() {
                    tracing::error!("a sqlite session store job panicked");
                }
            }
        });
    if let Err(error) = started {
        // Without the thread, every job sent to it fails as "unavailable"; say why once.
        tracing::error!(%error, "could not start a sqlite session store thread");
    }
}

fn configure(conn: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    // Room for every statement the store prepares, so none is ever re-parsed.
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}
