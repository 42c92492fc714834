//! The holder table of a pipe: which processes hold each end.
//!
//! Each end keeps a small table in shared memory of the processes holding it (see the
//! [`connection`](crate::Connection#how-the-ends-are-tracked) module docs): the creator, a spawned child that received it in
//! its arguments, a forked child whose closure captured it; each identified by pid + start
//! time. An end is *disconnected* when no live process holds it.

use std::cell::Cell;

use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::sync::park;
use crate::ShmSafe;

/// Processes that may hold one end at a time (a small table under loom, which explores
/// every step of a scan).
const HOLDERS: usize = if cfg!(loom) { 4 } else { 64 };

const FREE: u32 = 0;
const CLAIMING: u32 = 1;
/// Recorded for a child by the process that handed it the end; the child has not used it.
const PROVISIONAL: u32 = 2;
/// The process uses the end (`refs` handles).
const STRONG: u32 = 3;
/// The process held the end and let it go (kept until it dies; not a holder).
const RELEASED: u32 = 4;

/// One process holding an end.
#[repr(C)]
#[derive(Debug, Default)]
struct Holder {
    state: AtomicU32,
    pid: AtomicU32,
    refs: AtomicU32,
    _pad: AtomicU32,
    info: AtomicU64,
}

/// The holder tables of both ends of a pipe (its own small segment).
#[repr(C)]
#[derive(Debug)]
pub struct LinkState {
    ends: [[Holder; HOLDERS]; 2],
}

impl Default for LinkState {
    fn default() -> Self {
        Self {
            ends: std::array::from_fn(|_| std::array::from_fn(|_| Holder::default())),
        }
    }
}

// SAFETY: `#[repr(C)]` of atomics only: every bit pattern is a valid value, and every value
// read from it is validated before use (a garbage entry is skipped or, at worst, makes an
// end look held or not held).
unsafe impl ShmSafe for LinkState {}

fn valid_pid(pid: u32) -> bool {
    pid != 0 && pid <= park::TID_MASK
}

pub(crate) fn process_info(pid: u32) -> u64 {
    park::owner_info(pid, crate::sys::proc::start_time(pid).unwrap_or(0))
}

impl LinkState {
    /// The state of `h` if it is a record (provisional, strong or released) of process
    /// `pid` started as `info`.
    fn record_of(h: &Holder, pid: u32, info: u64) -> Option<u32> {
        let st = h.state.load(Ordering::SeqCst);
        (matches!(st, PROVISIONAL | STRONG | RELEASED)
            && h.pid.load(Ordering::Relaxed) == pid
            && h.info.load(Ordering::Relaxed) == info)
            .then_some(st)
    }

    /// Claims a free record (freeing those of dead processes if needed) for `pid` in state
    /// `st` with `refs`. `None` if the table is full of live processes.
    fn claim(&self, side: usize, pid: u32, info: u64, st: u32, refs: u32) -> Option<&Holder> {
        for attempt in 0..2 {
            for h in &self.ends[side] {
                if h.state
                    .compare_exchange(FREE, CLAIMING, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    h.pid.store(pid, Ordering::Relaxed);
                    h.info.store(info, Ordering::Relaxed);
                    h.refs.store(refs, Ordering::Relaxed);
                    h.state.store(st, Ordering::SeqCst);
                    return Some(h);
                }
            }
            if attempt == 0 {
                self.any_alive(side, 0);
            }
        }
        None
    }

    /// After claiming `mine` for `pid`, reconciles it with a record another party made for
    /// the same process at the same time (a forked child using or releasing an end while
    /// its parent records it late). Both parties write their own record and then read the
    /// other's (SeqCst), so at least one of them sees both and settles: a provisional record
    /// yields to a strong one, and turns released if the process already let go.
    fn settle(&self, side: usize, pid: u32, info: u64, mine: &Holder) {
        for h in &self.ends[side] {
            if std::ptr::eq(h, mine) {
                continue;
            }
            let Some(other) = Self::record_of(h, pid, info) else {
                continue;
            };
            let my_state = mine.state.load(Ordering::SeqCst);
            match (my_state, other) {
                (PROVISIONAL, STRONG) => Self::free(mine, PROVISIONAL),
                (PROVISIONAL, PROVISIONAL) if (h as *const Holder) < (mine as *const Holder) => {
                    Self::free(mine, PROVISIONAL)
                }
                (PROVISIONAL, RELEASED) => Self::retire(mine),
                (STRONG, PROVISIONAL) => Self::free(h, PROVISIONAL),
                (RELEASED, PROVISIONAL) => Self::retire(h),
                _ => {}
            }
        }
    }

    /// Provisional → released (the process let the end go before its record was made).
    fn retire(h: &Holder) {
        let _ = h
            .state
            .compare_exchange(PROVISIONAL, RELEASED, Ordering::SeqCst, Ordering::Relaxed);
    }

    /// Records `pid` as a holder of end `side`: `strong` for a process that uses it (counted
    /// per handle), else provisional (a child given the end) — unless that process already
    /// has a record, e.g. a forked child that used or released the end before its parent
    /// got to record it. Returns `false` if the table is full.
    pub(crate) fn register(&self, side: usize, pid: u32, info: u64, strong: bool) -> bool {
        let mut released = None;
        for h in &self.ends[side] {
            match Self::record_of(h, pid, info) {
                Some(STRONG) => {
                    if strong {
                        h.refs.fetch_add(1, Ordering::SeqCst);
                    }
                    return true;
                }
                Some(PROVISIONAL) => {
                    if !strong {
                        return true;
                    }
                    h.refs.fetch_add(1, Ordering::SeqCst);
                    if h.state
                        .compare_exchange(PROVISIONAL, STRONG, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        return true;
                    }
                    h.refs.fetch_sub(1, Ordering::SeqCst);
                }
                Some(_) => released = released.or(Some(h)),
                None => {}
            }
        }
        if !strong && released.is_some() {
            // The process already let the end go: a late record must not revive it.
            return true;
        }
        let (st, refs) = if strong { (STRONG, 1) } else { (PROVISIONAL, 0) };
        match self.claim(side, pid, info, st, refs) {
            Some(mine) => {
                self.settle(side, pid, info, mine);
                true
            }
            None => false,
        }
    }

    /// Drops one strong reference of `pid` (`strong`), or its provisional record. A process
    /// that no longer holds the end keeps a `RELEASED` record until it dies, so that a
    /// parent recording it late (see `dropping_for_fork_child`) cannot make it a holder again.
    pub(crate) fn release(&self, side: usize, pid: u32, info: u64, strong: bool) {
        let mut provisional = None;
        for h in &self.ends[side] {
            match Self::record_of(h, pid, info) {
                Some(STRONG) if strong => {
                    let mut refs = h.refs.load(Ordering::SeqCst);
                    loop {
                        let next = refs.saturating_sub(1);
                        match h
                            .refs
                            .compare_exchange(refs, next, Ordering::SeqCst, Ordering::Relaxed)
                        {
                            Ok(_) => break,
                            Err(now) => refs = now,
                        }
                    }
                    if refs <= 1
                        && h.state
                            .compare_exchange(STRONG, RELEASED, Ordering::SeqCst, Ordering::Relaxed)
                            .is_ok()
                    {
                        // Void any provisional record made for us meanwhile.
                        self.settle(side, pid, info, h);
                    }
                    return;
                }
                // Used by this process through another handle: still held.
                Some(STRONG) => return,
                Some(PROVISIONAL) => provisional = provisional.or(Some(h)),
                _ => {}
            }
        }
        match provisional {
            Some(h) => Self::retire(h),
            None => {
                if let Some(mine) = self.claim(side, pid, info, RELEASED, 0) {
                    self.settle(side, pid, info, mine);
                }
            }
        }
    }

    fn free(h: &Holder, seen: u32) {
        if h.state
            .compare_exchange(seen, CLAIMING, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            h.pid.store(0, Ordering::Relaxed);
            h.state.store(FREE, Ordering::SeqCst);
        }
    }

    /// Whether a live process other than `asker` holds end `side` — or `asker` itself
    /// does, by using it (a provisional record of the asker is its own inheritance, which
    /// it evidently does not use). Records of dead processes are freed on the way.
    pub(crate) fn any_alive(&self, side: usize, asker: u32) -> bool {
        let mut found = false;
        for h in &self.ends[side] {
            let st = h.state.load(Ordering::Acquire);
            if !matches!(st, PROVISIONAL | STRONG | RELEASED) {
                continue;
            }
            let pid = h.pid.load(Ordering::Relaxed);
            if !valid_pid(pid) {
                continue;
            }
            if pid == asker {
                found |= st == STRONG;
                continue;
            }
            if found || (st == RELEASED && asker != 0) {
                continue;
            }
            if park::alive(pid, h.info.load(Ordering::Relaxed)) {
                found |= st != RELEASED;
            } else if h
                .state
                .compare_exchange(st, CLAIMING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // Re-check under our claim: the record may have been reused meanwhile.
                if h.pid.load(Ordering::Relaxed) == pid {
                    h.pid.store(0, Ordering::Relaxed);
                    h.state.store(FREE, Ordering::Release);
                } else {
                    h.state.store(st, Ordering::Release);
                }
            }
        }
        found
    }
}

thread_local! {
    /// Set while the parent drops the closure it forked a child with.
    static FORK_CHILD: Cell<u32> = const { Cell::new(0) };
}

/// Runs `drop_body` (the parent dropping a forked child's closure) so that every pipe end
/// dropped inside records `child` as its holder first.
pub(crate) fn dropping_for_fork_child(child: u32, drop_body: impl FnOnce()) {
    let prev = FORK_CHILD.with(|c| c.replace(child));
    drop_body();
    FORK_CHILD.with(|c| c.set(prev));
}

/// The forked child whose closure the parent is dropping now (0: none).
pub(crate) fn fork_child() -> u32 {
    FORK_CHILD.with(Cell::get)
}

/// The holder table's operations, for the loom suite (`--cfg loom`): one end, one `info`.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_link {
    /// A holder table on the heap.
    #[derive(Default)]
    pub struct Table(super::LinkState);

    impl Table {
        /// Records `pid` (strong: it uses the end; else provisional).
        pub fn register(&self, pid: u32, strong: bool) -> bool {
            self.0.register(0, pid, 7, strong)
        }

        /// Releases one strong reference of `pid`, or its provisional record.
        pub fn release(&self, pid: u32, strong: bool) {
            self.0.release(0, pid, 7, strong)
        }

        /// Whether anyone holds the end (every process counts as alive under loom).
        pub fn held(&self) -> bool {
            self.0.any_alive(0, 0)
        }
    }
}
