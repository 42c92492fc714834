//! The child side: identity, panic capture, reporting the outcome, and the spawned child's
//! boot (from `shmproc::init()` or the pre-`main` constructor).

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::fd::RawFd;
use std::panic::{self, AssertUnwindSafe};
#[allow(clippy::disallowed_types)] // a process-local const static (see IDENTITY)
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Once;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::boot::{self, Boot, Outcome, BOOT_TAG, DONE_TAG, ENV_BOOT, RECORD_LIMIT};
use crate::error::PanicInfo;
use crate::shm::transfer;
use crate::sys::{fd, proc};

/// Who this process is, in Python's terms.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) parent: Option<(u32, String)>,
}

/// Set once per process image; replaced (never freed: it is tiny) in each new child.
// Process-local and const-initialised: the loom shim has no `AtomicPtr` and no const `new`.
#[allow(clippy::disallowed_types)]
static IDENTITY: AtomicPtr<Identity> = AtomicPtr::new(std::ptr::null_mut());

pub(crate) fn identity() -> &'static Identity {
    static MAIN: Identity = Identity {
        name: String::new(),
        daemon: false,
        parent: None,
    };
    let p = IDENTITY.load(Ordering::Acquire);
    if p.is_null() {
        &MAIN
    } else {
        // SAFETY: non-null values come from `Box::leak` in `set_identity` and are never freed.
        unsafe { &*p }
    }
}

pub(crate) fn identity_name() -> String {
    let n = &identity().name;
    if n.is_empty() {
        "MainProcess".to_owned()
    } else {
        n.clone()
    }
}

pub(crate) fn set_identity(id: Identity) {
    IDENTITY.store(Box::into_raw(Box::new(id)), Ordering::Release);
}

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that records the location of panics raised
/// while a child's target runs, then defers to the previous hook (which prints as usual).
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                let loc = info.location().map(|l| l.to_string());
                LOCATION.with(|c| *c.borrow_mut() = loc);
            }
            prev(info);
        }));
    });
}

fn payload_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Runs a child's target, turning a panic into `Outcome::Panicked` and an encoding failure
/// into `Outcome::Failed`.
pub(crate) fn run_captured(f: impl FnOnce() -> Result<Vec<u8>, String>) -> Outcome {
    match catch_panic(f) {
        Ok(Ok(bytes)) => Outcome::Returned(bytes),
        Ok(Err(msg)) => Outcome::Failed(msg),
        Err(info) => Outcome::Panicked(info),
    }
}

/// Runs `f`, turning a panic into its message and location (the panic hook must be
/// installed, see [`install_panic_hook`]).
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, PanicInfo> {
    CAPTURING.with(|c| c.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    CAPTURING.with(|c| c.set(false));
    r.map_err(|payload| PanicInfo {
        message: payload_message(payload.as_ref()),
        location: LOCATION.with(|c| c.borrow_mut().take()),
    })
}

/// Encodes a target's return value.
pub(crate) fn encode_result<R: Serialize>(r: &R) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(r).map_err(|e| format!("cannot encode the result: {e}"))
}

/// Writes the outcome record for the parent and returns the exit code to use
/// (Python's convention: 0 when the target returned, 1 otherwise).
pub(crate) fn report(result_fd: RawFd, outcome: &Outcome) -> i32 {
    let code = match outcome {
        Outcome::Returned(_) => 0,
        Outcome::Panicked(_) | Outcome::Failed(_) => 1,
    };
    let record = boot::encode(DONE_TAG, outcome)
        .or_else(|_| boot::encode(DONE_TAG, &Outcome::Failed("cannot encode the outcome".to_owned())));
    // SAFETY: `result_fd` is the child's private record fd, open until the process exits.
    let borrowed = unsafe { fd::borrow_raw(result_fd) };
    if let Ok(rec) = record {
        if fd::write_all(borrowed, &rec).is_err() {
            return 1;
        }
    }
    code
}

/// Flushes Rust's stdout/stderr buffers (a child's output must not be lost at `_exit`).
pub(crate) fn flush_std() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// The monomorphic entry a spawned child jumps to: decodes `A`, calls the user's
/// `fn(A) -> R`, encodes `R`.
pub(crate) type Trampoline = fn(usize, u64, &[u8], &[RawFd]) -> Outcome;

pub(crate) fn signature_of<A, R>() -> u64 {
    crate::shm::Fingerprint::of::<fn(A) -> R>().hash
}

pub(crate) fn trampoline<A: DeserializeOwned, R: Serialize>(
    target: usize,
    signature: u64,
    args: &[u8],
    fds: &[RawFd],
) -> Outcome {
    if signature != signature_of::<A, R>() {
        return Outcome::Failed("entry point does not match the target's signature".to_owned());
    }
    let decoded = transfer::with_inherited(fds, || crate::channel::codec::from_bytes::<A>(args));
    let claimed = transfer::take_claimed();
    for &fd in fds.iter().filter(|fd| !claimed.contains(fd)) {
        // SAFETY: these are the originals the spawn helper kept open for this child; the
        // handles just decoded own duplicates, and the claimed ones (skipped) are owned by
        // what claimed them, so closing the rest is ours to do.
        drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    }
    let a = match decoded {
        Ok(a) => a,
        Err(e) => {
            let detail = transfer::take_last_error().unwrap_or_else(|| e.to_string());
            return Outcome::Failed(format!("cannot decode the arguments: {detail}"));
        }
    };
    // SAFETY: `target` is the address of a `fn(A) -> R` in this very executable (checked by
    // file identity), computed by the parent from the same function and passed through the
    // child's private boot record; the signature hash above matches `fn(A) -> R`.
    let f: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    run_captured(move || encode_result(&f(a)))
}

/// If this process was started by the spawn helper, runs the child's target and exits;
/// otherwise returns at once.
///
/// Call it first thing in `main` — the Rust form of Python's `if __name__ == "__main__":`
/// guard. shmproc also runs it automatically before `main` (an ELF constructor), which is
/// what makes `Spawn` work inside `cargo test` binaries and examples; calling it again is
/// harmless.
///
/// ```
/// fn main() {
///     shmproc::init();
///     // ... the parent's program ...
/// }
/// ```
#[allow(clippy::needless_doctest_main)]
pub fn init() {
    let Some(raw) = std::env::var_os(ENV_BOOT) else {
        return;
    };
    // Single-threaded here (before or at the top of main), so editing the environment is
    // fine; grandchildren must not see our boot fd.
    std::env::remove_var(ENV_BOOT);
    let code = match raw.to_str().and_then(|s| s.parse::<RawFd>().ok()) {
        Some(fd) if fd::is_open(fd) => run_spawned(fd),
        _ => {
            eprintln!("shmproc: {ENV_BOOT} does not name an open fd; not a shmproc child");
            2
        }
    };
    std::process::exit(code);
}

fn run_spawned(boot_fd: RawFd) -> i32 {
    // SAFETY: `is_open` just confirmed the fd; it stays open for the life of the process.
    let borrowed = unsafe { fd::borrow_raw(boot_fd) };
    let _ = fd::set_cloexec(borrowed, true);
    let outcome = match load_boot(borrowed) {
        Err(msg) => Outcome::Failed(msg),
        Ok(b) => {
            let mut keep = b.fds.clone();
            keep.push(boot_fd);
            let _ = fd::close_all_except(&keep);
            if b.daemon && !proc::die_with_parent(b.parent_pid) {
                return 1;
            }
            set_identity(Identity {
                name: b.name.clone(),
                daemon: b.daemon,
                parent: Some((b.parent_pid, b.parent_name.clone())),
            });
            install_panic_hook();
            let base = boot::anchor_addr();
            let tramp_addr = base.wrapping_add(b.trampoline as usize);
            // SAFETY: the parent computed this offset from a `Trampoline` in the same
            // executable (checked in `load_boot`), relative to the same anchor function.
            let tramp: Trampoline = unsafe { std::mem::transmute::<usize, Trampoline>(tramp_addr) };
            let target = base.wrapping_add(b.target as usize);
            tramp(target, b.signature, &b.args, &b.fds)
        }
    };
    let code = report(boot_fd, &outcome);
    flush_std();
    code
}

fn load_boot(fd: std::os::fd::BorrowedFd<'_>) -> Result<Boot, String> {
    let bytes = fd::read_all(fd, RECORD_LIMIT).map_err(|e| format!("cannot read the boot record: {e}"))?;
    let b: Boot = boot::decode(BOOT_TAG, &bytes)
        .ok_or("the boot record has no BOOT tag")?
        .map_err(|e| format!("cannot decode the boot record: {e}"))?;
    let me = proc::file_id("/proc/self/exe").map_err(|e| e.to_string())?;
    if me != b.exe {
        return Err("the child runs another executable than its parent".to_owned());
    }
    if b.fds.iter().any(|&f| !fd::is_open(f)) {
        return Err("a handle's fd was not inherited".to_owned());
    }
    Ok(b)
}

extern "C" fn constructor() {
    init();
}

/// Runs [`init`] before `main` in every binary that links the spawn helper, so test
/// harnesses and benches need no code of their own. `start_spawn` references it so the
/// linker keeps it.
#[used]
#[link_section = ".init_array"]
pub(crate) static CONSTRUCTOR: extern "C" fn() = constructor;
