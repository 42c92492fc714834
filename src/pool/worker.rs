//! The worker process's loop, and the parent-side thread ("pump") that feeds one worker.
//!
//! Each worker has its own duplex pipe and its own pump thread in the parent. The pump takes
//! jobs from the pool's queue, sends them, and matches replies to jobs in order (a worker
//! answers in the order it was sent work). So when a worker dies the pump knows exactly
//! which job it was running (the oldest unanswered one): that job fails with
//! [`PoolError::WorkerDied`], the jobs queued behind it go back to the pool's queue, and the
//! pump starts a replacement. A dead worker is noticed within one liveness slice (20 ms) of
//! its death through the pipe's holder table.
//!
//! With the thread backend the pump runs the jobs itself.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cell::{claim_to_run, PENDING};
use super::init::Init;
use super::task::{self, Reply, TaskMsg, DONE, STOP, TASK_HEADER};
use crate::connection::Connection;
use crate::error::{ConnError, PoolError, ProcessError};
use crate::loom::AtomicU32;
use crate::process::{Process, StartMethod};
use crate::queue::Bytes;

type Pipe = Connection<Vec<u8>, Bytes>;

/// What a worker process receives.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    conn: Pipe,
    init: Option<Init>,
}

/// The body of a worker process.
pub(crate) fn worker_main(w: WorkerArgs) {
    // Worker and feeder wait on each other, and with the caller they outnumber the CPUs.
    crate::sync::park::yield_in_spins(true);
    let mut out = Vec::with_capacity(256);
    if let Some(init) = &w.init {
        init.run(&mut out);
        if w.conn.send_bytes(&out).is_err() {
            return;
        }
    }
    // Any error (the pool hung up or died, or sent garbage) ends the worker.
    while let Ok(msg) = w.conn.recv_bytes() {
        match task::parse_task(&msg) {
            Ok(TaskMsg::Run { offset, payload }) => {
                task::run_chunk(offset, payload, DONE, &mut out);
                if w.conn.send_bytes(&out).is_err() {
                    return;
                }
            }
            Ok(TaskMsg::Stop) | Err(_) => return,
        }
    }
}

/// Receives a job's outcome: `Ok` with the `DONE` payload, or why there is none.
pub(crate) type Sink = Box<dyn FnOnce(Result<&[u8], PoolError>) + Send>;

/// One unit of dispatch: a chunk of one or more items.
pub(crate) struct Job {
    /// `TASK` + code offset + payload.
    pub(crate) msg: Vec<u8>,
    pub(crate) sink: Sink,
    /// For cancellable jobs: `PENDING` until a pump takes it (`RUNNING`) or it is
    /// cancelled first (`CANCELLED`, then the pump drops it).
    pub(crate) claim: Option<Arc<AtomicU32>>,
}

impl Job {
    fn fail(self, e: PoolError) {
        (self.sink)(Err(e));
    }
}

/// How workers are started.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) threads: bool,
    pub(crate) method: StartMethod,
    pub(crate) init: Option<Init>,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) workers: usize,
}

pub(crate) struct State {
    pub(crate) jobs: VecDeque<Job>,
    /// No new work (`close`); pumps stop when the queue is empty.
    pub(crate) closed: bool,
    /// `terminate`: pumps fail everything and stop at once.
    pub(crate) terminated: bool,
    /// Set when the pool can no longer run tasks (initializer failed, cannot start workers).
    pub(crate) broken: Option<PoolError>,
    /// Pumps asleep waiting for jobs.
    idle: usize,
    /// Worker pids by pump, for `terminate` (cleared before the pump reaps the worker, so a
    /// pid here always names our live or zombie child).
    pids: Vec<Option<u32>>,
}

impl State {
    /// Why pumps must stop and jobs fail now, if they must: the pool is broken or terminated.
    fn stop_error(&self) -> Option<PoolError> {
        self.broken
            .clone()
            .or(self.terminated.then_some(PoolError::Terminated))
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    /// Jobs in `state.jobs`, readable without the lock (idle pumps spin on it briefly).
    queued: AtomicUsize,
    /// Set by `close`, `terminate` and a broken pool: idle pumps stop spinning, busy ones
    /// look at the state under the lock.
    stopping: AtomicBool,
    /// Pumps with nothing in flight (from the moment their last answer is in, through
    /// looking for work, to starting a worker): queued jobs are theirs before busy pumps
    /// take extra ones.
    free: AtomicUsize,
    pub(crate) cfg: Config,
}

/// How many jobs a pump keeps in flight while the worker's jobs are short.
const DEPTH: usize = 16;
/// A job that takes the worker less than this counts as short.
const SHORT_JOB: Duration = Duration::from_micros(200);
/// How long a pump waits for a reply before looking at the pool's state again.
const REPLY_SLICE: Duration = Duration::from_millis(50);
/// Largest message sent ahead to a busy worker (a quarter of the pipe).
const PREFETCH_MAX: usize = crate::connection::PIPE_CAPACITY / 4;

impl Shared {
    pub(crate) fn new(cfg: Config) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
                terminated: false,
                broken: None,
                idle: 0,
                pids: vec![None; cfg.workers],
            }),
            cv: Condvar::new(),
            queued: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            free: AtomicUsize::new(cfg.workers),
            cfg,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues jobs, or fails them if the pool takes no work.
    pub(crate) fn submit(&self, jobs: impl IntoIterator<Item = Job>) -> Result<(), PoolError> {
        let mut st = self.lock();
        if st.closed || st.terminated {
            return Err(PoolError::Closed);
        }
        if let Some(e) = st.broken.clone() {
            drop(st);
            for j in jobs {
                j.fail(e.clone());
            }
            return Ok(());
        }
        let before = st.jobs.len();
        st.jobs.extend(jobs);
        let added = st.jobs.len() - before;
        self.queued.store(st.jobs.len(), Ordering::Release);
        if st.idle > 0 && added > 0 {
            if added >= st.idle {
                self.cv.notify_all();
            } else {
                for _ in 0..added {
                    self.cv.notify_one();
                }
            }
        }
        Ok(())
    }

    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        self.stopping.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    /// Stops everything: workers are killed, queued and running jobs fail with `Terminated`.
    pub(crate) fn terminate(&self) {
        let jobs = {
            let mut st = self.lock();
            st.closed = true;
            st.terminated = true;
            self.stopping.store(true, Ordering::Release);
            for pid in st.pids.iter().flatten() {
                // The pid names our own child, alive or a zombie (see `State::pids`).
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::SIGKILL,
                );
            }
            self.queued.store(0, Ordering::Release);
            self.cv.notify_all();
            std::mem::take(&mut st.jobs)
        };
        for j in jobs {
            j.fail(PoolError::Terminated);
        }
    }

    /// Marks the pool broken and fails every queued job with `e`.
    fn break_pool(&self, e: PoolError) {
        let jobs = {
            let mut st = self.lock();
            self.stopping.store(true, Ordering::Release);
            if st.broken.is_none() {
                st.broken = Some(e.clone());
            }
            self.queued.store(0, Ordering::Release);
            self.cv.notify_all();
            std::mem::take(&mut st.jobs)
        };
        for j in jobs {
            j.fail(e.clone());
        }
    }

    /// Puts jobs back at the front of the queue, in their order.
    fn requeue(&self, jobs: impl DoubleEndedIterator<Item = Job>) {
        let mut st = self.lock();
        if let Some(e) = st.stop_error() {
            drop(st);
            for j in jobs {
                j.fail(e.clone());
            }
            return;
        }
        for j in jobs.rev() {
            if let Some(c) = &j.claim {
                // Never started: cancellable again.
                c.store(PENDING, Ordering::Release);
            }
            st.jobs.push_front(j);
        }
        self.queued.store(st.jobs.len(), Ordering::Release);
        self.cv.notify_all();
    }

    /// Counts a pump in or out of `free`; `flag` is whether it is counted now.
    fn set_free(&self, flag: &mut bool, free: bool) {
        if *flag != free {
            *flag = free;
            if free {
                self.free.fetch_add(1, Ordering::AcqRel);
            } else {
                self.free.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Takes up to `n` jobs, waiting for one while there are none and `wait` is set (an
    /// idle pump). `free` is whether this pump is counted in `Shared::free`. `None`: the pump
    /// should stop.
    fn take(&self, n: usize, wait: bool, free: &mut bool, out: &mut Vec<Job>) -> Option<()> {
        if wait {
            self.set_free(free, true);
            if self.queued.load(Ordering::Acquire) == 0 {
                // Spin a little before sleeping: a burst of submissions often follows.
                crate::sync::park::spin_while(|| {
                    self.queued.load(Ordering::Acquire) == 0 && !self.stopping.load(Ordering::Acquire)
                });
            }
        }
        if !wait && self.queued.load(Ordering::Acquire) == 0 && !self.stopping.load(Ordering::Acquire) {
            // A busy pump looking for extra work: nothing queued, no need for the lock.
            return Some(());
        }
        let mut st = self.lock();
        loop {
            if st.stop_error().is_some() {
                return None;
            }
            // An idle pump takes one job; jobs beyond that (prefetches) only while there are
            // more queued than free pumps.
            while out.len() < n {
                // An extra job comes from behind the first `free` ones, which are the free
                // pumps' next jobs (a burst of long jobs then spreads over the workers).
                let job = if wait && out.is_empty() {
                    st.jobs.pop_front()
                } else {
                    let at = self.free.load(Ordering::Acquire);
                    st.jobs.remove(at)
                };
                let Some(job) = job else { break };
                if job.claim.as_deref().is_some_and(|c| !claim_to_run(c)) {
                    continue; // cancelled; the canceller already resolved it
                }
                self.set_free(free, false);
                out.push(job);
            }
            self.queued.store(st.jobs.len(), Ordering::Release);
            if !out.is_empty() || !wait {
                return Some(());
            }
            if st.closed {
                return None;
            }
            st.idle += 1;
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            st.idle -= 1;
        }
    }

    fn set_pid(&self, slot: usize, pid: Option<u32>) {
        self.lock().pids[slot] = pid;
    }

    fn terminated(&self) -> bool {
        self.lock().terminated
    }
}

/// The body of pump thread `slot`.
pub(crate) fn pump(shared: Arc<Shared>, slot: usize) {
    crate::sync::park::yield_in_spins(true);
    if shared.cfg.threads {
        run_threaded(&shared);
    } else {
        Pump {
            sh: shared,
            slot,
            worker: None,
            inflight: VecDeque::new(),
            short: false,
            last_reply: Instant::now(),
            free: true,
        }
        .run();
    }
}

/// Thread backend: the pump is the worker.
fn run_threaded(sh: &Shared) {
    crate::process::child::install_panic_hook();
    let mut out = Vec::new();
    if let Some(init) = &sh.cfg.init {
        init.run(&mut out);
        if let Err(e) = init_outcome(&out) {
            sh.break_pool(e);
            return;
        }
    }
    let mut jobs = Vec::with_capacity(1);
    let mut free = true;
    while sh.take(1, true, &mut free, &mut jobs).is_some() {
        for job in jobs.drain(..) {
            let offset = u64::from_le_bytes(job.msg[1..TASK_HEADER].try_into().expect("8 bytes"));
            task::run_chunk(offset, &job.msg[TASK_HEADER..], DONE, &mut out);
            deliver(job, &out);
        }
    }
}

/// Hands a `DONE`/`FAILED` reply to its job.
fn deliver(job: Job, reply: &[u8]) {
    match task::parse_reply(reply) {
        Ok(Reply::Done(p)) => (job.sink)(Ok(p)),
        Ok(Reply::Failed(m)) => job.fail(PoolError::Codec(m)),
        Ok(Reply::Init(_)) => job.fail(PoolError::Codec("unexpected initializer reply".to_owned())),
        Err(e) => job.fail(e),
    }
}

/// Checks an initializer's reply.
fn init_outcome(reply: &[u8]) -> Result<(), PoolError> {
    let failed = |m: String| Err(PoolError::InitializerFailed(m));
    match task::parse_reply(reply) {
        Ok(Reply::Init(p)) => match task::decode_outcomes::<()>(p, 1) {
            Ok(mut v) => match v.pop() {
                Some(Ok(())) => Ok(()),
                Some(Err(PoolError::Panicked(p))) => failed(format!("panicked: {p}")),
                Some(Err(e)) => failed(e.to_string()),
                None => failed("no outcome".to_owned()),
            },
            Err(e) => failed(e.to_string()),
        },
        Ok(Reply::Failed(m)) => failed(m),
        Ok(Reply::Done(_)) => failed("a worker answered a task before its initializer".to_owned()),
        Err(e) => failed(e.to_string()),
    }
}

struct Worker {
    process: Process<()>,
    conn: Pipe,
    /// Jobs sent to this worker so far (for `maxtasksperchild`).
    sent: u64,
    /// Whether the initializer's reply has come (always true without an initializer).
    ready: bool,
}

struct Pump {
    sh: Arc<Shared>,
    slot: usize,
    worker: Option<Worker>,
    /// Jobs sent to the worker and not yet answered, oldest first, with when they were sent.
    inflight: VecDeque<(Job, Instant)>,
    /// Whether the last job took the worker little time (then up to `DEPTH` are kept in flight).
    short: bool,
    /// When the last reply came.
    last_reply: Instant,
    /// Whether this pump is counted in `Shared::free`.
    free: bool,
}

enum Step {
    Continue,
    Stop,
}

impl Pump {
    fn run(mut self) {
        let mut fresh = Vec::with_capacity(DEPTH);
        loop {
            if self.worker.is_none() {
                if self.sh.terminated() {
                    break;
                }
                if let Err(e) = self.start_worker() {
                    self.sh.break_pool(e);
                    break;
                }
            }
            let w = self.worker.as_ref().expect("started above");
            let budget = self.sh.cfg.max_tasks.map_or(u64::MAX, |m| m - w.sent.min(m));
            // Short jobs: many in flight hide the hand-over latency. Long ones: one queued
            // behind the running one, so the worker never waits for the next.
            let depth = if self.short { DEPTH } else { 2 };
            let room = depth
                .saturating_sub(self.inflight.len())
                .min(budget.min(DEPTH as u64) as usize);
            if room > 0 {
                let idle = self.inflight.is_empty();
                if idle {
                    // A new burst: learn the jobs' length again before prefetching many.
                    self.short = false;
                }
                if self.sh.take(room, idle, &mut self.free, &mut fresh).is_none() {
                    break;
                }
                self.send(&mut fresh);
            }
            if !self.inflight.is_empty() {
                if let Step::Stop = self.receive() {
                    break;
                }
            } else if budget == 0 {
                self.retire();
            }
        }
        self.shutdown();
    }

    fn start_worker(&mut self) -> Result<(), PoolError> {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let (mine, theirs) = Pipe::pair(true, crate::connection::PIPE_CAPACITY)
            .map_err(|e| PoolError::Start(e.to_string()))?;
        let cfg = &self.sh.cfg;
        let prefix = match cfg.method {
            StartMethod::Fork => "ForkPoolWorker",
            StartMethod::Spawn => "SpawnPoolWorker",
        };
        let args = WorkerArgs {
            conn: theirs,
            init: cfg.init.clone(),
        };
        let process = Process::new(worker_main, args)
            .name(format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
            // Started from this pump thread, which outlives the worker: a daemon dies with it,
            // and so with the pool's process even when that is SIGKILLed.
            .daemon(true)
            .start_method(cfg.method)
            .start()
            .map_err(|e| PoolError::Start(e.to_string()))?;
        self.sh.set_pid(self.slot, Some(process.pid()));
        self.worker = Some(Worker {
            process,
            conn: mine,
            sent: 0,
            ready: cfg.init.is_none(),
        });
        Ok(())
    }

    /// Sends the jobs taken. Only a job sent to an idle worker may block (the worker is
    /// reading, so even a message larger than the pipe streams through); the others are
    /// prefetches, sent only if they fit now, so that the pump never blocks sending while
    /// the worker blocks sending a large reply. What does not fit goes back to the queue.
    fn send(&mut self, fresh: &mut Vec<Job>) {
        let w = self.worker.as_mut().expect("a worker runs");
        let mut jobs = fresh.drain(..);
        while let Some(job) = jobs.next() {
            let r = if self.inflight.is_empty() {
                w.conn.send_bytes(&job.msg)
            } else if job.msg.len() <= PREFETCH_MAX {
                w.conn.try_send_bytes(&job.msg)
            } else {
                Err(ConnError::Full)
            };
            match r {
                Ok(()) => {
                    w.sent += 1;
                    self.inflight.push_back((job, Instant::now()));
                }
                Err(ConnError::Full) => {
                    self.sh.requeue(std::iter::once(job).chain(jobs));
                    return;
                }
                Err(_) => {
                    // The worker is gone or its pipe is unusable: keep the job with the
                    // others; the receive path reaps the worker and requeues them.
                    self.inflight.push_back((job, Instant::now()));
                }
            }
        }
    }

    fn receive(&mut self) -> Step {
        let w = self.worker.as_mut().expect("a worker runs");
        match w.conn.recv_bytes_timeout(REPLY_SLICE) {
            Ok(reply) => {
                if !w.ready {
                    w.ready = true;
                    if let Err(e) = init_outcome(&reply) {
                        self.fail_inflight(e.clone());
                        self.sh.break_pool(e);
                        return Step::Stop;
                    }
                    return Step::Continue;
                }
                let popped = self.inflight.pop_front();
                if self.inflight.is_empty() {
                    // Free from now on, before the answer reaches the caller, who may
                    // submit more work at once.
                    self.sh.set_free(&mut self.free, true);
                }
                let Some((job, sent_at)) = popped else {
                    // A reply nobody asked for: the worker misbehaves; replace it.
                    self.replace_worker();
                    return Step::Continue;
                };
                // The worker's time on this job: from when it could start it (sent, or the
                // previous reply) until now.
                let now = Instant::now();
                self.short = now.duration_since(sent_at.max(self.last_reply)) < SHORT_JOB;
                self.last_reply = now;
                deliver(job, &reply);
                Step::Continue
            }
            Err(ConnError::Timeout) => {
                if self.sh.terminated() {
                    Step::Stop
                } else {
                    Step::Continue
                }
            }
            Err(_) => {
                self.worker_died();
                if self.sh.lock().stop_error().is_some() {
                    Step::Stop
                } else {
                    Step::Continue
                }
            }
        }
    }

    /// The worker's pipe broke: reap it, fail the job it was running, requeue the others.
    fn worker_died(&mut self) {
        let Some(w) = self.worker.take() else { return };
        let ready = w.ready;
        let (pid, signal, code) = self.reap(w);
        let err = PoolError::WorkerDied { pid, signal, code };
        if !ready && !self.sh.terminated() {
            // It died in the initializer: every replacement would too.
            let e = PoolError::InitializerFailed(format!("the worker died in the initializer: {err}"));
            self.fail_inflight(e.clone());
            self.sh.break_pool(e);
            return;
        }
        if let Some((job, _)) = self.inflight.pop_front() {
            // Killed by `terminate`, or died on its own.
            job.fail(if self.sh.terminated() {
                PoolError::Terminated
            } else {
                err
            });
        }
        self.requeue_inflight();
    }

    /// Kills (if needed) and reaps the worker: (pid, signal, exit code).
    fn reap(&mut self, mut w: Worker) -> (u32, Option<i32>, Option<i32>) {
        let pid = w.process.pid();
        self.sh.set_pid(self.slot, None);
        drop(w.conn);
        let r = match w.process.join_timeout(Duration::from_secs(1)) {
            Err(ProcessError::Timeout) => {
                let _ = w.process.kill();
                w.process.join()
            }
            r => r,
        };
        match r {
            Err(ProcessError::Killed(s)) => (pid, Some(s), None),
            Err(ProcessError::Exited(c)) => (pid, None, Some(c)),
            Err(ProcessError::Panicked(_)) => (pid, None, Some(1)),
            Ok(()) => (pid, None, Some(0)),
            Err(_) => (pid, None, None),
        }
    }

    /// Puts the jobs sent to a worker that is gone back on the pool's queue.
    fn requeue_inflight(&mut self) {
        self.sh
            .requeue(std::mem::take(&mut self.inflight).into_iter().map(|(j, _)| j));
    }

    fn fail_inflight(&mut self, e: PoolError) {
        for (job, _) in self.inflight.drain(..) {
            job.fail(e.clone());
        }
    }

    /// Replaces a misbehaving worker: its unanswered jobs go back to the queue.
    fn replace_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            let _ = w.process.kill();
            self.reap(w);
        }
        self.requeue_inflight();
    }

    /// `maxtasksperchild` reached and every answer in: stop this worker (the loop starts a new one).
    fn retire(&mut self) {
        if let Some(w) = self.worker.take() {
            let _ = w.conn.send_bytes(&[STOP]);
            self.reap(w);
        }
    }

    fn shutdown(&mut self) {
        let err = self.sh.lock().stop_error();
        if let Some(w) = self.worker.take() {
            if err.is_some() {
                let _ = w.process.kill();
            } else {
                let _ = w.conn.send_bytes(&[STOP]);
            }
            self.reap(w);
        }
        self.fail_inflight(err.unwrap_or(PoolError::Terminated));
    }
}
