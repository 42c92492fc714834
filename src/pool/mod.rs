//! Process pools: [`Pool`] (Python's `multiprocessing.Pool`, and with
//! [`PoolBuilder::threads`] its thread twin `multiprocessing.dummy.Pool`) and [`Executor`]
//! (Python's `concurrent.futures.ProcessPoolExecutor`).
//!
//! # Tasks
//! A task is a `fn` item or a closure that captures nothing, with serde arguments and
//! result. Workers run this same executable, so the task's code travels as a reference the
//! worker resolves; its arguments travel postcard-encoded through the worker's
//! shared-memory pipe. A closure that captures data is refused at compile time. (A closure
//! whose captures are all zero-sized is accepted: in a worker it is re-created, not copied,
//! so do not capture a zero-sized "token" type whose existence stands for something done at
//! run time.)
//!
//! # Dispatch and robustness
//! Every worker has its own pipe and a feeding thread in the parent, which sends it jobs
//! (chunks of items) and matches its answers in order. A worker's feeder keeps the next job
//! waiting in its pipe behind the running one (so the worker never waits for work), and up
//! to 16 while jobs are short (under 200 µs of worker time), to hide the hand-over latency.
//! It takes such extra jobs only while more are queued than workers are idle, so idle
//! workers get work first.
//!
//! No job waits behind a busy worker while another is idle: a feeder whose worker is idle
//! and finds the pool's queue empty *takes back* jobs sent ahead to a busy worker that has
//! not started them, and runs them on its own worker (as a free worker of Python's pool takes
//! the next task). Whether a job sent ahead is started by its worker or taken back is
//! decided by one compare-and-swap on a word in memory the worker and the pool share, so a
//! job taken back never runs twice; a worker that finds its job taken back skips it.
//!
//! So a worker that dies — `SIGKILL`, `abort()`, the OOM killer — fails exactly the job it
//! had started with [`PoolError::WorkerDied`] (naming the signal); the jobs it had not
//! started (waiting in its pipe, or not yet sent: also a job sent to a worker that had died
//! while idle) go to other workers, a replacement starts, and nothing waits forever.
//! (Python's `Pool` hangs for good here; `ProcessPoolExecutor` fails every pending future
//! with `BrokenProcessPool`.) A panic in a task fails only that item, with the panic's
//! message and location, and the worker keeps serving.
//!
//! Workers are daemons of their feeding thread: they die with the pool's process, even when
//! it is `SIGKILL`ed, and they also leave when their pipe's other end is gone. Their pipes
//! are anonymous memory, so nothing is left in `/dev/shm`.

mod cell;
mod executor;
mod init;
mod task;
mod worker;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

#[cfg(loom)]
pub use self::cell::loom_cell;
use self::cell::Cell;
pub use self::executor::{as_completed, AsCompleted, Executor, Future};
use self::init::Init;
pub use self::task::StarFn;
use self::task::{assert_no_captures, offset_of, task_message, One, Runner, Star};
use self::worker::{Config, Job, Shared, Sink};
use crate::error::PoolError;
use crate::process::{get_start_method, StartMethod};

/// The pool's wire format, exposed for the fuzz targets.
#[doc(hidden)]
pub mod wire {
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use super::task::{assert_no_captures, offset_of, run_chunk, One, DONE};
    pub use super::task::{decode_chunk, decode_outcomes, parse_reply, parse_task, Outcomes, Reply, TaskMsg};

    /// Runs a task message's payload through `f`'s trampoline in this process, as a
    /// worker does, and returns the worker's reply.
    pub fn run_payload<F, A, R>(f: F, payload: &[u8]) -> Vec<u8>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        const { assert_no_captures::<F>() };
        let _ = f;
        let mut out = Vec::new();
        run_chunk(offset_of::<One<F>, A, R>(), payload, DONE, &mut out);
        out
    }

    /// A task message for `f` over `items`, as the pool sends it.
    pub fn task_message<F, A, R>(f: F, items: &[A]) -> Vec<u8>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        const { assert_no_captures::<F>() };
        let _ = f;
        super::task::task_message(offset_of::<One<F>, A, R>(), items).expect("encodable items")
    }
}

/// Python's default `chunksize` for `map`: the items split into about four chunks per
/// worker, i.e. `ceil(len / (4 × workers))` (and 1 for an empty input).
///
/// ```
/// assert_eq!(shmproc::default_chunksize(100_000, 2), 12_500);
/// assert_eq!(shmproc::default_chunksize(10, 4), 1);
/// ```
pub fn default_chunksize(len: usize, workers: usize) -> usize {
    let per = workers.max(1) * 4;
    len.div_ceil(per).max(1)
}

/// Configures a [`Pool`]: size, initializer, `maxtasksperchild`, start method, backend.
///
/// ```
/// use shmproc::{Pool, StartMethod};
/// fn setup(tag: String) { std::env::set_var("POOL_TAG", tag) }
/// fn tagged(x: u32) -> String { format!("{}-{x}", std::env::var("POOL_TAG").unwrap()) }
///
/// shmproc::init();
/// let pool = Pool::builder()
///     .processes(2)
///     .initializer(setup, "w".to_string())
///     .maxtasksperchild(100)
///     .start_method(StartMethod::Fork)
///     .build()?;
/// assert_eq!(pool.apply(tagged, 7)?, "w-7");
/// # Ok::<(), shmproc::PoolError>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<Result<Init, PoolError>>,
    max_tasks: Option<u64>,
    method: Option<StartMethod>,
    threads: bool,
}

impl PoolBuilder {
    /// Number of workers (default [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Runs `f(args)` once in every worker when it starts (Python's `initializer`,
    /// `initargs`). If it panics, or kills its worker, the pool is broken: every task fails
    /// with [`PoolError::InitializerFailed`] instead of workers restarting forever.
    ///
    /// `args` may carry shmproc handles (a [`Dict`](crate::Dict), a [`Lock`](crate::Lock),
    /// a [`Queue`](crate::Queue)…), with either start method: each worker decodes its own
    /// handle to the same object, typically to keep it in a `static` for its tasks (the
    /// idiom Python users know from `initializer`). Pipe ends cannot be passed this way
    /// ([`PoolError::Codec`]): every worker would hold the same end.
    pub fn initializer<F, A>(mut self, f: F, args: A) -> Self
    where
        F: Fn(A) + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        const { assert_no_captures::<F>() };
        let _ = f; // only its type travels
        let offset = offset_of::<One<F>, A, ()>();
        self.init = Some(Init::new(offset, args));
        self
    }

    /// Replaces a worker after it has run `n` jobs (Python's `maxtasksperchild`; a chunk
    /// counts as one job). Ignored by the thread backend.
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// How workers start (default [`get_start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Runs tasks in threads of this process instead of worker processes (Python's
    /// `multiprocessing.dummy.Pool`): the same API, the same encoding of arguments and
    /// results, no process start-up.
    pub fn threads(mut self, threads: bool) -> Self {
        self.threads = threads;
        self
    }

    /// Starts the workers.
    pub fn build(self) -> Result<Pool, PoolError> {
        let workers = self.processes.unwrap_or_else(crate::cpu_count);
        if workers == 0 {
            return Err(PoolError::Invalid("a pool needs at least one worker"));
        }
        if self.max_tasks == Some(0) {
            return Err(PoolError::Invalid("maxtasksperchild must be at least 1"));
        }
        let init = self.init.transpose()?;
        crate::process::child::install_panic_hook();
        let shared = Shared::new(Config {
            threads: self.threads,
            method: self.method.unwrap_or_else(get_start_method),
            init,
            max_tasks: if self.threads { None } else { self.max_tasks },
            workers,
        });
        let mut pumps = Vec::with_capacity(workers);
        for slot in 0..workers {
            let sh = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("shmproc-pool-{slot}"))
                .spawn(move || worker::pump(sh, slot));
            match spawned {
                Ok(h) => pumps.push(h),
                Err(e) => {
                    shared.terminate();
                    for h in pumps {
                        let _ = h.join();
                    }
                    return Err(PoolError::Start(e.to_string()));
                }
            }
        }
        Ok(Pool {
            shared,
            pumps: Mutex::new(pumps),
            workers,
        })
    }
}

/// A pool of worker processes; mirrors Python's `multiprocessing.Pool`.
///
/// Results come back in order from [`map`](Self::map), [`starmap`](Self::starmap) and
/// [`imap`](Self::imap), in completion order from [`imap_unordered`](Self::imap_unordered);
/// [`apply_async`](Self::apply_async) returns an [`AsyncResult`]. A task's panic or its
/// worker's death is that task's error (see [`PoolError`]); the pool goes on.
///
/// A task that captures data does not compile, since only its code travels:
///
/// ```compile_fail
/// let pool = shmproc::Pool::new(1).unwrap();
/// let k = 3u64;
/// let _ = pool.map(move |x: u64| x + k, 0..10u64); // captures `k`
/// ```
///
/// `close()` then `join()` finishes the queued work and stops the workers; `terminate()`
/// (and dropping the pool) kills them at once and fails what is unfinished with
/// [`PoolError::Terminated`].
///
/// ```
/// use shmproc::Pool;
/// fn square(x: u64) -> u64 { x * x }
///
/// shmproc::init(); // the first line of main() in a real program
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.map(square, 0..10u64)?, (0..10u64).map(square).collect::<Vec<_>>());
/// let total: u64 = pool.imap_unordered_chunked(square, 0..100u64, 8).map(|r| r.unwrap()).sum();
/// assert_eq!(total, (0..100u64).map(square).sum());
/// assert_eq!(pool.starmap(|a: u64, b: u64| a.pow(b as u32), [(2, 10), (3, 3)])?, [1024, 27]);
/// let r = pool.apply_async(square, 12)?;
/// assert_eq!(r.get()?, 144);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), shmproc::PoolError>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
    workers: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers)
            .field("threads", &self.shared.cfg.threads)
            .finish()
    }
}

impl Pool {
    /// A pool of `processes` workers started with the default start method.
    pub fn new(processes: usize) -> Result<Self, PoolError> {
        Self::builder().processes(processes).build()
    }

    /// A pool of `threads` worker threads (Python's `multiprocessing.dummy.Pool`).
    pub fn threads(threads: usize) -> Result<Self, PoolError> {
        Self::builder().processes(threads).threads(true).build()
    }

    /// A builder (defaults: `cpu_count()` workers, no initializer, workers never recycled,
    /// the default start method, processes).
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            init: None,
            max_tasks: None,
            method: None,
            threads: false,
        }
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Applies `f` to every item and returns the results in order (Python's `map`). Items
    /// travel in chunks of [`default_chunksize`] items, as in Python; choose the size with
    /// [`map_chunked`](Self::map_chunked). Returns the first error to arrive; later items
    /// still run.
    pub fn map<F, A, R, I>(&self, f: F, iterable: I) -> Result<Vec<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, iterable)?.get()
    }

    /// [`map`](Self::map) with items sent in chunks of `chunksize` (Python's
    /// `map(f, it, chunksize)`); a `chunksize` of 0 is refused with [`PoolError::Invalid`].
    ///
    /// ```
    /// use shmproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// shmproc::init();
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.map_chunked(square, 0..100u64, 7)?, pool.map(square, 0..100u64)?);
    /// assert!(matches!(pool.map_chunked(square, 0..1u64, 0), Err(shmproc::PoolError::Invalid(_))));
    /// # Ok::<(), shmproc::PoolError>(())
    /// ```
    pub fn map_chunked<F, A, R, I>(&self, f: F, iterable: I, chunksize: usize) -> Result<Vec<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_chunked(f, iterable, chunksize)?.get()
    }

    /// Like [`map`](Self::map) for functions of several arguments, each item a tuple
    /// (Python's `starmap`).
    pub fn starmap<F, Args, R, I>(&self, f: F, iterable: I) -> Result<Vec<R>, PoolError>
    where
        F: StarFn<Args, R>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_async(f, iterable)?.get()
    }

    /// [`starmap`](Self::starmap) with an explicit chunk size (0 is refused).
    pub fn starmap_chunked<F, Args, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        F: StarFn<Args, R>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_async_chunked(f, iterable, chunksize)?.get()
    }

    /// Like [`map`](Self::map), but returns at once with an [`AsyncResult`] for the whole
    /// list (Python's `map_async`).
    ///
    /// ```
    /// use shmproc::Pool;
    /// fn double(x: u32) -> u32 { 2 * x }
    ///
    /// shmproc::init();
    /// let pool = Pool::new(2)?;
    /// let pending = pool.map_async(double, 1..=3)?;
    /// // ... other work meanwhile ...
    /// assert_eq!(pending.get()?, [2, 4, 6]);
    /// # Ok::<(), shmproc::PoolError>(())
    /// ```
    pub fn map_async<F, A, R, I>(&self, f: F, iterable: I) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_inner(f, iterable, None)
    }

    /// [`map_async`](Self::map_async) with an explicit chunk size (0 is refused).
    pub fn map_async_chunked<F, A, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_inner(f, iterable, Some(chunksize))
    }

    fn map_async_inner<F, A, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        const { assert_no_captures::<F>() };
        let _ = f; // only its type travels
        let items: Vec<A> = iterable.into_iter().collect();
        self.run_map::<One<F>, A, R>(&items, chunksize)
    }

    /// Like [`starmap`](Self::starmap), returning at once (Python's `starmap_async`).
    pub fn starmap_async<F, Args, R, I>(&self, f: F, iterable: I) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: StarFn<Args, R>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_async_inner(f, iterable, None)
    }

    /// [`starmap_async`](Self::starmap_async) with an explicit chunk size (0 is refused).
    pub fn starmap_async_chunked<F, Args, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: StarFn<Args, R>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_async_inner(f, iterable, Some(chunksize))
    }

    fn starmap_async_inner<F, Args, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: StarFn<Args, R>,
        Args: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        const { assert_no_captures::<F>() };
        let _ = f; // only its type travels
        let items: Vec<Args> = iterable.into_iter().collect();
        self.run_map::<Star<F>, Args, R>(&items, chunksize)
    }

    fn run_map<Rn, A, R>(
        &self,
        items: &[A],
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        Rn: Runner<A, R>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let cs = chunksize.unwrap_or_else(|| default_chunksize(items.len(), self.workers));
        if cs == 0 {
            return Err(PoolError::Invalid("chunksize must be at least 1"));
        }
        let state = Arc::new(MapState::<R>::new(items.len(), items.len().div_ceil(cs)));
        let result = AsyncResult {
            cell: state.out.clone(),
        };
        if items.is_empty() {
            state.out.set(Ok(Vec::new()));
            return Ok(result);
        }
        let offset = offset_of::<Rn, A, R>();
        // Submit as we encode, so workers start on the first chunks at once; then in
        // batches, so that a long map takes the queue's lock rarely.
        let mut batch = Vec::new();
        for (i, chunk) in items.chunks(cs).enumerate() {
            batch.push(Job {
                msg: task_message(offset, chunk)?,
                sink: state.sink(i, chunk.len()),
                claim: None,
            });
            if i < 2 * self.workers || batch.len() >= 64 {
                self.shared.submit(batch.drain(..))?;
            }
        }
        self.shared.submit(batch)?;
        Ok(result)
    }

    /// Runs `f(args)` in a worker and waits for the result (Python's `apply`).
    pub fn apply<F, A, R>(&self, f: F, args: A) -> Result<R, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Starts `f(args)` in a worker (Python's `apply_async`).
    pub fn apply_async<F, A, R>(&self, f: F, args: A) -> Result<AsyncResult<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, args, |_: &R| {}, |_: &PoolError| {})
    }

    /// [`apply_async`](Self::apply_async) with Python's `callback` and `error_callback`:
    /// one of them runs with the outcome, on the pool's thread that received it, before the
    /// result becomes ready. Keep them short, as in Python.
    pub fn apply_async_with<F, A, R>(
        &self,
        f: F,
        args: A,
        callback: impl FnOnce(&R) + Send + 'static,
        error_callback: impl FnOnce(&PoolError) + Send + 'static,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        const { assert_no_captures::<F>() };
        let _ = f; // only its type travels
        let cell = Cell::<R>::new();
        let job = single_job::<One<F>, A, R>(&args, cell.clone(), callback, error_callback, false)?;
        self.shared.submit([job])?;
        Ok(AsyncResult { cell })
    }

    /// Like [`map`](Self::map), but lazy: results come in order as they are ready, and
    /// the input is read only as far as a bounded window ahead of the results, so it may be
    /// endless (Python's `imap`; one item per chunk, as there).
    pub fn imap<F, A, R, I>(&self, f: F, iterable: I) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_chunked(f, iterable, 1)
    }

    /// [`imap`](Self::imap) with `chunksize` items per chunk; a `chunksize` of 0 makes the
    /// iterator yield one [`PoolError::Invalid`] and end.
    pub fn imap_chunked<F, A, R, I>(&self, f: F, iterable: I, chunksize: usize) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        IMap {
            feed: Feed::of(self, f, iterable.into_iter(), chunksize),
            window: VecDeque::new(),
            ready: Vec::new().into_iter(),
        }
    }

    /// Like [`imap`](Self::imap), but results come in the order they finish (Python's
    /// `imap_unordered`).
    pub fn imap_unordered<F, A, R, I>(&self, f: F, iterable: I) -> IMapUnordered<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_unordered_chunked(f, iterable, 1)
    }

    /// [`imap_unordered`](Self::imap_unordered) with `chunksize` items per chunk (0: one
    /// [`PoolError::Invalid`], then the end).
    pub fn imap_unordered_chunked<F, A, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> IMapUnordered<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        IMapUnordered {
            feed: Feed::of(self, f, iterable.into_iter(), chunksize),
            out: Arc::new((Mutex::new(VecDeque::new()), Condvar::new())),
            pending: 0,
        }
    }

    /// No new work from now on; queued work still runs (Python's `close`).
    pub fn close(&self) {
        self.shared.close();
    }

    /// Kills the workers now; unfinished tasks fail with [`PoolError::Terminated`]
    /// (Python's `terminate`). With the thread backend, running tasks finish first.
    pub fn terminate(&self) {
        self.shared.terminate();
    }

    /// Waits for the workers to finish and exit (Python's `join`). Call
    /// [`close`](Self::close) or [`terminate`](Self::terminate) first, or get
    /// [`PoolError::NotClosed`].
    pub fn join(&self) -> Result<(), PoolError> {
        if !self.shared.lock().closed {
            return Err(PoolError::NotClosed);
        }
        let pumps = std::mem::take(&mut *self.pumps.lock().unwrap_or_else(|p| p.into_inner()));
        for h in pumps {
            let _ = h.join();
        }
        Ok(())
    }

    pub(crate) fn submit_job(&self, job: Job) -> Result<(), PoolError> {
        self.shared.submit([job])
    }
}

impl Drop for Pool {
    /// Terminates the workers and waits for them (Python's `with Pool() as p:` exit).
    fn drop(&mut self) {
        self.shared.terminate();
        let _ = self.join();
    }
}

/// A job for one item whose outcome goes to `cell` (after the callbacks).
fn single_job<Rn, A, R>(
    args: &A,
    cell: Arc<Cell<R>>,
    callback: impl FnOnce(&R) + Send + 'static,
    error_callback: impl FnOnce(&PoolError) + Send + 'static,
    cancellable: bool,
) -> Result<Job, PoolError>
where
    Rn: Runner<A, R>,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    let msg = task_message(offset_of::<Rn, A, R>(), std::slice::from_ref(args))?;
    let claim = cancellable.then(|| cell.claim.clone());
    let sink: Sink = Box::new(move |r| {
        let out = r
            .and_then(|p| task::decode_outcomes::<R>(p, 1))
            .and_then(|mut v| v.pop().expect("one item"));
        match &out {
            Ok(v) => callback(v),
            Err(e) => error_callback(e),
        }
        cell.set(out);
    });
    Ok(Job { msg, sink, claim })
}

/// The result of [`Pool::apply_async`]; mirrors Python's `AsyncResult`.
///
/// ```
/// use std::time::Duration;
/// use shmproc::{Pool, PoolError};
/// fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
///
/// shmproc::init();
/// let pool = Pool::new(1)?;
/// let r = pool.apply_async(slow, 300)?;
/// assert!(!r.ready());
/// assert_eq!(r.successful(), Err(PoolError::NotReady));
/// assert_eq!(r.get_timeout(Duration::from_millis(10)), Err(PoolError::Timeout));
/// assert_eq!(r.wait_timeout(Duration::from_millis(10)), Err(PoolError::Timeout));
/// r.wait();
/// assert_eq!(r.successful(), Ok(true));
/// assert_eq!(r.get()?, 300);
/// # Ok::<(), PoolError>(())
/// ```
pub struct AsyncResult<R> {
    cell: Arc<Cell<R>>,
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<R> AsyncResult<R> {
    /// Waits for the result and returns it (Python's `get()`).
    pub fn get(self) -> Result<R, PoolError> {
        self.cell.take(None)
    }

    /// Waits at most `timeout` ([`PoolError::Timeout`] leaves the task running and the
    /// result retrievable later). A value is returned once (then
    /// [`PoolError::AlreadyTaken`]); an error every time it is asked for.
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, PoolError> {
        self.cell.take(Instant::now().checked_add(timeout))
    }

    /// Waits until the result is ready (Python's `wait()`).
    pub fn wait(&self) {
        self.cell.wait(None);
    }

    /// Waits at most `timeout` for the result to be ready: `Ok(())` once it is,
    /// [`PoolError::Timeout`] if `timeout` passes first (the crate's timeout rule; the
    /// result stays retrievable).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), PoolError> {
        match self.cell.wait(Instant::now().checked_add(timeout)) {
            true => Ok(()),
            false => Err(PoolError::Timeout),
        }
    }

    /// Whether the task has finished (Python's `ready()`).
    pub fn ready(&self) -> bool {
        self.cell.is_done()
    }

    /// Whether it finished without error; [`PoolError::NotReady`] before (Python's
    /// `successful()`, which raises `ValueError` then).
    pub fn successful(&self) -> Result<bool, PoolError> {
        self.cell.successful().ok_or(PoolError::NotReady)
    }
}

/// Collects a `map`'s chunks; the last one (or the first error) completes `out`.
struct MapState<R> {
    inner: Mutex<MapInner<R>>,
    out: Arc<Cell<Vec<R>>>,
}

struct MapInner<R> {
    /// Each chunk's values once it is in.
    chunks: Vec<Option<Vec<R>>>,
    /// Chunks not yet in.
    remaining: usize,
    items: usize,
}

impl<R: DeserializeOwned + Send + 'static> MapState<R> {
    fn new(items: usize, chunks: usize) -> Self {
        Self {
            inner: Mutex::new(MapInner {
                chunks: std::iter::repeat_with(|| None).take(chunks).collect(),
                remaining: chunks,
                items,
            }),
            out: Cell::new(),
        }
    }

    fn sink(self: &Arc<Self>, index: usize, len: usize) -> Sink {
        let me = self.clone();
        Box::new(move |r| {
            let decoded =
                r.and_then(|p| task::decode_chunk::<R>(p, len))
                    .and_then(|o| match o.panics.first() {
                        None => Ok(o.values),
                        Some((_, info)) => Err(PoolError::Panicked(info.clone())),
                    });
            let mut st = me.inner.lock().unwrap_or_else(|p| p.into_inner());
            st.remaining -= 1;
            match decoded {
                // The first error completes the map (later chunks still run, unheard).
                Err(e) => me.out.set(Err(e)),
                Ok(values) => {
                    st.chunks[index] = Some(values);
                    if st.remaining == 0 {
                        let mut all = Vec::with_capacity(st.items);
                        for chunk in std::mem::take(&mut st.chunks) {
                            all.extend(chunk.into_iter().flatten());
                        }
                        drop(st);
                        me.out.set(Ok(all)); // ignored if an error came first
                    }
                }
            }
        })
    }
}

/// Reads an `imap`'s input chunk by chunk and submits the chunks.
struct Feed<'p, I> {
    pool: &'p Pool,
    input: I,
    offset: u64,
    chunksize: usize,
    /// How many chunks may be in flight ahead of the consumer.
    window: usize,
    /// An error to report before anything else (bad `chunksize`).
    error: Option<PoolError>,
    /// The input is exhausted, or submitting failed: no more chunks.
    ended: bool,
}

impl<'p, I: Iterator> Feed<'p, I>
where
    I::Item: Serialize,
{
    /// A feed of `f` over `input` (`f` captures nothing: only its type travels).
    fn of<F, R>(pool: &'p Pool, f: F, input: I, chunksize: usize) -> Self
    where
        F: Fn(I::Item) -> R + Copy + Send + Sync + 'static,
        I::Item: DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        const { assert_no_captures::<F>() };
        let _ = f;
        let offset = offset_of::<One<F>, I::Item, R>();
        let error = (chunksize == 0).then_some(PoolError::Invalid("chunksize must be at least 1"));
        let chunksize = chunksize.max(1);
        Self {
            pool,
            input,
            offset,
            chunksize,
            window: (pool.workers * 32).div_ceil(chunksize).max(pool.workers * 2),
            error,
            ended: false,
        }
    }

    /// Submits the next chunk with `sink(len)` as its sink: `None` at the end of the input,
    /// `Some(Err)` once if a chunk cannot be submitted (then the end).
    fn next_chunk(&mut self, sink: impl FnOnce(usize) -> Sink) -> Option<Result<usize, PoolError>> {
        if self.ended {
            return None;
        }
        if let Some(e) = self.error.take() {
            self.ended = true;
            return Some(Err(e));
        }
        let chunk: Vec<I::Item> = self.input.by_ref().take(self.chunksize).collect();
        if chunk.is_empty() {
            self.ended = true;
            return None;
        }
        let len = chunk.len();
        let r = task_message(self.offset, &chunk).and_then(|msg| {
            self.pool.submit_job(Job {
                msg,
                sink: sink(len),
                claim: None,
            })
        });
        if r.is_err() {
            self.ended = true;
        }
        Some(r.map(|()| len))
    }
}

type ChunkCell<R> = Arc<Cell<Vec<Result<R, PoolError>>>>;

/// The iterator of [`Pool::imap`] (and [`Executor::map`]): results in input order, one
/// `Result` per item (Python's `IMapIterator`).
///
/// ```
/// use shmproc::{Pool, PoolError};
/// fn inverse(x: i32) -> i32 { 100 / x } // panics for 0
///
/// shmproc::init();
/// let pool = Pool::new(2)?;
/// let mut it = pool.imap(inverse, [50, 0, 25]);
/// assert_eq!(it.next(), Some(Ok(2)));
/// assert!(matches!(it.next(), Some(Err(PoolError::Panicked(_)))));
/// assert_eq!(it.next(), Some(Ok(4)));
/// assert_eq!(it.next(), None);
/// # Ok::<(), PoolError>(())
/// ```
pub struct IMap<'p, I, R> {
    feed: Feed<'p, I>,
    /// Chunks submitted, oldest first, with their length.
    window: VecDeque<(ChunkCell<R>, usize)>,
    ready: std::vec::IntoIter<Result<R, PoolError>>,
}

impl<I: Iterator, R> Iterator for IMap<'_, I, R>
where
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.next() {
                return Some(r);
            }
            while self.window.len() < self.feed.window {
                let cell = Cell::new();
                let c2 = cell.clone();
                match self.feed.next_chunk(|len| chunk_sink(c2, len)) {
                    None => break,
                    Some(Ok(len)) => self.window.push_back((cell, len)),
                    Some(Err(e)) => {
                        // Reported in its place, after the results before it.
                        cell.set(Ok(vec![Err(e)]));
                        self.window.push_back((cell, 1));
                    }
                }
            }
            let (cell, len) = self.window.pop_front()?;
            self.ready = match cell.take(None) {
                Ok(v) => v,
                Err(e) => vec![e; len].into_iter().map(Err).collect::<Vec<_>>(),
            }
            .into_iter();
        }
    }
}

fn chunk_sink<R: DeserializeOwned + Send + 'static>(
    cell: Arc<Cell<Vec<Result<R, PoolError>>>>,
    len: usize,
) -> Sink {
    Box::new(move |r| cell.set(r.and_then(|p| task::decode_outcomes::<R>(p, len))))
}

type Outbox<R> = Arc<(Mutex<VecDeque<Result<R, PoolError>>>, Condvar)>;

/// The iterator of [`Pool::imap_unordered`]: results in completion order, one `Result`
/// per item.
///
/// ```
/// use shmproc::Pool;
/// fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
///
/// shmproc::init();
/// let pool = Pool::new(2)?;
/// let order: Vec<u64> = pool.imap_unordered(nap, [300, 1]).map(Result::unwrap).collect();
/// assert_eq!(order, [1, 300]);
/// # Ok::<(), shmproc::PoolError>(())
/// ```
pub struct IMapUnordered<'p, I, R> {
    feed: Feed<'p, I>,
    out: Outbox<R>,
    /// Items submitted and not yet yielded.
    pending: usize,
}

impl<I: Iterator, R> Iterator for IMapUnordered<'_, I, R>
where
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        let chunk = self.feed.chunksize;
        while self.pending < self.feed.window * chunk {
            let out = self.out.clone();
            match self.feed.next_chunk(|len| {
                Box::new(move |r| {
                    let items = r.and_then(|p| task::decode_outcomes::<R>(p, len));
                    let (q, cv) = &*out;
                    let mut q = q.lock().unwrap_or_else(|p| p.into_inner());
                    match items {
                        Ok(v) => q.extend(v),
                        Err(e) => q.extend((0..len).map(|_| Err(e.clone()))),
                    }
                    cv.notify_all();
                })
            }) {
                None => break,
                Some(Ok(len)) => self.pending += len,
                Some(Err(e)) => {
                    let mut q = self.out.0.lock().unwrap_or_else(|p| p.into_inner());
                    q.push_back(Err(e));
                    self.pending += 1;
                }
            }
        }
        if self.pending == 0 {
            return None;
        }
        let (q, cv) = &*self.out;
        let mut q = q.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = q.pop_front() {
                self.pending -= 1;
                return Some(r);
            }
            q = cv.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }
}
