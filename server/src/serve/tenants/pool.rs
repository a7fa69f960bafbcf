//! The connections of one tenant database: a pool of readers and one
//! writer, each with a queue of jobs run on tokio's blocking pool.
//!
//! - **Readers** are read-only connections (`SQLITE_OPEN_READ_ONLY`; they
//!   share the writer's replica, so a lazily opened copy fetches missing
//!   pages for them too). Up to `max_readers` run at once, each on its own
//!   blocking thread, in WAL mode in parallel with the writer. A runner
//!   takes jobs from the queue until it is empty, so under load one thread
//!   hop serves many requests. Readers open on demand and are closed after
//!   `idle` without use ([`Db::shrink`]).
//! - **The writer** is one connection. Its runner takes every queued write
//!   (up to [`MAX_BATCH`]) into one transaction (`BEGIN IMMEDIATE`), each
//!   job in its own savepoint: a job that fails is rolled back to its
//!   savepoint and the others go on. One `COMMIT` then covers the batch, so
//!   concurrent requests share a commit, and in `durability=sync` one
//!   upload (group commit across requests). A job's answer is sent only
//!   after that commit, with its txid ([`Commit`]).
//!
//! No job ever waits for a connection on a blocking thread: a request
//! waits on its answer (a oneshot), and a thread is only taken when there
//! is work and a free runner slot.

use super::super::errors::{ApiError, ApiResult};
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Writes per transaction at most: bounds what one failure of the commit
/// takes down, and the latency of the first job in a batch.
pub const MAX_BATCH: usize = 64;

/// Where a committed write stands in the database's history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Commit {
    /// The last txid committed (the batch's, as the write shares it).
    pub txid: u64,
    /// The replicated watermark when the commit returned.
    pub replicated: u64,
}

/// What a job is run with.
enum Run<'a> {
    Conn(&'a Connection),
    /// The job cannot run (no connection, or the database is closing).
    Failed(&'a ApiError),
}

type ReadJob = Box<dyn FnOnce(Run<'_>) + Send>;
/// A write job runs in its savepoint and returns, if it succeeded, what to
/// do once the batch's commit is known.
type WriteJob = Box<dyn FnOnce(Run<'_>) -> Option<Finish> + Send>;

/// What the writer's queue holds.
enum WriteItem {
    /// Shares a transaction with the writes queued with it.
    Job(WriteJob),
    /// Runs alone, outside any transaction (flush, status).
    Raw(ReadJob),
}

impl WriteItem {
    fn fail(self, e: &ApiError) {
        match self {
            WriteItem::Job(j) => {
                j(Run::Failed(e));
            }
            WriteItem::Raw(j) => j(Run::Failed(e)),
        }
    }
}
type Finish = Box<dyn FnOnce(Result<Commit, &ApiError>) + Send>;

/// A job that runs `f` and sends its result back.
fn answered<R: Send + 'static>(
    f: impl FnOnce(&Connection) -> ApiResult<R> + Send + 'static,
) -> (ReadJob, oneshot::Receiver<ApiResult<R>>) {
    let (tx, rx) = oneshot::channel();
    let job: ReadJob = Box::new(move |run| {
        let r = match run {
            Run::Conn(c) => f(c),
            Run::Failed(e) => Err(e.again()),
        };
        let _ = tx.send(r);
    });
    (job, rx)
}

/// A job's result; a job that vanished (it panicked) is a 500.
async fn answer<T>(rx: oneshot::Receiver<ApiResult<T>>) -> ApiResult<T> {
    rx.await
        .map_err(|_| ApiError::internal("a database job failed"))?
}

/// How connections of a database are opened.
#[derive(Debug, Clone)]
pub struct Opener {
    /// `file:...?vfs=strata&...`
    pub uri: String,
    pub busy_timeout: Duration,
}

impl Opener {
    /// A writable connection outside any pool. Blocking.
    pub fn open_standalone(&self) -> ApiResult<Connection> {
        self.open(false)
    }

    fn open(&self, readonly: bool) -> ApiResult<Connection> {
        let flags = if readonly {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        } | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.uri, flags)?;
        if !readonly {
            conn.pragma_update(None, "journal_mode", "wal")?;
            // As PocketBase runs its databases: a commit is not fsynced (the
            // WAL is, at checkpoints). A process crash loses nothing; a power
            // cut can lose the last commits not yet in the bucket (with async
            // durability, about one `sync_interval`).
            conn.pragma_update(None, "synchronous", "normal")?;
        }
        // Statement journals and temporary tables in memory, as PocketBase
        // has it: a savepoint per write (see [`Db::write`]) would otherwise
        // create and delete a temporary file for each statement journal.
        conn.pragma_update(None, "temp_store", "memory")?;
        conn.busy_timeout(self.busy_timeout)?;
        Ok(conn)
    }
}

struct LaneState<J> {
    queue: VecDeque<J>,
    runners: usize,
    idle: Vec<(Connection, Instant)>,
    /// Connections open, idle or running.
    open: usize,
    closed: bool,
}

impl<J> Default for LaneState<J> {
    fn default() -> Self {
        LaneState {
            queue: VecDeque::new(),
            runners: 0,
            idle: Vec::new(),
            open: 0,
            closed: false,
        }
    }
}

/// One database of a tenant.
pub struct Db {
    name: &'static str,
    opener: Opener,
    max_readers: usize,
    readers: Mutex<LaneState<ReadJob>>,
    writer: Mutex<LaneState<WriteItem>>,
    /// Process-wide count of open connections (a metric).
    gauge: Arc<AtomicI64>,
}

impl Db {
    /// Open the database's writer connection now (blocking): this is the
    /// open that replicates, restores or lazily maps the database.
    pub fn open(
        name: &'static str,
        opener: Opener,
        max_readers: usize,
        gauge: Arc<AtomicI64>,
    ) -> ApiResult<Arc<Db>> {
        let conn = opener.open(false)?;
        gauge.fetch_add(1, Ordering::Relaxed);
        let db = Arc::new(Db {
            name,
            opener,
            max_readers: max_readers.max(1),
            readers: Mutex::default(),
            writer: Mutex::default(),
            gauge,
        });
        {
            let mut w = db.writer.lock();
            w.idle.push((conn, Instant::now()));
            w.open = 1;
        }
        Ok(db)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Run `f` on a reader connection.
    pub async fn read<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> ApiResult<R> + Send + 'static,
    ) -> ApiResult<R> {
        let (job, rx) = answered(f);
        self.submit_read(job);
        answer(rx).await
    }

    /// Run `f` in a write transaction (shared with other writes, in its own
    /// savepoint); its result once the transaction has committed.
    pub async fn write<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> ApiResult<R> + Send + 'static,
    ) -> ApiResult<(R, Commit)> {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |run| match run {
            Run::Failed(e) => {
                let _ = tx.send(Err(e.again()));
                None
            }
            Run::Conn(c) => match f(c) {
                Ok(r) => Some(Box::new(move |commit: Result<Commit, &ApiError>| {
                    let _ = tx.send(commit.map(|c| (r, c)).map_err(ApiError::again));
                }) as Finish),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    None
                }
            },
        });
        self.submit_write(WriteItem::Job(job));
        answer(rx).await
    }

    /// Run `f` on the writer connection alone, outside any transaction,
    /// in turn with the writes (`PRAGMA strata_flush`, `strata_status`).
    pub async fn on_writer<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> ApiResult<R> + Send + 'static,
    ) -> ApiResult<R> {
        let (job, rx) = answered(f);
        self.submit_write(WriteItem::Raw(job));
        answer(rx).await
    }

    fn submit_read(self: &Arc<Self>, job: ReadJob) {
        let spawn = {
            let mut s = self.readers.lock();
            if s.closed {
                drop(s);
                job(Run::Failed(&closing()));
                return;
            }
            s.queue.push_back(job);
            let spawn = s.runners < self.max_readers && s.runners < s.queue.len();
            if spawn {
                s.runners += 1;
            }
            spawn
        };
        if spawn {
            let db = self.clone();
            tokio::task::spawn_blocking(move || db.run_readers());
        }
    }

    fn submit_write(self: &Arc<Self>, job: WriteItem) {
        let spawn = {
            let mut s = self.writer.lock();
            if s.closed {
                drop(s);
                job.fail(&closing());
                return;
            }
            s.queue.push_back(job);
            let spawn = s.runners == 0;
            if spawn {
                s.runners = 1;
            }
            spawn
        };
        if spawn {
            let db = self.clone();
            tokio::task::spawn_blocking(move || db.run_writer());
        }
    }

    /// A reader runner: one connection, jobs until the queue is empty.
    fn run_readers(&self) {
        let conn = match self.take_conn(&self.readers, true) {
            Ok(c) => c,
            Err(e) => {
                // Fail what waits (it would wait for this runner), then stop.
                let jobs: Vec<ReadJob> = {
                    let mut s = self.readers.lock();
                    s.runners -= 1;
                    if s.runners == 0 {
                        s.queue.drain(..).collect()
                    } else {
                        Vec::new()
                    }
                };
                tracing::warn!(db = self.name, error = %e, "cannot open a reader");
                for j in jobs {
                    j(Run::Failed(&e));
                }
                return;
            }
        };
        loop {
            let job = {
                let mut s = self.readers.lock();
                match s.queue.pop_front() {
                    Some(j) => j,
                    None => {
                        s.runners -= 1;
                        s.idle.push((conn, Instant::now()));
                        return;
                    }
                }
            };
            if catch_unwind(AssertUnwindSafe(|| job(Run::Conn(&conn)))).is_err() {
                tracing::error!(db = self.name, "a read job panicked");
            }
        }
    }

    /// The writer's runner: batches of queued writes, one transaction each.
    fn run_writer(&self) {
        let conn = match self.take_conn(&self.writer, false) {
            Ok(c) => c,
            Err(e) => {
                let jobs: Vec<WriteItem> = {
                    let mut s = self.writer.lock();
                    s.runners = 0;
                    s.queue.drain(..).collect()
                };
                tracing::warn!(db = self.name, error = %e, "cannot open the writer");
                for j in jobs {
                    j.fail(&e);
                }
                return;
            }
        };
        loop {
            let mut batch: Vec<WriteJob> = Vec::new();
            let raw = {
                let mut s = self.writer.lock();
                if s.queue.is_empty() {
                    s.runners = 0;
                    s.idle.push((conn, Instant::now()));
                    return;
                }
                // The writes up to the next raw item, or that item alone.
                match s.queue.pop_front() {
                    Some(WriteItem::Raw(j)) => Some(j),
                    Some(WriteItem::Job(j)) => {
                        batch.push(j);
                        while batch.len() < MAX_BATCH
                            && matches!(s.queue.front(), Some(WriteItem::Job(_)))
                        {
                            if let Some(WriteItem::Job(j)) = s.queue.pop_front() {
                                batch.push(j);
                            }
                        }
                        None
                    }
                    None => None,
                }
            };
            if let Some(job) = raw {
                if catch_unwind(AssertUnwindSafe(|| job(Run::Conn(&conn)))).is_err() {
                    tracing::error!(db = self.name, "a writer job panicked");
                }
                continue;
            }
            if catch_unwind(AssertUnwindSafe(|| self.run_batch(&conn, batch))).is_err() {
                tracing::error!(db = self.name, "a write job panicked");
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
            }
        }
    }

    fn run_batch(&self, conn: &Connection, batch: Vec<WriteJob>) {
        let mut jobs = batch.into_iter();
        // More than one transaction only if SQLite rolls one back on its own.
        while jobs.len() > 0 {
            if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                let e = ApiError::from(e);
                for j in jobs.by_ref() {
                    j(Run::Failed(&e));
                }
                return;
            }
            let mut done: Vec<Finish> = Vec::new();
            let mut aborted = None;
            for job in jobs.by_ref() {
                if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                    let e = ApiError::from(e);
                    job(Run::Failed(&e));
                    aborted = Some(e);
                    break;
                }
                let fin = job(Run::Conn(conn));
                if conn.is_autocommit() {
                    // An error that rolled the whole transaction back
                    // (SQLite does so on SQLITE_FULL, IOERR, NOMEM, ...):
                    // the earlier jobs' work is gone too.
                    aborted = Some(ApiError::unavailable(
                        "The write was rolled back with another one that failed, retry.",
                    ));
                    if let Some(f) = fin {
                        done.push(f);
                    }
                    break;
                }
                let end = if fin.is_some() {
                    "RELEASE job"
                } else {
                    "ROLLBACK TO job; RELEASE job"
                };
                if let Err(e) = conn.execute_batch(end) {
                    aborted = Some(ApiError::from(e));
                    if let Some(f) = fin {
                        done.push(f);
                    }
                    break;
                }
                if let Some(f) = fin {
                    done.push(f);
                }
            }
            if let Some(e) = aborted {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                for f in done {
                    f(Err(&e));
                }
                continue;
            }
            let result = match conn.execute_batch("COMMIT") {
                Ok(()) => Ok(watermark(conn)),
                Err(e) => {
                    // A refused commit (sync mode with the bucket down is
                    // SQLITE_BUSY before the commit point) leaves the
                    // transaction open: nothing of it may stay.
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    Err(ApiError::from(e))
                }
            };
            for f in done {
                f(result.as_ref().copied());
            }
        }
    }

    fn take_conn<J>(&self, lane: &Mutex<LaneState<J>>, readonly: bool) -> ApiResult<Connection> {
        if let Some((c, _)) = lane.lock().idle.pop() {
            return Ok(c);
        }
        let c = self.opener.open(readonly)?;
        lane.lock().open += 1;
        self.gauge.fetch_add(1, Ordering::Relaxed);
        Ok(c)
    }

    /// Close reader connections unused for `idle` (the writer stays: it
    /// holds the replica). Blocking (closing is quick for a reader).
    pub fn shrink(&self, idle: Duration) -> usize {
        let old: Vec<Connection> = {
            let mut s = self.readers.lock();
            let now = Instant::now();
            let (keep, old): (Vec<_>, Vec<_>) = s
                .idle
                .drain(..)
                .partition(|(_, t)| now.duration_since(*t) < idle);
            s.idle = keep;
            s.open -= old.len();
            old.into_iter().map(|(c, _)| c).collect()
        };
        let n = old.len();
        self.gauge.fetch_sub(n as i64, Ordering::Relaxed);
        drop(old);
        n
    }

    /// Connections open now (readers and the writer).
    pub fn open_connections(&self) -> usize {
        self.readers.lock().open + self.writer.lock().open
    }

    /// Run `f` on the writer connection outside the job queue, for the
    /// tenant's own maintenance (flush, status) when no job runs. `None`
    /// while a job holds it.
    pub fn with_idle_writer<R>(&self, f: impl FnOnce(&Connection) -> R) -> Option<R> {
        let s = self.writer.lock();
        if s.runners > 0 {
            return None;
        }
        s.idle.first().map(|(c, _)| f(c))
    }

    /// Refuse new jobs, wait (bounded) for running ones, then upload what is
    /// committed and close every connection. Blocking.
    pub fn close(&self, wait: Duration) -> ApiResult<()> {
        let deadline = Instant::now() + wait;
        self.readers.lock().closed = true;
        self.writer.lock().closed = true;
        loop {
            let busy = self.readers.lock().runners + self.writer.lock().runners;
            if busy == 0 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(ApiError::unavailable(format!(
                    "{}: {busy} jobs still running at close",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let readers: Vec<Connection> = {
            let mut s = self.readers.lock();
            s.open = 0;
            s.idle.drain(..).map(|(c, _)| c).collect()
        };
        self.gauge
            .fetch_sub(readers.len() as i64, Ordering::Relaxed);
        drop(readers);
        let writer = {
            let mut s = self.writer.lock();
            s.open = 0;
            s.idle.pop().map(|(c, _)| c)
        };
        let Some(conn) = writer else {
            return Ok(());
        };
        self.gauge.fetch_sub(1, Ordering::Relaxed);
        let flushed = conn
            .query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))
            .map(drop)
            .map_err(ApiError::from);
        drop(conn);
        if let Err(e) = &flushed {
            // The commits stay in the local spool and upload on the next open.
            tracing::warn!(db = self.name, error = %e, "final flush failed");
        }
        flushed
    }
}

/// The txid this connection last committed and the replicated watermark.
/// The write has committed by now: a pragma that fails only leaves zeros.
fn watermark(conn: &Connection) -> Commit {
    let get = |pragma: &str| {
        conn.query_row(pragma, [], |r| r.get::<_, String>(0))
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Commit {
        txid: get("PRAGMA strata_committed"),
        replicated: get("PRAGMA strata_replicated"),
    }
}

fn closing() -> ApiError {
    ApiError::unavailable("The tenant is being unloaded, retry.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &std::path::Path, max_readers: usize) -> Arc<Db> {
        // Plain SQLite files: the pool does not depend on the VFS.
        let opener = Opener {
            uri: format!("file:{}", dir.join("t.db").display()),
            busy_timeout: Duration::from_secs(5),
        };
        Db::open("t.db", opener, max_readers, Arc::default()).unwrap()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_failed_write_is_rolled_back_alone_and_the_writer_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path(), 2);
        rt().block_on(async {
            db.write(|c| Ok(c.execute_batch("CREATE TABLE t(x UNIQUE)")?))
                .await
                .unwrap();
            let mut tasks = Vec::new();
            for i in 0..40i64 {
                let db = db.clone();
                tasks.push(tokio::spawn(async move {
                    db.write(move |c| {
                        c.execute("INSERT INTO t VALUES (?1)", [i])?;
                        if i % 3 == 0 {
                            // Written, then refused: the savepoint goes.
                            c.execute("INSERT INTO t VALUES (?1)", [i])?;
                        }
                        Ok(i)
                    })
                    .await
                }));
            }
            let mut ok = 0;
            for t in tasks {
                match t.await.unwrap() {
                    Ok(_) => ok += 1,
                    Err(e) => assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST),
                }
            }
            assert_eq!(ok, 26);
            let n: i64 = db
                .read(|c| {
                    Ok(c.query_row("SELECT count(*) FROM t WHERE x % 3 != 0", [], |r| r.get(0))?)
                })
                .await
                .unwrap();
            let bad: i64 = db
                .read(|c| {
                    Ok(c.query_row("SELECT count(*) FROM t WHERE x % 3 = 0", [], |r| r.get(0))?)
                })
                .await
                .unwrap();
            assert_eq!((n, bad), (26, 0));
            // The writer is free again: no stuck transaction.
            let (v, _) = db.write(|c| Ok(c.is_autocommit())).await.unwrap();
            assert!(!v, "a job runs inside the batch's transaction");
            // The answer comes before the runner puts the writer back.
            let mut idle = None;
            for _ in 0..100 {
                idle = db.with_idle_writer(|c| c.is_autocommit());
                if idle.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(
                idle,
                Some(true),
                "the writer is back, out of any transaction"
            );
        });
    }

    #[test]
    fn a_panicking_job_does_not_take_the_pool_down() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path(), 1);
        rt().block_on(async {
            db.write(|c| Ok(c.execute_batch("CREATE TABLE t(x)")?))
                .await
                .unwrap();
            let r = db
                .write(|c| -> ApiResult<()> {
                    c.execute_batch("INSERT INTO t VALUES (1)")?;
                    panic!("job bug")
                })
                .await;
            assert!(r.is_err());
            let r = db.read(|_| -> ApiResult<()> { panic!("job bug") }).await;
            assert!(r.is_err());
            db.write(|c| Ok(c.execute_batch("INSERT INTO t VALUES (2)")?))
                .await
                .unwrap();
            let v: Vec<i64> = db
                .read(|c| {
                    let mut s = c.prepare("SELECT x FROM t")?;
                    let rows = s.query_map([], |r| r.get(0))?;
                    Ok(rows.collect::<rusqlite::Result<_>>()?)
                })
                .await
                .unwrap();
            assert_eq!(v, vec![2]);
        });
    }

    #[test]
    fn readers_run_in_parallel_up_to_the_limit_and_close_when_idle() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path(), 3);
        rt().block_on(async {
            db.write(|c| Ok(c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (7)")?))
                .await
                .unwrap();
            let running = Arc::new(AtomicI64::new(0));
            let peak = Arc::new(AtomicI64::new(0));
            let mut tasks = Vec::new();
            for _ in 0..12 {
                let (db, running, peak) = (db.clone(), running.clone(), peak.clone());
                tasks.push(tokio::spawn(async move {
                    db.read(move |c| {
                        let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(c.query_row("SELECT x FROM t", [], |r| r.get::<_, i64>(0))?)
                    })
                    .await
                }));
            }
            for t in tasks {
                assert_eq!(t.await.unwrap().unwrap(), 7);
            }
            assert_eq!(peak.load(Ordering::SeqCst), 3);
            assert_eq!(db.open_connections(), 4);
            // Runners put their connection back just after the last answer.
            let mut closed = 0;
            for _ in 0..100 {
                closed += db.shrink(Duration::ZERO);
                if closed == 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(closed, 3);
            assert_eq!(db.open_connections(), 1);
            // A reader may not write.
            let e = db
                .read(|c| Ok(c.execute_batch("INSERT INTO t VALUES (1)")?))
                .await
                .unwrap_err();
            assert_eq!(e.status(), axum::http::StatusCode::CONFLICT);
        });
    }

    #[test]
    fn close_refuses_new_jobs_and_closes_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path(), 2);
        let rt = rt();
        rt.block_on(async {
            db.write(|c| Ok(c.execute_batch("CREATE TABLE t(x)")?))
                .await
                .unwrap();
            db.read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))?))
                .await
                .unwrap();
        });
        assert_eq!(db.open_connections(), 2);
        // Not through the VFS: strata_flush is an unknown pragma here, so
        // close reports it, but the connections go all the same.
        let _ = db.close(Duration::from_secs(1));
        assert_eq!(db.open_connections(), 0);
        rt.block_on(async {
            let e = db.read(|_| Ok(())).await.unwrap_err();
            assert_eq!(e.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
            let e = db.write(|_| Ok(())).await.unwrap_err();
            assert_eq!(e.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        });
    }
}
