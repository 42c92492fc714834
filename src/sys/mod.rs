//! The only code in the crate that talks to the kernel.
//!
//! Everything above this layer works with safe wrappers: owned fds, typed errors and
//! plain Rust values. Linux-specific (memfd, file seals, futex, pidfd).

#[cfg_attr(loom, allow(dead_code))]
pub(crate) mod clock;
pub(crate) mod fd;
// The futex calls take `core`'s `AtomicU32`: the kernel interface users' own words use too
// (the crate's words reach it through `crate::loom`'s `as_core`).
#[allow(clippy::disallowed_types)]
pub mod futex;
pub(crate) mod mem;
pub(crate) mod proc;
