//! The records a parent and its child exchange through the child's private memfd.
//!
//! The parent writes `BOOT` + a [`Boot`] before a spawned child starts; the child overwrites
//! the file with `DONE` + an [`Outcome`] just before it exits. A file that does not start
//! with `DONE` after the child exited means the child never reported.

use serde::{Deserialize, Serialize};

use crate::error::PanicInfo;

pub(crate) const BOOT_TAG: &[u8; 4] = b"BOOT";
pub(crate) const DONE_TAG: &[u8; 4] = b"DONE";
/// Environment variable naming the boot fd in a spawned child.
pub(crate) const ENV_BOOT: &str = "SHMPROC_BOOT_FD";
/// Largest record either side reads back (arguments or result).
pub(crate) const RECORD_LIMIT: u64 = 1 << 30;

/// What a spawned child needs to run its target.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Boot {
    /// `(st_dev, st_ino)` of the parent's executable; the child checks it runs the same one.
    pub(crate) exe: (u64, u64),
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: String,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    /// Offsets of the trampoline and of the user's `fn` from [`anchor`], in this executable.
    pub(crate) trampoline: u64,
    pub(crate) target: u64,
    /// Hash of the target's type name; the trampoline checks it before calling.
    pub(crate) signature: u64,
    pub(crate) args: Vec<u8>,
    /// Fds kept open across exec for handles inside `args`.
    pub(crate) fds: Vec<i32>,
}

/// How the child's target ended.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Outcome {
    /// Returned normally; the postcard-encoded return value.
    Returned(Vec<u8>),
    /// Panicked.
    Panicked(PanicInfo),
    /// The child could not run its target (boot record or arguments unusable).
    Failed(String),
}

/// A function whose address serves as the origin for code offsets. Both parent and spawned
/// child run the same executable, so `f as usize - anchor as usize` is the same in both even
/// though ASLR moves the base.
#[inline(never)]
pub(crate) fn anchor() {
    std::hint::black_box(());
}

pub(crate) fn anchor_addr() -> usize {
    anchor as *const () as usize
}

pub(crate) fn encode<T: Serialize>(tag: &[u8; 4], value: &T) -> Result<Vec<u8>, postcard::Error> {
    let mut out = tag.to_vec();
    out.extend(postcard::to_allocvec(value)?);
    Ok(out)
}

/// Decodes a record if it carries `tag`; `None` if the tag differs.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    tag: &[u8; 4],
    bytes: &[u8],
) -> Option<Result<T, postcard::Error>> {
    let body = bytes.strip_prefix(tag.as_slice())?;
    Some(postcard::from_bytes(body))
}
