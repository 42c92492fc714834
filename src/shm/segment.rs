//! `Segment`: one mmap'd, header-checked region shared between processes.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::{Arc, Weak};

use memmap2::MmapRaw;

use super::header::{self, DataRange, Fingerprint, Header, HEADER_LEN};
use super::publish;
use crate::error::SegmentError;
use crate::loom::{AtomicBool, Ordering};
use crate::sys::fd;

/// Header words inside a mapping are reached as `core` atomics: the loom shim's types
/// cannot overlay mapped memory (the loom suite checks the publish protocol itself through
/// `publish`'s generic word).
#[allow(clippy::disallowed_types)]
type MappedU64 = core::sync::atomic::AtomicU64;
/// See [`MappedU64`].
#[allow(clippy::disallowed_types)]
type MappedU32 = core::sync::atomic::AtomicU32;

/// A shared-memory region with a validated header, mapped `MAP_SHARED` into this process.
///
/// Two kinds, as in the Python → Rust map:
/// - **anonymous** ([`Segment::anonymous`]): a sealed memfd. Nothing to clean up: the memory
///   is freed when the last process holding it unmaps it or exits, even after `SIGKILL`.
///   It reaches children by fork, or through the spawn helper (the fd is kept open across
///   `exec`). Sealed against shrinking and growing, so no holder can make our mapping fault.
/// - **named** ([`Segment::create_named`] / [`Segment::open_named`]): a POSIX shm object in
///   `/dev/shm`, for unrelated processes. Created `O_EXCL` with mode `0600`; the creating
///   process unlinks it on drop unless [`keep`](Segment::keep) was called. A named object
///   cannot be sealed: a process of the same user could truncate it; that user can also
///   kill us, so named segments trust processes of the same user that far.
///
/// Opening (by name, by inherited fd) validates the header — magic, version, layout
/// fingerprint, sizes — and returns a typed [`SegmentError`]; it never panics.
///
/// Most users want the typed wrappers: [`SharedMemory`](crate::SharedMemory),
/// [`RawValue`](crate::RawValue), [`RawArray`](crate::RawArray), [`Shared`](crate::Shared).
///
/// ```
/// use shmproc::{Fingerprint, Segment};
/// let seg = Segment::anonymous(Fingerprint::bytes(), 4096)?;
/// assert_eq!(seg.len(), 4096);
/// assert!(seg.name().is_none());
/// # Ok::<(), shmproc::SegmentError>(())
/// ```
///
/// `Clone` is cheap: clones share one mapping and one fd through an in-process reference
/// count (crossbeam's `Sender` works the same way). A named segment's name is unlinked when
/// the creating process drops its last clone.
#[derive(Clone)]
pub struct Segment {
    inner: Arc<Inner>,
    /// The first data byte, cached so `as_ptr` on a hot path is one load, as before the
    /// mapping was shared.
    data: NonNull<u8>,
}

// SAFETY: `data` points into the mapping `inner` keeps alive; the mapping is `MAP_SHARED`
// memory that every holder reads and writes only through atomics or the typed handles'
// own rules, exactly as through `inner.map` (which is `Send + Sync`).
unsafe impl Send for Segment {}
// SAFETY: as for `Send`; `&Segment` hands out only the raw pointer and read-only fields.
unsafe impl Sync for Segment {}

/// The mapping and fd that the clones of one [`Segment`] share.
struct Inner {
    map: MmapRaw,
    fd: OwnedFd,
    name: Option<String>,
    /// Unlink the name on drop; only ever true in the creating process.
    unlink_on_drop: AtomicBool,
    /// Pid of the process that created the name; a forked copy in a child never unlinks.
    creator_pid: u32,
    data: DataRange,
    layout: Fingerprint,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &*self.inner;
        f.debug_struct("Segment")
            .field("name", &s.name)
            .field("fd", &s.fd.as_raw_fd())
            .field("len", &s.data.len)
            .field("layout", &s.layout)
            .finish()
    }
}

/// Checks a POSIX shm name: `/` followed by 1–250 bytes, no other `/`, no NUL.
pub(crate) fn check_name(name: &str) -> Result<(), SegmentError> {
    let rest = name.strip_prefix('/').unwrap_or("");
    if rest.is_empty()
        || rest.len() > 250
        || rest.contains('/')
        || rest.contains('\0')
        || rest == "."
        || rest == ".."
    {
        return Err(SegmentError::InvalidName(name.to_owned()));
    }
    Ok(())
}

impl Segment {
    /// Creates an anonymous (memfd) segment holding `data_len` zeroed bytes of `layout`.
    pub fn anonymous(layout: Fingerprint, data_len: usize) -> Result<Self, SegmentError> {
        Self::anonymous_labelled("shmproc", layout, data_len)
    }

    /// [`anonymous`](Self::anonymous) with the memfd named `label` (what `/proc/<pid>/maps`
    /// and `/proc/<pid>/fd` show; arena chunks say "shmproc arena").
    pub(crate) fn anonymous_labelled(
        label: &str,
        layout: Fingerprint,
        data_len: usize,
    ) -> Result<Self, SegmentError> {
        let (total, range) = header::plan(&layout, data_len)?;
        let fd = fd::memfd_sealed(label, total)?;
        Self::init_new(fd, None, total, range, layout)
    }

    /// Creates a named segment (`shm_open` with `O_CREAT | O_EXCL`, mode `0600`).
    ///
    /// `name` has the POSIX form `"/name"`. Fails with [`SegmentError::AlreadyExists`] if the
    /// name is taken. This process unlinks the name when the segment is dropped, unless
    /// [`keep`](Self::keep) is called.
    pub fn create_named(name: &str, layout: Fingerprint, data_len: usize) -> Result<Self, SegmentError> {
        check_name(name)?;
        let (total, range) = header::plan(&layout, data_len)?;
        let fd = fd::shm_create(name, total).map_err(|e| SegmentError::from_open(e, name))?;
        Self::init_new(fd, Some(name.to_owned()), total, range, layout).inspect_err(|_| {
            let _ = fd::shm_unlink(name);
        })
    }

    fn init_new(
        fd: OwnedFd,
        name: Option<String>,
        total: u64,
        range: DataRange,
        layout: Fingerprint,
    ) -> Result<Self, SegmentError> {
        let map = map_fd(&fd, total)?;
        let creator_start = match name {
            Some(_) => crate::sys::proc::start_time(std::process::id()).unwrap_or(0),
            None => 0,
        };
        let h = header::build(&layout, total, range, creator_start);
        let base = map.as_mut_ptr();
        // SAFETY:
        // - the mapping is at least `total >= HEADER_LEN` bytes long and page-aligned, so the
        //   header fits and `base` is aligned for `Header` and for the `AtomicU64` magic;
        // - the body is written with magic 0 and the magic published last (see `publish`).
        unsafe {
            let word = &*base.cast::<MappedU64>();
            publish::publish(word, h.magic, || {
                let mut unpublished = h;
                unpublished.magic = 0;
                std::ptr::write_volatile(base.cast::<Header>(), unpublished);
            });
        }
        let is_named = name.is_some();
        Ok(Self::from_inner(Inner {
            map,
            fd,
            name,
            unlink_on_drop: AtomicBool::new(is_named),
            creator_pid: std::process::id(),
            data: range,
            layout,
        }))
    }

    /// Opens an existing named segment, checking its header against `expected` (or only its
    /// integrity when `expected` is `None`).
    ///
    /// Refuses objects that are not regular, are owned by another user, or are readable or
    /// writable by group or others ([`SegmentError::PermissionDenied`]): shmproc creates
    /// its objects `0600`, so anything else was not made by a process we should trust.
    pub fn open_named(name: &str, expected: Option<&Fingerprint>) -> Result<Self, SegmentError> {
        check_name(name)?;
        let fd = fd::shm_open_existing(name).map_err(|e| SegmentError::from_open(e, name))?;
        let info = fd::file_info(fd.as_fd())?;
        if !info.regular {
            return Err(SegmentError::NotARegularFile);
        }
        if info.uid != fd::geteuid() {
            return Err(SegmentError::PermissionDenied {
                name: name.to_owned(),
                reason: format!("owned by uid {}, not by this process's uid", info.uid),
            });
        }
        if info.mode & 0o077 != 0 {
            return Err(SegmentError::PermissionDenied {
                name: name.to_owned(),
                reason: format!("mode {:o} lets other users in (expected 0600)", info.mode),
            });
        }
        Self::open_checked(fd, Some(name.to_owned()), info.len, expected)
    }

    /// Takes over an fd (a memfd or shm object holding a segment) and validates it.
    ///
    /// The fd must be a memfd sealed against shrinking (segments made by
    /// [`Segment::anonymous`] are); otherwise a holder could truncate it under our mapping.
    pub fn from_fd(fd: OwnedFd, expected: Option<&Fingerprint>) -> Result<Self, SegmentError> {
        Self::from_fd_named(fd, None, expected)
    }

    pub(crate) fn from_fd_named(
        fd: OwnedFd,
        name: Option<String>,
        expected: Option<&Fingerprint>,
    ) -> Result<Self, SegmentError> {
        let info = fd::file_info(fd.as_fd())?;
        if !info.regular {
            return Err(SegmentError::NotARegularFile);
        }
        // An anonymous segment must be a memfd sealed against shrinking. Named shm objects
        // cannot be sealed at all (see the type's documentation).
        if name.is_none() && !fd::sealed_against_shrinking(fd.as_fd()) {
            return Err(SegmentError::PermissionDenied {
                name: String::new(),
                reason: "anonymous segment fd is not a memfd sealed against shrinking".to_owned(),
            });
        }
        Self::open_checked(fd, name, info.len, expected)
    }

    fn open_checked(
        fd: OwnedFd,
        name: Option<String>,
        file_len: u64,
        expected: Option<&Fingerprint>,
    ) -> Result<Self, SegmentError> {
        if file_len < HEADER_LEN as u64 {
            return Err(SegmentError::TooSmall {
                len: file_len,
                needed: HEADER_LEN as u64,
            });
        }
        if file_len > isize::MAX as u64 {
            return Err(SegmentError::TooLarge(file_len.into()));
        }
        let map = map_fd(&fd, file_len)?;
        let h = read_header(&map);
        let (data, found) = header::validate(&h, file_len, expected)?;
        Ok(Self::from_inner(Inner {
            map,
            fd,
            name,
            unlink_on_drop: AtomicBool::new(false),
            creator_pid: std::process::id(),
            data,
            layout: expected.cloned().unwrap_or(found),
        }))
    }

    fn from_inner(inner: Inner) -> Self {
        Self::of(Arc::new(inner))
    }

    fn of(inner: Arc<Inner>) -> Self {
        // SAFETY: `data.offset + data.len <= map.len()` was checked at creation/validation.
        let p = unsafe { inner.map.as_mut_ptr().add(inner.data.offset) };
        let data = NonNull::new(p).expect("mmap never returns null");
        Self { inner, data }
    }

    /// A reference that does not keep the mapping alive (the arena allocator's view of its
    /// current chunk: the chunk goes away with the last handle to any of its slots).
    pub(crate) fn downgrade(&self) -> WeakSegment {
        WeakSegment(Arc::downgrade(&self.inner))
    }

    /// Pointer to the first data byte (aligned for the stored type). Valid while `self` lives.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.data.as_ptr()
    }

    /// Non-null pointer to the data (see [`as_ptr`](Self::as_ptr)).
    pub fn data(&self) -> NonNull<u8> {
        self.data
    }

    /// Length of the data region in bytes (the header is not included).
    pub fn len(&self) -> usize {
        self.inner.data.len
    }

    /// Whether the data region is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.data.len == 0
    }

    /// Total mapped length, header included.
    pub fn total_len(&self) -> usize {
        self.inner.map.len()
    }

    /// The layout this segment stores.
    pub fn layout(&self) -> &Fingerprint {
        &self.inner.layout
    }

    /// The shm name for named segments, `None` for anonymous ones.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// Do not unlink the name when this handle is dropped (Python: never calling `unlink()`).
    ///
    /// Also marks the segment as kept in its header, so [`cleanup_stale`](crate::cleanup_stale)
    /// never removes it, even after its creator exits.
    pub fn keep(&self) {
        self.inner.unlink_on_drop.store(false, Ordering::Relaxed);
        if self.inner.name.is_some() {
            // SAFETY: the mapping holds a validated header at its page-aligned start, and
            // `flags` is a 4-byte-aligned u32 inside it; peers only touch it atomically.
            unsafe {
                let flags = self
                    .inner
                    .map
                    .as_mut_ptr()
                    .add(std::mem::offset_of!(Header, flags));
                (*flags.cast::<MappedU32>()).fetch_or(header::FLAG_KEEP, Ordering::Relaxed);
            }
        }
    }

    /// Removes the name now (`shm_unlink`); existing mappings stay valid. Any process may
    /// call it, as with Python's `SharedMemory.unlink()`. No-op for anonymous segments.
    ///
    /// Only removes the name while it still names this segment: if it was unlinked and
    /// reused for another object meanwhile, that object is left alone and
    /// [`SegmentError::NotFound`] is returned. (A name swapped between that check and the
    /// `shm_unlink` itself cannot be told apart; POSIX offers no unlink-by-fd.)
    pub fn unlink(&self) -> Result<(), SegmentError> {
        self.inner.unlink()
    }

    /// The descriptor behind the mapping (kept open so the segment can reach spawned children).
    pub fn as_raw_fd(&self) -> RawFd {
        self.inner.fd.as_raw_fd()
    }
}

/// A [`Segment`] that may already be gone (see [`Segment::downgrade`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct WeakSegment(Weak<Inner>);

impl WeakSegment {
    /// The segment, if some handle in this process still holds it.
    pub(crate) fn upgrade(&self) -> Option<Segment> {
        self.0.upgrade().map(Segment::of)
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("fd", &self.fd.as_raw_fd()).finish()
    }
}

impl Inner {
    fn unlink(&self) -> Result<(), SegmentError> {
        self.unlink_on_drop.store(false, Ordering::Relaxed);
        let Some(n) = &self.name else {
            return Ok(());
        };
        match fd::shm_name_is(n, self.fd.as_fd()) {
            Ok(true) => fd::shm_unlink(n).map_err(|e| SegmentError::from_open(e, n)),
            Ok(false) => Err(SegmentError::NotFound(n.clone())),
            Err(e) => Err(SegmentError::from_open(e, n)),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.unlink_on_drop.load(Ordering::Relaxed) && self.creator_pid == std::process::id() {
            let _ = self.unlink();
        }
    }
}

fn map_fd(fd: &OwnedFd, len: u64) -> Result<MmapRaw, SegmentError> {
    let len = usize::try_from(len).map_err(|_| SegmentError::TooLarge(len.into()))?;
    Ok(fd::map_shared(fd.as_fd(), len)?)
}

/// Copies the header out of shared memory once: the magic with an acquire load, the rest
/// with volatile reads. Later checks use only this copy.
fn read_header(map: &MmapRaw) -> Header {
    let base = map.as_ptr();
    // SAFETY:
    // - the caller mapped at least HEADER_LEN bytes, page-aligned, so both reads are in
    //   bounds and aligned;
    // - `Header` is Pod: any bytes a peer wrote form a valid value.
    unsafe {
        let word = &*base.cast::<MappedU64>();
        let (magic, mut h) = publish::observe(word, || std::ptr::read_volatile(base.cast::<Header>()));
        h.magic = magic;
        h
    }
}
