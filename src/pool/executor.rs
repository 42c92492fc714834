//! `Executor`, `Future` and `as_completed`: Python's `concurrent.futures` process pool.

use crate::loom::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::cell::{Cell, CANCELLED, RUNNING};
use super::task::{assert_no_captures, One};
use super::{single_job, IMap, Pool, PoolBuilder};
use crate::error::PoolError;

/// A pool that hands out a [`Future`] per submitted call; mirrors Python's
/// `concurrent.futures.ProcessPoolExecutor`.
///
/// Unlike Python's, a worker that dies fails only the future it was running
/// ([`PoolError::WorkerDied`]); the executor replaces the worker and stays usable (Python
/// breaks the whole pool with `BrokenProcessPool`).
///
/// ```
/// use shmproc::{as_completed, Executor};
/// fn cube(x: i64) -> i64 { x * x * x }
///
/// shmproc::init();
/// let ex = Executor::new(2)?;
/// let futures: Vec<_> = (1..=5).map(|x| ex.submit(cube, x)).collect::<Result<_, _>>()?;
/// let mut got: Vec<i64> = as_completed(futures).map(|f| f.result().unwrap()).collect();
/// got.sort();
/// assert_eq!(got, [1, 8, 27, 64, 125]);
/// let in_order: Vec<i64> = ex.map(cube, [2, 3]).map(Result::unwrap).collect();
/// assert_eq!(in_order, [8, 27]);
/// ex.shutdown(true);
/// # Ok::<(), shmproc::PoolError>(())
/// ```
#[derive(Debug)]
pub struct Executor {
    pool: Pool,
}

impl Executor {
    /// An executor with `max_workers` worker processes (default start method).
    pub fn new(max_workers: usize) -> Result<Self, PoolError> {
        Self::from_builder(Pool::builder().processes(max_workers))
    }

    /// An executor configured like a [`Pool`] (initializer, start method, threads, …).
    pub fn from_builder(builder: PoolBuilder) -> Result<Self, PoolError> {
        Ok(Self {
            pool: builder.build()?,
        })
    }

    /// Schedules `f(args)` (Python's `submit`); [`PoolError::Closed`] after `shutdown`.
    pub fn submit<F, A, R>(&self, f: F, args: A) -> Result<Future<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        const { assert_no_captures::<F>() };
        let _ = f; // only its type travels
        let cell = Cell::<R>::new();
        let job = single_job::<One<F>, A, R>(&args, cell.clone(), |_: &R| {}, |_: &PoolError| {}, true)?;
        self.pool.submit_job(job)?;
        Ok(Future { cell })
    }

    /// Results of `f` over `iterable`, in order, computed ahead in a bounded window (Python's
    /// `Executor.map`; one item per chunk, as there).
    pub fn map<F, A, R, I>(&self, f: F, iterable: I) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.pool.imap(f, iterable)
    }

    /// [`map`](Self::map) with `chunksize` items per chunk (Python's
    /// `Executor.map(f, it, chunksize=n)`; 0 yields one [`PoolError::Invalid`]).
    pub fn map_chunked<F, A, R, I>(&self, f: F, iterable: I, chunksize: usize) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.pool.imap_chunked(f, iterable, chunksize)
    }

    /// Takes no new work; with `wait`, returns once every pending future is done and the
    /// workers have exited (Python's `shutdown(wait)`). Without `wait`, pending work still
    /// runs in the background.
    pub fn shutdown(&self, wait: bool) {
        self.pool.close();
        if wait {
            let _ = self.pool.join();
        }
    }

    /// The pool underneath.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Drop for Executor {
    /// Waits for the pending futures, like leaving Python's `with ProcessPoolExecutor() as ex:`
    /// block (`shutdown(wait=True)`).
    fn drop(&mut self) {
        self.shutdown(true);
    }
}

/// The pending result of [`Executor::submit`]; mirrors Python's `concurrent.futures.Future`.
///
/// ```
/// use std::time::Duration;
/// use shmproc::{Executor, PoolError};
/// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
///
/// shmproc::init();
/// let ex = Executor::new(1)?;
/// let busy = ex.submit(nap, 300)?;
/// let queued = ex.submit(nap, 1)?;
/// assert!(queued.cancel()); // not started yet
/// assert!(queued.cancelled());
/// assert_eq!(queued.result(), Err(PoolError::Cancelled));
/// assert_eq!(busy.result_timeout(Duration::from_millis(10)), Err(PoolError::Timeout));
/// assert_eq!(busy.result()?, 300);
/// # Ok::<(), PoolError>(())
/// ```
pub struct Future<R> {
    cell: Arc<Cell<R>>,
}

impl<R> std::fmt::Debug for Future<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Future")
            .field("done", &self.done())
            .field("running", &self.running())
            .finish()
    }
}

impl<R> Future<R> {
    /// Waits for the result (Python's `result()`).
    pub fn result(self) -> Result<R, PoolError> {
        self.cell.take(None)
    }

    /// Waits at most `timeout`; [`PoolError::Timeout`] leaves the future pending.
    pub fn result_timeout(&self, timeout: Duration) -> Result<R, PoolError> {
        self.cell.take(Instant::now().checked_add(timeout))
    }

    /// Whether it finished, failed or was cancelled (Python's `done()`).
    pub fn done(&self) -> bool {
        self.cell.is_done()
    }

    /// Whether a worker has taken it and it has not finished (Python's `running()`).
    pub fn running(&self) -> bool {
        self.cell.claim.load(Ordering::Acquire) == RUNNING && !self.done()
    }

    /// Whether [`cancel`](Self::cancel) succeeded.
    pub fn cancelled(&self) -> bool {
        self.cell.claim.load(Ordering::Acquire) == CANCELLED
    }

    /// Cancels the call if no worker has taken it yet; whether it is cancelled (Python's
    /// `cancel()`). A cancelled future's result is [`PoolError::Cancelled`].
    pub fn cancel(&self) -> bool {
        self.cell.cancel()
    }

    /// Runs `f` once the future is done, at once if it already is (Python's
    /// `add_done_callback`); it runs on the pool's thread that completed the future.
    pub fn add_done_callback(&self, f: impl FnOnce() + Send + 'static) {
        self.cell.on_done(Box::new(f));
    }
}

/// Yields futures as they complete (Python's `concurrent.futures.as_completed`).
///
/// ```
/// use shmproc::{as_completed, Executor};
/// fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
///
/// shmproc::init();
/// let ex = Executor::new(2)?;
/// let fs = vec![ex.submit(nap, 400)?, ex.submit(nap, 10)?];
/// let order: Vec<u64> = as_completed(fs).map(|f| f.result().unwrap()).collect();
/// assert_eq!(order, [10, 400]);
/// # Ok::<(), shmproc::PoolError>(())
/// ```
pub fn as_completed<R>(futures: impl IntoIterator<Item = Future<R>>) -> AsCompleted<R> {
    let (tx, rx) = mpsc::channel();
    let futures: Vec<Option<Future<R>>> = futures.into_iter().map(Some).collect();
    for (i, f) in futures.iter().enumerate() {
        let tx = tx.clone();
        f.as_ref().expect("just made").add_done_callback(move || {
            let _ = tx.send(i);
        });
    }
    AsCompleted {
        left: futures.len(),
        futures,
        rx,
    }
}

/// The iterator of [`as_completed`]: each future once, as it completes.
///
/// ```
/// use std::time::Duration;
/// use shmproc::{as_completed, Executor, PoolError};
/// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
///
/// shmproc::init();
/// let ex = Executor::new(1)?;
/// let mut done = as_completed(vec![ex.submit(nap, 300)?]);
/// assert!(matches!(done.next_timeout(Duration::from_millis(10)), Err(PoolError::Timeout)));
/// assert_eq!(done.next().map(|f| f.result()), Some(Ok(300)));
/// assert!(done.next().is_none());
/// # Ok::<(), PoolError>(())
/// ```
pub struct AsCompleted<R> {
    futures: Vec<Option<Future<R>>>,
    rx: mpsc::Receiver<usize>,
    left: usize,
}

impl<R> std::fmt::Debug for AsCompleted<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted").field("left", &self.left).finish()
    }
}

impl<R> AsCompleted<R> {
    /// The next future to complete, waiting at most `timeout`: `Ok(None)` when all were
    /// yielded, [`PoolError::Timeout`] if none completed in time (Python's `as_completed`
    /// timeout).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Future<R>>, PoolError> {
        if self.left == 0 {
            return Ok(None);
        }
        match self.rx.recv_timeout(timeout) {
            Ok(i) => Ok(self.yield_index(i)),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(PoolError::Timeout),
            // Every pending future's callback is gone without firing: none will complete
            // (as `next` ends). Not a timeout.
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(None),
        }
    }

    fn yield_index(&mut self, i: usize) -> Option<Future<R>> {
        self.left -= 1;
        self.futures.get_mut(i).and_then(Option::take)
    }
}

impl<R> Iterator for AsCompleted<R> {
    type Item = Future<R>;

    fn next(&mut self) -> Option<Future<R>> {
        if self.left == 0 {
            return None;
        }
        let i = self.rx.recv().ok()?;
        self.yield_index(i)
    }
}
