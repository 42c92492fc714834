//! The only code in the crate that talks to the kernel.
//!
//! Everything above this layer works with safe wrappers: owned fds, typed errors and
//! plain Rust values. Linux-specific (memfd, file seals, futex, pidfd).

pub(crate) mod fd;
pub mod futex;
pub(crate) mod mem;
pub(crate) mod proc;
