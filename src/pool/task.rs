//! How a task travels between the pool and a worker.
//!
//! A task is a chunk of arguments plus the code that runs them. The code travels as the
//! offset of a monomorphic *trampoline* from the spawn helper's anchor function: workers
//! run the same executable (checked when they start), so the same offset names the same
//! function in both processes whatever ASLR did. The trampoline is generated per task
//! function; since a task function captures nothing (it is a zero-sized `fn` item or
//! closure, checked at compile time), the trampoline needs no data to rebuild it.
//!
//! Parent → worker: `TASK` + offset (u64 LE) + postcard `[A]`, or `STOP`.
//! Worker → parent: `DONE` + postcard `(Vec<R>, Vec<(index, PanicInfo)>)`: the results of
//! the items that returned, in order, and the items that panicked,
//! `FAILED` + UTF-8 message (the chunk could not be decoded or its results encoded), or
//! `INIT` + the initializer's `DONE` payload for one `()` item.
//!
//! The task channel is private to the parent and that one worker (an anonymous memfd), and
//! the worker runs whatever code its parent names, as a spawned child runs the target its
//! parent names; the parent in turn treats every reply as untrusted bytes.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{PanicInfo, PoolError};
use crate::process::{boot, child};

pub(crate) const TASK: u8 = 1;
pub(crate) const STOP: u8 = 2;
pub(crate) const DONE: u8 = 1;
pub(crate) const FAILED: u8 = 2;
pub(crate) const INIT: u8 = 3;

/// Bytes before a task's payload: tag + code offset.
pub(crate) const TASK_HEADER: usize = 9;

/// Runs a chunk: decodes the payload, calls the task on every item, appends the encoded
/// outcomes to `out`. `Err` when the payload does not decode or the results do not encode.
pub(crate) type Trampoline = fn(&[u8], &mut Vec<u8>) -> Result<(), String>;

/// A function that [`Pool::starmap`](crate::Pool::starmap) applies to tuples: any `fn` item
/// or non-capturing closure of 2 to 4 arguments (`fn(A, B) -> R` for `(A, B)` items, …),
/// as Python's `starmap` unpacks each item into arguments.
///
/// ```
/// use shmproc::StarFn;
/// fn area(w: u32, h: u32) -> u32 { w * h }
/// assert_eq!(area.call_star((3, 4)), 12);
/// ```
pub trait StarFn<Args, R>: Copy + Send + Sync + 'static {
    /// Calls the function with the tuple's fields as arguments.
    fn call_star(&self, args: Args) -> R;
}

macro_rules! star_fn {
    ($($t:ident $v:ident),+) => {
        impl<F, $($t,)+ R> StarFn<($($t,)+), R> for F
        where
            F: Fn($($t),+) -> R + Copy + Send + Sync + 'static,
        {
            fn call_star(&self, ($($v,)+): ($($t,)+)) -> R {
                self($($v),+)
            }
        }
    };
}
star_fn!(A a, B b);
star_fn!(A a, B b, C c);
star_fn!(A a, B b, C c, D d);

/// What a trampoline calls for each item.
pub(crate) trait Runner<A, R>: Copy + 'static {
    fn run(&self, a: A) -> R;
}

/// A one-argument task (`map`, `apply`, `submit`).
#[derive(Clone, Copy)]
pub(crate) struct One<F>(pub(crate) F);

impl<F: Fn(A) -> R + Copy + 'static, A, R> Runner<A, R> for One<F> {
    fn run(&self, a: A) -> R {
        (self.0)(a)
    }
}

/// A tuple-argument task (`starmap`).
#[derive(Clone, Copy)]
pub(crate) struct Star<F>(pub(crate) F);

impl<F: StarFn<A, R>, A, R> Runner<A, R> for Star<F> {
    fn run(&self, a: A) -> R {
        self.0.call_star(a)
    }
}

/// Refuses, at compile time, a task that captures data: only its code can travel.
pub(crate) const fn assert_no_captures<F>() {
    assert!(
        std::mem::size_of::<F>() == 0,
        "a pool task must be a fn item or a closure that captures nothing (its code travels, not its data)"
    );
}

fn trampoline<Rn: Runner<A, R>, A: DeserializeOwned, R: Serialize>(
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    const { assert_no_captures::<Rn>() };
    // SAFETY: `Rn` is zero-sized (asserted above at compile time) and wraps a `Copy` value
    // implementing `Fn`: on stable Rust that is a `fn` item or a closure whose captures are
    // all zero-sized `Copy` values. Such a value has no bytes, so a dangling, well-aligned
    // pointer reads a valid one. What it cannot carry is a fact a zero-sized capture might
    // stand for (a "token" type); the pool docs rule such captures out.
    let runner: Rn = unsafe { std::ptr::NonNull::<Rn>::dangling().as_ptr().read() };
    let items: Vec<A> = crate::channel::codec::from_bytes(payload)
        .map_err(|e| format!("cannot decode the arguments: {e}"))?;
    let mut values: Vec<R> = Vec::with_capacity(items.len());
    let mut panics: Vec<(u64, PanicInfo)> = Vec::new();
    let mut items = items.into_iter().enumerate();
    let mut current = 0;
    // One unwind guard for the whole chunk; after a panic, a new one for the rest.
    while let Err(info) = child::catch_panic(|| {
        for (i, a) in items.by_ref() {
            current = i;
            values.push(runner.run(a));
        }
    }) {
        panics.push((current as u64, info));
    }
    match postcard::to_extend(&(values, panics), std::mem::take(out)) {
        Ok(v) => {
            *out = v;
            Ok(())
        }
        Err(e) => Err(format!("cannot encode the results: {e}")),
    }
}

/// The code offset of the trampoline for `Rn` (the same in every process of this executable).
pub(crate) fn offset_of<Rn: Runner<A, R>, A: DeserializeOwned, R: Serialize>() -> u64 {
    let t: Trampoline = trampoline::<Rn, A, R>;
    (t as usize).wrapping_sub(boot::anchor_addr()) as u64
}

/// The trampoline at `offset` in this process.
///
/// # Safety
/// `offset` must come from [`offset_of`] in a process running this same executable.
pub(crate) unsafe fn trampoline_at(offset: u64) -> Trampoline {
    let addr = boot::anchor_addr().wrapping_add(offset as usize);
    // SAFETY: per the contract, `addr` is the address of a `Trampoline` in this executable.
    unsafe { std::mem::transmute::<usize, Trampoline>(addr) }
}

/// Starts a task message: tag, code offset, then the caller appends the payload.
pub(crate) fn task_message<A: Serialize>(offset: u64, items: &[A]) -> Result<Vec<u8>, PoolError> {
    let mut msg = Vec::with_capacity(TASK_HEADER + 8 * items.len() + 8);
    msg.push(TASK);
    msg.extend_from_slice(&offset.to_le_bytes());
    postcard::to_extend(items, msg).map_err(|e| PoolError::Codec(format!("cannot encode the arguments: {e}")))
}

/// A message to a worker, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum TaskMsg<'a> {
    /// Run the chunk `payload` with the trampoline at `offset`.
    Run {
        /// Code offset of the trampoline.
        offset: u64,
        /// Encoded arguments.
        payload: &'a [u8],
    },
    /// Leave the loop and exit.
    Stop,
}

/// Parses a message from the pool (worker side).
pub fn parse_task(msg: &[u8]) -> Result<TaskMsg<'_>, PoolError> {
    match msg.split_first() {
        Some((&TASK, rest)) if rest.len() >= 8 => {
            let (off, payload) = rest.split_at(8);
            let offset = u64::from_le_bytes(off.try_into().expect("8 bytes"));
            Ok(TaskMsg::Run { offset, payload })
        }
        Some((&STOP, [])) => Ok(TaskMsg::Stop),
        _ => Err(PoolError::Codec("malformed task message".to_owned())),
    }
}

/// A worker's reply, parsed (parent side).
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A chunk's encoded outcomes.
    Done(&'a [u8]),
    /// The chunk could not run; why.
    Failed(String),
    /// The initializer's encoded outcome.
    Init(&'a [u8]),
}

/// Parses a worker's reply; any other byte string is a [`PoolError::Codec`].
pub fn parse_reply(msg: &[u8]) -> Result<Reply<'_>, PoolError> {
    match msg.split_first() {
        Some((&DONE, rest)) => Ok(Reply::Done(rest)),
        Some((&INIT, rest)) => Ok(Reply::Init(rest)),
        Some((&FAILED, rest)) => Ok(Reply::Failed(String::from_utf8_lossy(rest).into_owned())),
        _ => Err(PoolError::Codec("malformed reply from a worker".to_owned())),
    }
}

/// A chunk's results as a worker encodes them: the values of the items that returned, in
/// order, and the items that panicked, by index.
pub struct Outcomes<R> {
    /// Results of the items that returned, in item order.
    pub values: Vec<R>,
    /// `(item index, panic)` for the items that panicked, by increasing index.
    pub panics: Vec<(u64, PanicInfo)>,
}

/// Decodes a chunk's results (`DONE` payload: postcard `(Vec<R>, Vec<(u64, PanicInfo)>)`,
/// the values of the items that returned and the panics by item index), which must cover
/// exactly `expected` items.
pub fn decode_chunk<R: DeserializeOwned>(payload: &[u8], expected: usize) -> Result<Outcomes<R>, PoolError> {
    let bad = |what: &str| PoolError::Codec(format!("a worker's results are malformed: {what}"));
    // The count of values first: with a zero-sized `R` a huge count would take no bytes to
    // "decode" and keep us looping for ages.
    let (count, _) = postcard::take_from_bytes::<u64>(payload).map_err(|e| bad(&e.to_string()))?;
    if count > expected as u64 {
        return Err(bad("more results than tasks"));
    }
    let (values, panics): (Vec<R>, Vec<(u64, PanicInfo)>) =
        crate::channel::codec::from_bytes(payload).map_err(|e| bad(&e.to_string()))?;
    if values.len().checked_add(panics.len()) != Some(expected) {
        return Err(bad("wrong number of results"));
    }
    if panics.windows(2).any(|w| w[0].0 >= w[1].0) || panics.last().is_some_and(|p| p.0 >= expected as u64) {
        return Err(bad("panic indices out of order or range"));
    }
    Ok(Outcomes { values, panics })
}

impl<R> Outcomes<R> {
    /// One outcome per item, in item order.
    pub fn into_items(self) -> Vec<Result<R, PoolError>> {
        let n = self.values.len() + self.panics.len();
        let mut values = self.values.into_iter();
        let mut panics = self.panics.into_iter().peekable();
        (0..n as u64)
            .map(|i| match panics.next_if(|p| p.0 == i) {
                Some((_, info)) => Err(PoolError::Panicked(info)),
                None => values
                    .next()
                    .ok_or(PoolError::Codec("a result is missing".to_owned())),
            })
            .collect()
    }
}

/// Decodes a chunk's results into one outcome per item (see [`decode_chunk`]).
pub fn decode_outcomes<R: DeserializeOwned>(
    payload: &[u8],
    expected: usize,
) -> Result<Vec<Result<R, PoolError>>, PoolError> {
    decode_chunk(payload, expected).map(Outcomes::into_items)
}

/// Runs a task message's chunk in this process and returns the reply a worker would send
/// (`tag` is `DONE` for tasks and `INIT` for the initializer).
pub(crate) fn run_chunk(offset: u64, payload: &[u8], tag: u8, out: &mut Vec<u8>) {
    out.clear();
    out.push(tag);
    // SAFETY: offsets are made by `offset_of` in the pool's process, which runs this same
    // executable (the spawn helper checks it; a forked worker is a copy), and travel through
    // a channel only this worker and its parent hold (see the module docs).
    let f = unsafe { trampoline_at(offset) };
    if let Err(msg) = f(payload, out) {
        out.clear();
        out.push(FAILED);
        out.extend_from_slice(msg.as_bytes());
    }
}
