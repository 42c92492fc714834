//! Memory advice: giving the pages of a shared mapping back to the kernel.

use std::io;

/// Frees the pages of `[addr, addr + len)` in a shared mapping (`MADV_REMOVE`): the backing
/// memory of the memfd or shm object is released, and every process mapping those pages
/// reads zeros there afterwards. `addr` and `len` must be page-aligned.
///
/// # Safety
/// `[addr, addr + len)` lies inside one live shared mapping of the caller's, and no code
/// relies on those bytes keeping their contents (they read back as zero) — in this process
/// or in any other that maps the same object.
pub(crate) unsafe fn remove_pages(addr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is inside a mapping of its own whose contents
    // may be dropped; `madvise` reads no memory and changes only those pages' contents.
    let r = unsafe { libc::madvise(addr.cast::<libc::c_void>(), len, libc::MADV_REMOVE) };
    match r {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}
