//! The worker process's loop, and the parent-side thread ("pump") that feeds one worker.
//!
//! Each worker has its own duplex pipe and its own pump thread in the parent. The pump takes
//! jobs from the pool's queue into its *lane* (the jobs it holds for its worker, oldest
//! first), sends them, and matches replies to jobs in order (a worker answers in the order
//! it starts work). A pump may keep jobs waiting in the pipe behind the running one; an idle
//! pump that finds the pool's queue empty *takes back* such a job from a busy pump's lane
//! and runs it on its own worker, so no job waits behind a busy worker while another worker
//! is idle.
//!
//! Who owns a job that was sent but not started is decided in shared memory, job by job:
//! the worker and its pump share a ring of [`RING`] *start slots*, and the `n`-th job sent
//! to a worker (its sequence number, which both sides count) is decided in slot `n % RING`.
//! The slot holds the last decided sequence number of its class, shifted left, with the low
//! bit set if the pump took that job back. The worker *starts* job `n` by moving the slot
//! from job `n - RING`'s decision to `n << 1` (one compare-and-swap); a pump *takes it back*
//! by moving it to `n << 1 | 1`. Exactly one of them succeeds; a worker that finds its job
//! taken back skips the message, and a job taken back was never started, so it never runs
//! twice. The pump never writes a slot otherwise, so the worker's compare-and-swap stays in
//! its own cache. (A pump keeps the sequence numbers it holds within `RING` of each other,
//! so a slot is never reused for a job still undecided.)
//!
//! When a worker dies the pump knows exactly which jobs it started: those whose slot says so
//! (the one it was running). That job fails with [`PoolError::WorkerDied`]; every other job
//! of its lane, sent or not, goes back to the pool's queue (a job whose send failed was never
//! started), and the pump starts a replacement. A dead worker is noticed within one liveness
//! slice (20 ms) of its death through the pipe's holder table.
//!
//! With the thread backend the pump runs the jobs itself, one at a time.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cell::{claim_to_run, PENDING};
use super::init::Init;
use super::task::{self, Reply, TaskMsg, DONE, STOP, TASK_HEADER};
use crate::channel::codec::Bytes;
use crate::channel::connection::Connection;
use crate::error::{PoolError, ProcessError, RecvTimeoutError, TrySendError};
use crate::loom::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use crate::process::{Killer, Process, StartMethod};

type Pipe = Connection<Vec<u8>, Bytes>;

/// Start slots per worker (see the module docs); also the first sequence number.
pub(crate) const RING: u64 = 64;

/// A worker's start slots, shared by the worker and the pool's process.
type Starts = crate::cell::Shared<[AtomicU64; RING as usize]>;

// SAFETY: only under `--cfg loom`, where the shim's `AtomicU64` is loom's model type: the
// crate must compile, but the pool (real processes, real shared memory) never runs under
// loom, so no such value is ever placed in a segment. Outside loom the shim's `AtomicU64`
// is a transparent `core` atomic, `ShmSafe` in `crate::loom`.
#[cfg(loom)]
unsafe impl crate::ShmSafe for AtomicU64 {}

/// New start slots: slot `i` says that job `i` (which never existed) is decided, so the
/// first job is `RING`.
fn new_starts() -> Result<Starts, PoolError> {
    Starts::new(std::array::from_fn(|i| AtomicU64::new((i as u64) << 1)))
        .map_err(|e| PoolError::Start(e.to_string()))
}

fn start_slot(starts: &Starts, seq: u64) -> &AtomicU64 {
    // In bounds: the index is reduced modulo the array's length.
    &starts[(seq % RING) as usize]
}

/// Decides job `seq` (`seq >= RING`) for the worker (`taken_back == false`, it starts it) or
/// for the pump (it takes it back). `Some(true)`: this side won. `Some(false)`: the other
/// side decided it first. `None`: the slot holds neither job `seq - RING`'s decision nor job
/// `seq`'s (the other side broke the protocol); nobody may run the job.
fn decide(starts: &Starts, seq: u64, taken_back: bool) -> Option<bool> {
    let slot = start_slot(starts, seq);
    let mine = seq << 1 | u64::from(taken_back);
    let theirs = seq << 1 | u64::from(!taken_back);
    let mut v = slot.load(Ordering::Acquire);
    loop {
        if v >> 1 == seq - RING {
            match slot.compare_exchange(v, mine, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(true),
                Err(now) => v = now,
            }
        } else if v == theirs {
            return Some(false);
        } else {
            return None;
        }
    }
}

/// Whether job `seq` may have been started: its slot no longer holds job `seq - RING`'s
/// decision (anything else, even a value the protocol does not allow, counts as started, so
/// that such a job is never run again).
fn maybe_started(starts: &Starts, seq: u64) -> bool {
    start_slot(starts, seq).load(Ordering::Acquire) >> 1 != seq - RING
}

/// What a worker process receives.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    conn: Pipe,
    starts: Starts,
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
    let mut seq = RING;
    while let Ok(msg) = w.conn.recv_bytes() {
        match task::parse_task(&msg) {
            Ok(TaskMsg::Run { offset, payload }) => {
                let start = decide(&w.starts, seq, false);
                seq += 1;
                match start {
                    Some(true) => {}
                    Some(false) => continue, // taken back by the pool: another worker runs it
                    None => return,
                }
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
    /// Each pump's worker, for `terminate` to kill through its pidfd (cleared before the
    /// pump reaps the worker).
    workers: Vec<Option<Killer>>,
}

impl State {
    /// Why pumps must stop and jobs fail now, if they must: the pool is broken or terminated.
    fn stop_error(&self) -> Option<PoolError> {
        self.broken
            .clone()
            .or(self.terminated.then_some(PoolError::Terminated))
    }
}

/// A job a pump holds for its worker.
struct Entry {
    job: Job,
    /// Its sequence number once sent to the current worker (`None`: not sent yet).
    seq: Option<u64>,
    /// When it was sent.
    at: Option<Instant>,
}

/// The jobs one pump holds for its worker, oldest first: those sent and not answered, then
/// those not sent yet. Its pump pops answered jobs at the front; an idle pump may take back
/// unstarted jobs at the back, never the first one (running, or about to run).
#[derive(Default)]
struct Lane {
    entries: VecDeque<Entry>,
    /// The current worker's start slots (`None` while it has none, and with threads).
    starts: Option<Starts>,
}

impl Lane {
    /// Index of the first job not sent yet (the length if all were).
    fn first_unsent(&self) -> usize {
        self.entries
            .iter()
            .position(|e| e.seq.is_none())
            .unwrap_or(self.entries.len())
    }
}

/// Aligned to two cache lines (the adjacent-line prefetcher's unit), so that one pump's
/// lane never shares a line with another's.
#[repr(align(128))]
struct LaneCell {
    lane: Mutex<Lane>,
    /// `lane.entries.len()`, readable by its pump without the lock (written under it).
    len: AtomicUsize,
}

impl LaneCell {
    fn lock(&self) -> MutexGuard<'_, Lane> {
        self.lane.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_len(&self, lane: &Lane) {
        self.len.store(lane.entries.len(), Ordering::Relaxed);
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// One lane per pump. Lock order: `state`, then at most one lane.
    lanes: Box<[LaneCell]>,
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
const PREFETCH_MAX: usize = crate::channel::connection::PIPE_CAPACITY / 4;

impl Shared {
    pub(crate) fn new(cfg: Config) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
                terminated: false,
                broken: None,
                idle: 0,
                workers: (0..cfg.workers).map(|_| None).collect(),
            }),
            cv: Condvar::new(),
            lanes: (0..cfg.workers)
                .map(|_| LaneCell {
                    lane: Mutex::new(Lane::default()),
                    len: AtomicUsize::new(0),
                })
                .collect(),
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
            for w in st.workers.iter().flatten() {
                // Through the worker's pidfd: never another process, even once it is reaped.
                let _ = w.kill();
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

    /// Takes up to `n` jobs into lane `slot`, waiting for one while there are none and `wait`
    /// is set (an idle pump). An idle pump that finds the queue empty takes back jobs queued
    /// behind busy workers instead (see [`steal`](Self::steal)). `free` is whether this pump
    /// is counted in `Shared::free`; `scratch` is an empty buffer. `None`: the pump should
    /// stop; `Some(Some(lane))`: jobs were taken, and here is the lane, still locked, to
    /// send them; `Some(None)`: none were, or (thread backend, whose lanes stay empty as a
    /// thread runs its one job at once) they are in `scratch`.
    fn take(
        &self,
        slot: usize,
        n: usize,
        wait: bool,
        free: &mut bool,
        scratch: &mut Vec<Job>,
    ) -> Option<Option<MutexGuard<'_, Lane>>> {
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
            return Some(None);
        }
        let mut st = self.lock();
        loop {
            if st.stop_error().is_some() {
                return None;
            }
            // An idle pump takes one job; jobs beyond that (prefetches) only while there are
            // more queued than free pumps.
            while scratch.len() < n {
                // An extra job comes from behind the first `free` ones, which are the free
                // pumps' next jobs (a burst of long jobs then spreads over the workers).
                let job = if wait && scratch.is_empty() {
                    st.jobs.pop_front()
                } else {
                    let at = self.free.load(Ordering::Acquire);
                    st.jobs.remove(at)
                };
                let Some(job) = job else { break };
                if job.claim.as_deref().is_some_and(|c| !claim_to_run(c)) {
                    continue; // cancelled; the canceller already resolved it
                }
                scratch.push(job);
            }
            self.queued.store(st.jobs.len(), Ordering::Release);
            if wait && scratch.is_empty() {
                self.steal(slot, n, scratch);
            }
            if !scratch.is_empty() {
                self.set_free(free, false);
                if self.cfg.threads {
                    return Some(None);
                }
                // Into the lane while `state` is locked: an idle pump looking for work sees
                // every job either in the queue or in a lane.
                let cell = &self.lanes[slot];
                let mut lane = cell.lock();
                lane.entries.extend(scratch.drain(..).map(|job| Entry {
                    job,
                    seq: None,
                    at: None,
                }));
                cell.publish_len(&lane);
                return Some(Some(lane));
            }
            if !wait {
                return Some(None);
            }
            if st.closed {
                return None;
            }
            st.idle += 1;
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            st.idle -= 1;
        }
    }

    /// Takes back into `out` (oldest first) up to `n` unstarted jobs queued behind a busy
    /// worker: the newer half of those waiting behind the first job of the lane holding most.
    /// Called by an idle pump (`me`) with `state` locked.
    fn steal(&self, me: usize, n: usize, out: &mut Vec<Job>) {
        // The lanes with jobs waiting behind their first, most first (there are few lanes).
        let mut victims: Vec<(usize, usize)> = (self.lanes.iter().enumerate())
            .filter(|&(i, _)| i != me)
            .map(|(i, cell)| (cell.len.load(Ordering::Relaxed).saturating_sub(1), i))
            .filter(|&(waiting, _)| waiting > 0)
            .collect();
        victims.sort_unstable_by(|a, b| b.cmp(a));
        for (_, v) in victims {
            let cell = &self.lanes[v];
            let mut lane = cell.lock();
            let want = lane.entries.len().saturating_sub(1).div_ceil(2).min(n);
            while out.len() < want && lane.entries.len() > 1 {
                let back = lane.entries.back().expect("more than one");
                let ours = match (back.seq, &lane.starts) {
                    (None, _) => true,
                    (Some(seq), Some(starts)) => decide(starts, seq, true) == Some(true),
                    // Sent to a worker that is gone: its pump requeues it.
                    (Some(_), None) => false,
                };
                if !ours {
                    break; // started (so are all before it), or not ours to take
                }
                out.push(lane.entries.pop_back().expect("more than one").job);
            }
            cell.publish_len(&lane);
            drop(lane);
            if !out.is_empty() {
                out.reverse();
                return;
            }
        }
    }

    /// Wakes the idle pumps, to look for work again.
    fn wake_idle(&self) {
        let st = self.lock();
        if st.idle > 0 {
            self.cv.notify_all();
        }
    }

    fn set_worker(&self, slot: usize, worker: Option<Killer>) {
        self.lock().workers[slot] = worker;
    }

    fn terminated(&self) -> bool {
        self.lock().terminated
    }
}

/// The body of pump thread `slot`.
pub(crate) fn pump(shared: Arc<Shared>, slot: usize) {
    crate::sync::park::yield_in_spins(true);
    if shared.cfg.threads {
        run_threaded(&shared, slot);
    } else {
        Pump {
            sh: shared,
            slot,
            worker: None,
            short: false,
            last_reply: Instant::now(),
            free: true,
            front_seq: None,
        }
        .run();
    }
}

/// Thread backend: the pump is the worker.
fn run_threaded(sh: &Shared, slot: usize) {
    crate::process::child::install_panic_hook();
    let mut out = Vec::new();
    if let Some(init) = &sh.cfg.init {
        init.run(&mut out);
        if let Err(e) = init_outcome(&out) {
            sh.break_pool(e);
            return;
        }
    }
    let mut scratch = Vec::with_capacity(1);
    let mut free = true;
    // One job at a time, run at once: nothing ever waits behind it, so its lane stays empty.
    while sh.take(slot, 1, true, &mut free, &mut scratch).is_some() {
        for job in scratch.drain(..) {
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
    /// The sequence number of the next job sent (the worker counts the same way).
    next_seq: u64,
    /// Jobs this worker answered (for `maxtasksperchild`).
    done: u64,
    /// Whether the initializer's reply has come (always true without an initializer).
    ready: bool,
}

struct Pump {
    sh: Arc<Shared>,
    slot: usize,
    worker: Option<Worker>,
    /// Whether the last job took the worker little time (then up to `DEPTH` are kept in flight).
    short: bool,
    /// When the last reply came.
    last_reply: Instant,
    /// Whether this pump is counted in `Shared::free`.
    free: bool,
    /// The sequence number of the lane's first job once sent (only this pump changes the
    /// first job).
    front_seq: Option<u64>,
}

enum Step {
    Continue,
    Stop,
}

impl Pump {
    fn cell(&self) -> &LaneCell {
        &self.sh.lanes[self.slot]
    }

    /// Jobs in this pump's lane (others may take some back at any time, never the first).
    fn held(&self) -> usize {
        self.cell().len.load(Ordering::Relaxed)
    }

    fn run(mut self) {
        let mut scratch = Vec::with_capacity(DEPTH);
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
            let held = self.held();
            let budget = self
                .sh
                .cfg
                .max_tasks
                .map_or(u64::MAX, |m| m.saturating_sub(w.done + held as u64));
            // Short jobs: many in flight hide the hand-over latency. Long ones: one queued
            // behind the running one, so the worker never waits for the next (and an idle
            // pump takes it back if it would wait long).
            let depth = if self.short { DEPTH } else { 2 };
            let mut room = depth.saturating_sub(held).min(budget.min(DEPTH as u64) as usize);
            if self
                .front_seq
                .is_some_and(|f| w.next_seq - f + DEPTH as u64 >= RING)
            {
                // The first job has been running while many sent after it were taken back:
                // no more until it is answered (see `send`).
                room = 0;
            }
            // Refill a lane of short jobs once half of it has gone (a batch per lock
            // acquisition; the worker still has half a lane of jobs waiting meanwhile).
            if room > 0 && (held == 0 || room >= depth / 2) {
                let idle = held == 0;
                if idle {
                    // A new burst: learn the jobs' length again before prefetching many.
                    self.short = false;
                }
                let sh = &*self.sh;
                match sh.take(self.slot, room, idle, &mut self.free, &mut scratch) {
                    None => break,
                    Some(None) => {}
                    Some(Some(lane)) => {
                        let w = self.worker.as_mut().expect("started above");
                        send(sh, self.slot, w, &mut self.front_seq, lane);
                    }
                }
            }
            if self.held() > 0 {
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
        // Process-local and const-initialised: the loom shim's atomics are not const.
        #[allow(clippy::disallowed_types)]
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        let (mine, theirs) = Pipe::pair(true, crate::channel::connection::PIPE_CAPACITY)
            .map_err(|e| PoolError::Start(e.to_string()))?;
        let starts = new_starts()?;
        let ours = starts.clone();
        let cfg = &self.sh.cfg;
        let prefix = match cfg.method {
            StartMethod::Fork => "ForkPoolWorker",
            StartMethod::Spawn => "SpawnPoolWorker",
        };
        let args = WorkerArgs {
            conn: theirs,
            starts,
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
        self.sh.set_worker(self.slot, Some(process.killer()));
        self.cell().lock().starts = Some(ours);
        self.worker = Some(Worker {
            process,
            conn: mine,
            next_seq: RING,
            done: 0,
            ready: cfg.init.is_none(),
        });
        Ok(())
    }

    fn receive(&mut self) -> Step {
        let w = self.worker.as_mut().expect("a worker runs");
        match w.conn.recv_bytes_timeout(REPLY_SLICE) {
            Ok(reply) => {
                if !w.ready {
                    w.ready = true;
                    if let Err(e) = init_outcome(&reply) {
                        self.fail_lane(e.clone());
                        self.sh.break_pool(e);
                        return Step::Stop;
                    }
                    return Step::Continue;
                }
                let cell = &self.sh.lanes[self.slot];
                let popped = {
                    let mut lane = cell.lock();
                    // The first job is the one answered: the worker starts jobs in order and
                    // answers each before the next; others only take unstarted jobs.
                    let popped = match lane.entries.front() {
                        Some(e) if e.seq.is_some() => lane.entries.pop_front(),
                        _ => None,
                    };
                    self.front_seq = lane.entries.front().and_then(|e| e.seq);
                    cell.publish_len(&lane);
                    popped
                };
                let Some(Entry { job, at: sent_at, .. }) = popped else {
                    // A reply nobody asked for: the worker misbehaves; replace it.
                    self.replace_worker();
                    return Step::Continue;
                };
                w.done += 1;
                if self.held() == 0 {
                    // Free from now on, before the answer reaches the caller, who may
                    // submit more work at once.
                    self.sh.set_free(&mut self.free, true);
                }
                // The worker's time on this job: from when it could start it (sent, or the
                // previous reply) until now.
                let now = Instant::now();
                let since = sent_at.map_or(self.last_reply, |t| t.max(self.last_reply));
                self.short = now.duration_since(since) < SHORT_JOB;
                self.last_reply = now;
                deliver(job, &reply);
                Step::Continue
            }
            Err(RecvTimeoutError::Timeout) => {
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

    /// Empties the lane (the worker is gone): the jobs the worker may have started, and the
    /// others, each oldest first.
    fn drain_lane(&mut self) -> (Vec<Job>, Vec<Job>) {
        let cell = &self.sh.lanes[self.slot];
        let mut lane = cell.lock();
        let starts = lane.starts.take();
        self.front_seq = None;
        let (mut started, mut others) = (Vec::new(), Vec::new());
        for e in lane.entries.drain(..) {
            match (e.seq, &starts) {
                (Some(seq), Some(s)) if maybe_started(s, seq) => started.push(e.job),
                _ => others.push(e.job),
            }
        }
        cell.publish_len(&lane);
        (started, others)
    }

    /// The worker's pipe broke: reap it, fail the job it was running, requeue the others.
    fn worker_died(&mut self) {
        let Some(w) = self.worker.take() else { return };
        let ready = w.ready;
        // Reaped first: the start slots are final once the worker is gone.
        let (pid, signal, code) = self.reap(w);
        let err = PoolError::WorkerDied { pid, signal, code };
        if !ready && !self.sh.terminated() {
            // It died in the initializer: every replacement would too.
            let e = PoolError::InitializerFailed(format!("the worker died in the initializer: {err}"));
            self.fail_lane(e.clone());
            self.sh.break_pool(e);
            return;
        }
        // Killed by `terminate`, or died on its own.
        self.settle_lane(if self.sh.terminated() {
            PoolError::Terminated
        } else {
            err
        });
    }

    /// The worker is gone: the jobs it may have started fail with `err`; the others, never
    /// started on it (some never even reached it), go back to the queue for a live worker.
    fn settle_lane(&mut self, err: PoolError) {
        let (started, others) = self.drain_lane();
        for job in started {
            job.fail(err.clone());
        }
        self.sh.requeue(others.into_iter());
    }

    /// Kills (if needed) and reaps the worker: (pid, signal, exit code).
    fn reap(&mut self, mut w: Worker) -> (u32, Option<i32>, Option<i32>) {
        let pid = w.process.pid();
        self.sh.set_worker(self.slot, None);
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

    fn fail_lane(&mut self, e: PoolError) {
        let (started, others) = self.drain_lane();
        for job in started.into_iter().chain(others) {
            job.fail(e.clone());
        }
    }

    /// Replaces a misbehaving worker: the jobs it may have started fail, the others go back
    /// to the queue.
    fn replace_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            let _ = w.process.kill();
            let (pid, signal, code) = self.reap(w);
            self.settle_lane(PoolError::WorkerDied { pid, signal, code });
        }
    }

    /// `maxtasksperchild` reached and every answer in: stop this worker (the loop starts a new one).
    fn retire(&mut self) {
        if let Some(w) = self.worker.take() {
            let _ = w.conn.send_bytes(&[STOP]);
            self.reap(w);
            self.cell().lock().starts = None;
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
        self.fail_lane(err.unwrap_or(PoolError::Terminated));
    }
}

/// Sends the lane's unsent jobs, in order, each with the next sequence number. Only a
/// job sent to an idle worker (the first of the lane) may block (the worker is reading,
/// so even a message larger than the pipe streams through); the others are prefetches,
/// sent only if they fit now, so that the pump never blocks sending while the worker
/// blocks sending a large reply. What is not sent goes back to the queue. `lane` is `slot`'s,
/// locked.
fn send<'a>(
    sh: &'a Shared,
    slot: usize,
    w: &mut Worker,
    front_seq: &mut Option<u64>,
    mut lane: MutexGuard<'a, Lane>,
) {
    let cell = &sh.lanes[slot];
    let mut i = lane.first_unsent();
    let mut unsent = VecDeque::new();
    while i < lane.entries.len() {
        let seq = w.next_seq;
        let oldest = lane.entries.front().and_then(|e| e.seq).unwrap_or(seq);
        let msg = &lane.entries[i].job.msg;
        let r = if seq - oldest >= RING {
            // Its start slot may still belong to an undecided job.
            Err(TrySendError::Full(()))
        } else if i == 0 {
            match w.conn.try_send_bytes(msg) {
                Err(TrySendError::Full(())) => {
                    // Larger than the room in the pipe: send it without holding the lane
                    // (it is the first entry, which no other pump takes).
                    let mut first = lane.entries.pop_front().expect("i == 0");
                    cell.publish_len(&lane);
                    drop(lane);
                    let r = w.conn.send_bytes(&first.job.msg);
                    first.seq = Some(seq);
                    first.at = Some(Instant::now());
                    *front_seq = Some(seq);
                    lane = cell.lock();
                    lane.entries.push_front(first);
                    cell.publish_len(&lane);
                    w.next_seq += 1;
                    // Idle pumps may have looked at the lane meanwhile and seen no job
                    // behind a busy worker.
                    if lane.entries.len() > 1 {
                        drop(lane);
                        sh.wake_idle();
                        lane = cell.lock();
                    }
                    i = lane.first_unsent();
                    if r.is_err() {
                        // The worker is gone or its pipe unusable: the receive path reaps
                        // it; nothing more goes to it.
                        break;
                    }
                    continue;
                }
                r => r,
            }
        } else if msg.len() <= PREFETCH_MAX {
            w.conn.try_send_bytes(msg)
        } else {
            Err(TrySendError::Full(()))
        };
        if let Err(TrySendError::Full(())) = r {
            unsent.extend(lane.entries.drain(i..));
            break;
        }
        // Sent; or the worker is gone or its pipe unusable (the receive path reaps it): the
        // job counts as sent then too, but its start slot shows it never started.
        if i == 0 {
            *front_seq = Some(seq);
        }
        let e = &mut lane.entries[i];
        e.seq = Some(seq);
        w.next_seq += 1;
        if r.is_err() {
            break;
        }
        e.at = Some(Instant::now());
        i += 1;
    }
    cell.publish_len(&lane);
    drop(lane);
    if !unsent.is_empty() {
        sh.requeue(unsent.into_iter().map(|e| e.job));
    }
}
