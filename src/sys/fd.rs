//! File-descriptor level calls: memfd with seals, POSIX shm objects, fstat, dup, pread/pwrite.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{self, MemfdFlags, Mode, SealFlags};
use rustix::io::{Errno, FdFlags};
use rustix::shm;

fn to_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Creates an anonymous memfd of `len` bytes (zero-filled), close-on-exec, sealed so that
/// nobody can shrink or grow it and no further seals can be added or removed.
///
/// Sealing against shrinking is what makes it safe to map: a peer holding the fd cannot
/// truncate it under our mapping and make our accesses `SIGBUS`.
pub(crate) fn memfd_sealed(name: &str, len: u64) -> io::Result<OwnedFd> {
    let fd = fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).map_err(to_io)?;
    fs::ftruncate(&fd, len).map_err(to_io)?;
    fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL).map_err(to_io)?;
    Ok(fd)
}

/// Whether `fd` carries the seal against shrinking (`F_GET_SEALS`; `false` when it cannot
/// be sealed at all, e.g. not a memfd).
pub(crate) fn sealed_against_shrinking(fd: BorrowedFd<'_>) -> bool {
    fs::fcntl_get_seals(fd).is_ok_and(|s| s.contains(SealFlags::SHRINK))
}

/// Maps `len` bytes of `fd` from offset 0, shared and read-write (`mmap(MAP_SHARED)`).
pub(crate) fn map_shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<memmap2::MmapRaw> {
    use std::os::fd::AsRawFd;
    memmap2::MmapOptions::new().len(len).map_raw(fd.as_raw_fd())
}

/// Creates an unsealed, growable memfd (close-on-exec) for private parent↔child records.
pub(crate) fn memfd_plain(name: &str) -> io::Result<OwnedFd> {
    fs::memfd_create(name, MemfdFlags::CLOEXEC).map_err(to_io)
}

/// Facts about an fd that segment validation needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileInfo {
    pub(crate) len: u64,
    pub(crate) regular: bool,
    pub(crate) uid: u32,
    pub(crate) mode: u32,
}

pub(crate) fn file_info(fd: BorrowedFd<'_>) -> io::Result<FileInfo> {
    let st = fs::fstat(fd).map_err(to_io)?;
    Ok(FileInfo {
        len: u64::try_from(st.st_size).unwrap_or(0),
        regular: fs::FileType::from_raw_mode(st.st_mode) == fs::FileType::RegularFile,
        uid: st.st_uid,
        mode: st.st_mode & 0o7777,
    })
}

pub(crate) fn geteuid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Where POSIX shm objects live on Linux.
const SHM_DIR: &str = "/dev/shm";

/// `shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600)` then `ftruncate(len)`. `O_EXCL` never
/// follows a symlink (an existing link is `EEXIST`). On a failed truncate the new object is
/// unlinked again.
pub(crate) fn shm_create(name: &str, len: u64) -> io::Result<OwnedFd> {
    let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
    let fd = shm::open(name, flags, Mode::RUSR | Mode::WUSR).map_err(to_io)?;
    // shm_open applies the umask; make the mode exactly 0600 whatever the umask was.
    if let Err(e) = fs::fchmod(&fd, Mode::RUSR | Mode::WUSR).and_then(|()| fs::ftruncate(&fd, len)) {
        let _ = shm::unlink(name);
        return Err(to_io(e));
    }
    Ok(fd)
}

/// Opens an existing shm object (`"/name"`, already validated: one leading slash, no other)
/// with `O_NOFOLLOW`, so a symlink planted in `/dev/shm` is refused (`ELOOP`) instead of
/// leading us to another file.
fn shm_open_nofollow(name: &str, access: fs::OFlags) -> io::Result<OwnedFd> {
    let path = format!("{SHM_DIR}{name}");
    fs::open(
        path,
        access | fs::OFlags::CLOEXEC | fs::OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(to_io)
}

/// Opens an existing shm object read-write, refusing symlinks.
pub(crate) fn shm_open_existing(name: &str) -> io::Result<OwnedFd> {
    shm_open_nofollow(name, fs::OFlags::RDWR)
}

/// Opens an existing shm object read-only (to inspect its header), refusing symlinks.
pub(crate) fn shm_open_readonly(name: &str) -> io::Result<OwnedFd> {
    shm_open_nofollow(name, fs::OFlags::RDONLY)
}

/// Whether `name` still names the very object `fd` is open on (same device and inode).
pub(crate) fn shm_name_is(name: &str, fd: BorrowedFd<'_>) -> io::Result<bool> {
    let theirs = fs::fstat(shm_open_nofollow(name, fs::OFlags::RDONLY)?).map_err(to_io)?;
    let ours = fs::fstat(fd).map_err(to_io)?;
    Ok(theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino)
}

/// Fills `buf` from `offset`, failing on a short file.
pub(crate) fn read_exact_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        match rustix::io::pread(fd, &mut buf[done..], offset + done as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(to_io(e)),
        }
    }
    Ok(())
}

pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    shm::unlink(name).map_err(to_io)
}

/// `fcntl(F_DUPFD_CLOEXEC)`: a new close-on-exec descriptor for the same open file.
pub(crate) fn dup_cloexec(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(to_io)
}

/// Sets or clears `FD_CLOEXEC`.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = if on { FdFlags::CLOEXEC } else { FdFlags::empty() };
    rustix::io::fcntl_setfd(fd, flags).map_err(to_io)
}

/// Reads the whole content of a (small) file from offset 0, at most `limit` bytes.
pub(crate) fn read_all(fd: BorrowedFd<'_>, limit: u64) -> io::Result<Vec<u8>> {
    let len = file_info(fd)?.len;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "record larger than its limit",
        ));
    }
    let mut buf = vec![0u8; len as usize];
    read_exact_at(fd, &mut buf, 0)?;
    Ok(buf)
}

/// Replaces the whole content of a file with `data`.
pub(crate) fn write_all(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    fs::ftruncate(fd, 0).map_err(to_io)?;
    let mut off = 0usize;
    while off < data.len() {
        match rustix::io::pwrite(fd, &data[off..], off as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(to_io(e)),
        }
    }
    Ok(())
}

/// Borrows a raw fd number that the caller knows is open for the duration of the borrow.
///
/// # Safety
/// `raw` must be an open descriptor for as long as the returned value is used.
pub(crate) unsafe fn borrow_raw(raw: i32) -> BorrowedFd<'static> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { BorrowedFd::borrow_raw(raw) }
}

/// Whether `raw` currently names an open descriptor in this process.
pub(crate) fn is_open(raw: i32) -> bool {
    if raw < 0 {
        return false;
    }
    // SAFETY: F_GETFD on an arbitrary number is harmless; we only look at the result and
    // drop the borrow at once.
    let fd = unsafe { borrow_raw(raw) };
    rustix::io::fcntl_getfd(fd).is_ok()
}

/// Closes every descriptor above 2 except those in `keep` (a spawned child drops whatever
/// it inherited by accident — fds other code opened without `O_CLOEXEC` — as Python's
/// spawn does with `close_fds`).
pub(crate) fn close_all_except(keep: &[i32]) -> io::Result<()> {
    use std::os::fd::FromRawFd;
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own fd was in the listing but is closed now; closing that number
    // again could only hit an fd opened since, and nothing else runs at this point.
    for fd in listed {
        if fd > 2 && !keep.contains(&fd) && is_open(fd) {
            // SAFETY: nothing in this process owns these fds: they were inherited across
            // exec, and the spawned child has run none of its own code yet.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Ok(())
}

/// What an `shm_open`/`open` failure means for the caller (see `SegmentError::from_open`).
pub(crate) enum OpenFailure {
    /// `ENOENT`.
    NotFound,
    /// `EEXIST`.
    Exists,
    /// `EACCES`, `EPERM`.
    Denied,
    /// `EINVAL`, `ENAMETOOLONG`.
    BadName,
    /// `ELOOP`: the name is a symbolic link (opened with `O_NOFOLLOW`).
    SymLink,
    /// Anything else.
    Other,
}

/// Classifies an error from opening or creating a named object.
pub(crate) fn classify_open(e: &io::Error) -> OpenFailure {
    match e.raw_os_error() {
        Some(libc::ENOENT) => OpenFailure::NotFound,
        Some(libc::EEXIST) => OpenFailure::Exists,
        Some(libc::EACCES) | Some(libc::EPERM) => OpenFailure::Denied,
        Some(libc::EINVAL) | Some(libc::ENAMETOOLONG) => OpenFailure::BadName,
        Some(libc::ELOOP) => OpenFailure::SymLink,
        _ => OpenFailure::Other,
    }
}
