//! The connections and the threads that own them: one writer thread, a few reader threads.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use tessera_core::StoreError;

use crate::error::{SchemaError, WorkerStopped, is_outage};
use crate::options::SqliteOptions;
use crate::schema;

/// A unit of blocking work for a reader thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Each connection lives on a thread of its own and is fed jobs through a channel; callers await
/// the answer on a oneshot. Every write goes to the one writer thread, so writes never fight over
/// SQLite's file lock inside this process and a failed compare-and-swap can be told apart
/// (conflict or gone) with no other writer in between. Reads go to a shared queue served by the
/// reader threads: WAL mode lets them run while the writer writes, and each sees the last
/// committed state when its statement starts.
///
/// **Group commit**: the writer takes every job already queued (up to [`SqliteOptions::max_batch`]) and runs
/// them in one transaction, so concurrent writes share one WAL commit instead of paying one
/// each. No job waits for others to arrive: a lone write runs on its own, in autocommit mode.
/// Each job's answer is held until its transaction has committed, so a caller never hears
/// "done" for a write that is not durable; if the transaction fails, every job in it gets the
/// error (`Unavailable` for an outage such as a full disk), never a silent loss.
///
/// Why threads of our own rather than `tokio::task::spawn_blocking`: a round trip through the
/// blocking pool cost about 46 µs of CPU on the development machine against 6.4 µs for a
/// dedicated thread and a channel (`BENCHMARKS.md`, `sqlite-parts`), more than the query itself.
///
/// Dropping the last handle closes the channels; each thread finishes the jobs already queued,
/// closes its connection and ends.
pub(crate) struct Pool {
    writer: mpsc::Sender<Box<dyn WriterJob>>,
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
        Ok(Self::start(writer, readers, options))
    }

    /// A private in-memory database: one connection does everything (readers on another
    /// connection would not see it).
    pub(crate) fn in_memory(options: &SqliteOptions) -> Result<Self, SchemaError> {
        let mut writer = Connection::open_in_memory()?;
        configure(&writer, options)?;
        schema::migrate(&mut writer)?;
        Ok(Self::start(writer, Vec::new(), options))
    }

    fn start(writer: Connection, readers: Vec<Connection>, options: &SqliteOptions) -> Self {
        let (write_jobs, write_queue) = mpsc::channel::<Box<dyn WriterJob>>();
        let max_batch = options.max_batch.max(1);
        spawn("tessera-sqlite-writer", move || {
            writer_loop(writer, &write_queue, max_batch);
        });
        let readers = (!readers.is_empty()).then(|| {
            let (read_jobs, read_queue) = mpsc::channel::<Job>();
            // One queue for all readers: whichever is free takes the next job.
            let queue = Arc::new(Mutex::new(read_queue));
            for mut reader in readers {
                let queue = queue.clone();
                spawn("tessera-sqlite-reader", move || {
                    loop {
                        // The lock is held only while waiting for a job, not while running it.
                        let next = queue.lock().recv();
                        let Ok(job) = next else { break };
                        // A panicking job drops its reply (the caller gets an error); the
                        // connection and the thread go on serving others.
                        if catch_unwind(AssertUnwindSafe(|| job(&mut reader))).is_err() {
                            tracing::error!("a sqlite session store job panicked");
                        }
                    }
                });
            }
            read_jobs
        });
        Self {
            writer: write_jobs,
            readers,
        }
    }

    /// Runs `work` on the writer's thread, inside its current batch, and waits (asynchronously)
    /// until that batch has committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        self.writer
            .send(job)
            .map_err(|_| StoreError::unavailable(WorkerStopped))?;
        // A dropped reply means the job panicked (the thread survives it, see `writer_loop`).
        answer
            .await
            .map_err(|_| StoreError::backend(WorkerStopped))?
    }

    /// Runs `work` on a free reader's thread (through the writer, when there are no readers)
    /// and waits (asynchronously) for its result.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let Some(readers) = &self.readers else {
            return self.write(work).await;
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // The caller may have gone (its request was cancelled); the result is then unneeded.
            let _ = reply.send(work(conn));
        });
        readers
            .send(job)
            .map_err(|_| StoreError::unavailable(WorkerStopped))?;
        answer
            .await
            .map_err(|_| StoreError::backend(WorkerStopped))?
    }
}

/// A job for the writer: run inside the batch's transaction, answered once the batch is settled.
trait WriterJob: Send {
    /// Runs the work and keeps its result.
    fn run(&mut self, conn: &mut Connection);
    /// Answers the caller: with the kept result if the batch committed (or the work itself
    /// failed), with the batch's failure otherwise. A job whose work panicked has no result and
    /// drops its reply.
    fn settle(self: Box<Self>, batch: Result<(), &BatchFailed>);
}

struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriterJob for Pending<T, F>
where
    T: Send,
    F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &mut Connection) {
        if let Some(work) = self.work.take() {
            self.result = Some(work(conn));
        }
    }

    fn settle(self: Box<Self>, batch: Result<(), &BatchFailed>) {
        let answer = match (self.result, batch) {
            (None, _) => return,
            (Some(Err(own)), _) => Err(own),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(failed)) => Err(failed.to_store_error()),
        };
        // The caller may have gone (its request was cancelled); the result is then unneeded.
        let _ = self.reply.send(answer);
    }
}

/// Why a batch's transaction did not commit: kept as text, because every job in the batch gets
/// its own copy of the error.
#[derive(Debug, thiserror::Error)]
#[error("the sqlite session store's transaction did not commit: {message}")]
pub(crate) struct BatchFailed {
    message: String,
    outage: bool,
}

impl BatchFailed {
    fn from_sql(error: &rusqlite::Error) -> Self {
        Self {
            message: error.to_string(),
            outage: is_outage(error),
        }
    }

    fn to_store_error(&self) -> StoreError {
        let copy = Self {
            message: self.message.clone(),
            outage: self.outage,
        };
        if self.outage {
            StoreError::unavailable(copy)
        } else {
            StoreError::backend(copy)
        }
    }
}

/// The writer thread: takes what is queued, runs it as one batch, answers, repeats until every
/// sender is gone.
fn writer_loop(mut conn: Connection, queue: &mpsc::Receiver<Box<dyn WriterJob>>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Ok(first) = queue.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, &mut batch);
    }
}

/// Runs `jobs` (emptying it) and settles each. One job runs in autocommit mode (its statement is
/// its own transaction); several share one `BEGIN IMMEDIATE ... COMMIT`. If an error inside the
/// transaction makes SQLite roll it back (a full disk, an I/O error), the jobs run so far are
/// answered with that failure and the rest start a new transaction.
fn run_batch(conn: &mut Connection, jobs: &mut Vec<Box<dyn WriterJob>>) {
    if jobs.len() == 1 {
        let mut job = jobs.pop().expect("one job");
        run_job(conn, &mut *job);
        job.settle(Ok(()));
        return;
    }
    let mut queued = jobs.drain(..);
    let mut done: Vec<Box<dyn WriterJob>> = Vec::with_capacity(queued.len());
    'transaction: loop {
        if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
            let failed = BatchFailed::from_sql(&error);
            for job in queued.by_ref() {
                job.settle(Err(&failed));
            }
            return;
        }
        for mut job in queued.by_ref() {
            run_job(conn, &mut *job);
            done.push(job);
            if conn.is_autocommit() {
                // The transaction is gone: SQLite rolled it back after an error.
                let failed = BatchFailed {
                    message: "rolled back after an error in the same transaction".into(),
                    outage: true,
                };
                for job in done.drain(..) {
                    job.settle(Err(&failed));
                }
                continue 'transaction;
            }
        }
        break;
    }
    let committed = conn.execute_batch("COMMIT").map_err(|error| {
        let _ = conn.execute_batch("ROLLBACK");
        BatchFailed::from_sql(&error)
    });
    for job in done {
        job.settle(committed.as_ref().map(|_| ()));
    }
}

/// Runs one job; a panicking job keeps no result (its caller gets an error) and the thread goes
/// on serving the others.
fn run_job(conn: &mut Connection, job: &mut dyn WriterJob) {
    if catch_unwind(AssertUnwindSafe(|| job.run(conn))).is_err() {
        tracing::error!("a sqlite session store job panicked");
    }
}

/// Starts a thread for one connection.
fn spawn(name: &str, body: impl FnOnce() + Send + 'static) {
    let started = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool over a private in-memory database with one table of integers.
    async fn pool() -> Arc<Pool> {
        pool_with(&SqliteOptions::default()).await
    }

    async fn pool_with(options: &SqliteOptions) -> Arc<Pool> {
        let pool = Pool::in_memory(options).expect("open");
        pool.write(|conn| {
            conn.execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE item (n INTEGER PRIMARY KEY,
                     parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);",
            )
            .map_err(crate::error::store_error)
        })
        .await
        .expect("schema");
        Arc::new(pool)
    }

    async fn insert(pool: &Pool, n: i64, parent: Option<i64>) -> Result<bool, StoreError> {
        pool.write(move |conn| {
            let in_batch = !conn.is_autocommit();
            conn.execute("INSERT INTO item (n, parent) VALUES (?1, ?2)", (n, parent))
                .map_err(crate::error::store_error)?;
            Ok(in_batch)
        })
        .await
    }

    async fn count(pool: &Pool) -> i64 {
        pool.read(|conn| {
            conn.query_row("SELECT count(*) FROM item", [], |r| r.get(0))
                .map_err(crate::error::store_error)
        })
        .await
        .expect("count")
    }

    type Job<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

    /// Runs `jobs` as one batch: holds the writer thread inside a job of its own, queues every
    /// job (polling each once sends it), then lets the writer go on.
    async fn queue_behind_blocker<T>(pool: &Arc<Pool>, mut jobs: Vec<Job<T>>) -> Vec<T> {
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let blocker = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.write(move |_| {
                    let _ = started.send(());
                    let _ = wait.recv();
                    Ok(())
                })
                .await
            })
        };
        running.await.expect("the blocking job runs");
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        for job in &mut jobs {
            assert!(job.as_mut().poll(&mut context).is_pending(), "queued");
        }
        release.send(()).expect("release");
        blocker.await.expect("join").expect("blocking job");
        let mut answers = Vec::new();
        for job in jobs {
            answers.push(job.await);
        }
        answers
    }

    fn inserts(
        pool: &Arc<Pool>,
        rows: &[(i64, Option<i64>)],
    ) -> Vec<Job<Result<bool, StoreError>>> {
        rows.iter()
            .map(|&(n, parent)| {
                let pool = pool.clone();
                Box::pin(async move { insert(&pool, n, parent).await }) as Job<_>
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writes_commit_together_and_each_gets_its_answer() {
        let pool = pool().await;
        assert!(
            !insert(&pool, 0, None).await.unwrap(),
            "a lone write runs alone"
        );
        let rows: Vec<_> = (1..=20).map(|n| (n, None)).collect();
        let jobs = inserts(&pool, &rows);
        let answers = queue_behind_blocker(&pool, jobs).await;
        assert!(
            answers.iter().all(|a| matches!(a, Ok(true))),
            "every queued write ran inside one shared transaction: {answers:?}"
        );
        assert_eq!(count(&pool).await, 21);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn max_batch_one_commits_each_write_on_its_own() {
        let pool = pool_with(&SqliteOptions::default().max_batch(1)).await;
        let rows: Vec<_> = (1..=5).map(|n| (n, None)).collect();
        let answers = queue_behind_blocker(&pool, inserts(&pool, &rows)).await;
        assert!(
            answers.iter().all(|a| matches!(a, Ok(false))),
            "{answers:?}"
        );
        assert_eq!(count(&pool).await, 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_in_a_batch_fails_alone() {
        let pool = pool().await;
        insert(&pool, 1, None).await.unwrap();
        // The second insert of n = 1 is a primary-key clash: its statement fails, the others
        // commit.
        let jobs = inserts(&pool, &[(2, None), (1, None), (3, None)]);
        let answers = queue_behind_blocker(&pool, jobs).await;
        assert!(matches!(answers[0], Ok(true)));
        assert!(matches!(answers[1], Err(StoreError::Backend(_))));
        assert!(matches!(answers[2], Ok(true)));
        assert_eq!(count(&pool).await, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_that_fails_fails_every_write_in_it() {
        let pool = pool().await;
        // Item 2 points at a parent that does not exist: the deferred foreign key is checked at
        // COMMIT, which fails, so no write of the batch may report success or persist.
        let jobs = inserts(&pool, &[(1, None), (2, Some(99)), (3, None)]);
        let answers = queue_behind_blocker(&pool, jobs).await;
        for answer in &answers {
            let Err(StoreError::Backend(error)) = answer else {
                panic!("expected the commit's failure, got {answer:?}");
            };
            assert!(error.to_string().contains("did not commit"), "{error}");
        }
        assert_eq!(count(&pool).await, 0);
        // The writer goes on: the next write commits.
        insert(&pool, 4, None).await.unwrap();
        assert_eq!(count(&pool).await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_rolled_back_mid_batch_fails_the_writes_before_it_and_runs_the_rest() {
        let pool = pool().await;
        let mut jobs = inserts(&pool, &[(1, None), (2, None)]);
        let rollback = {
            let pool = pool.clone();
            Box::pin(async move {
                pool.write(|conn| {
                    // What SQLite does by itself after some errors (a full disk, an I/O error).
                    conn.execute_batch("ROLLBACK")
                        .map_err(crate::error::store_error)?;
                    Ok(false)
                })
                .await
            })
        };
        jobs.insert(1, rollback);
        let answers = queue_behind_blocker(&pool, jobs).await;
        assert!(
            matches!(&answers[0], Err(StoreError::Unavailable(e)) if e.to_string().contains("rolled back")),
            "{:?}",
            answers[0]
        );
        assert!(matches!(answers[1], Err(StoreError::Unavailable(_))));
        // The write after the rollback ran in a new transaction and committed.
        assert!(answers[2].is_ok(), "{:?}", answers[2]);
        assert_eq!(count(&pool).await, 1);
    }
}
