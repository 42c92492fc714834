//! Integration tests for segments: anonymous and named segments, the typed cells built on
//! them, and how opening reacts to every kind of bad object found in `/dev/shm` or passed
//! as an fd.
//!
//! Named tests create objects only under a per-test prefix
//! `shmproc-test-<pid>-<seq>-<tag>-`; a guard removes whatever is left under that prefix
//! when the test ends, even when it fails, and each test finishes by asserting that nothing
//! remains (so the library's own cleanup is what gets checked).
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use rustix::fs::{MemfdFlags, SealFlags};
use shmproc::{
    check_image, DataRange, Fingerprint, IndexError, RawArray, RawValue, Segment, SegmentError, Shared,
    SharedMemory, ShmSafe, HEADER_LEN, MAGIC, MAX_ALIGN, VERSION,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const SHM_DIR: &str = "/dev/shm";

/// Hands out unique shm names for one test and removes everything under its prefix on drop.
struct ShmNames {
    prefix: String,
    next: usize,
}

impl ShmNames {
    fn new(tag: &str) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        Self {
            prefix: format!("shmproc-test-{}-{seq}-{tag}-", std::process::id()),
            next: 0,
        }
    }

    /// A fresh POSIX name, `"/<prefix><n>"`.
    fn name(&mut self) -> String {
        let n = format!("/{}{}", self.prefix, self.next);
        self.next += 1;
        n
    }

    /// Entries of `/dev/shm` under this test's prefix.
    fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(SHM_DIR)
            .expect("read /dev/shm")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        v.sort();
        v
    }

    /// The leak check every named test ends with.
    fn assert_clean(&self) {
        let left = self.leftovers();
        assert!(left.is_empty(), "left behind in /dev/shm: {left:?}");
    }
}

impl Drop for ShmNames {
    fn drop(&mut self) {
        for n in self.leftovers() {
            let p = PathBuf::from(SHM_DIR).join(&n);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {
                    let _ = fs::remove_dir(&p);
                }
                Ok(_) => {
                    let _ = fs::remove_file(&p);
                }
                Err(_) => {}
            }
        }
    }
}

/// `/dev/shm/<name without the slash>`.
fn path_of(name: &str) -> PathBuf {
    PathBuf::from(SHM_DIR).join(name.strip_prefix('/').expect("names start with '/'"))
}

/// Whether anything (file, link, directory) exists under `name`, without following links.
fn exists(name: &str) -> bool {
    fs::symlink_metadata(path_of(name)).is_ok()
}

/// Writes `bytes` as a new object `name` in /dev/shm with exactly `mode`.
fn write_shm_file(name: &str, bytes: &[u8], mode: u32) {
    let path = path_of(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .expect("create test file in /dev/shm");
    f.write_all(bytes).expect("write test file");
    // The umask may have cleared bits; set the mode exactly.
    fs::set_permissions(&path, Permissions::from_mode(mode)).expect("chmod test file");
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Builds a segment image by hand from the documented header layout (independent of the
/// library's own writer): data right after the header, rounded up to the alignment.
fn handmade_image(fp: &Fingerprint, data: &[u8]) -> Vec<u8> {
    let offset = (HEADER_LEN as u64).next_multiple_of(fp.align) as usize;
    let mut b = vec![0u8; offset + data.len()];
    put_u64(&mut b, 0, MAGIC);
    put_u32(&mut b, 8, VERSION);
    put_u32(&mut b, 12, HEADER_LEN as u32);
    let total = b.len() as u64;
    put_u64(&mut b, 16, total);
    put_u64(&mut b, 24, offset as u64);
    put_u64(&mut b, 32, data.len() as u64);
    put_u64(&mut b, 40, fp.size);
    put_u64(&mut b, 48, fp.align);
    put_u64(&mut b, 56, fp.hash);
    put_u32(&mut b, 64, 4242); // creator_pid
    let name = fp.name.as_bytes();
    let n = name.len().min(48);
    b[80..80 + n].copy_from_slice(&name[..n]);
    b[offset..].copy_from_slice(data);
    b
}

/// A valid image of a `RawValue<u64>` holding `value`, as the library writes it.
fn library_u64_image(names: &mut ShmNames, value: u64) -> Vec<u8> {
    let name = names.name();
    let v = RawValue::<u64>::create_named(&name, value).unwrap();
    let bytes = fs::read(path_of(&name)).unwrap();
    drop(v);
    assert!(!exists(&name));
    assert_eq!(bytes.len(), HEADER_LEN + 8);
    bytes
}

/// Puts `bytes` into /dev/shm (mode 0600), opens it as a segment of `u64`, removes the file
/// again and returns the error. Also checks that `check_image` reports the same problem.
fn open_err_u64(names: &mut ShmNames, bytes: &[u8]) -> SegmentError {
    let fp = Fingerprint::of::<u64>();
    let name = names.name();
    write_shm_file(&name, bytes, 0o600);
    let res = Segment::open_named(&name, Some(&fp));
    fs::remove_file(path_of(&name)).unwrap();
    let err = res.expect_err("opening a bad segment must fail");
    let pure = check_image(bytes, Some(&fp)).expect_err("check_image must reject what open rejects");
    assert_eq!(
        err.to_string(),
        pure.to_string(),
        "open_named and check_image disagree"
    );
    err
}

/// A memfd holding `bytes`, with sealing allowed or not, and `seals` applied.
fn memfd_with(bytes: &[u8], allow_sealing: bool, seals: SealFlags) -> OwnedFd {
    let mut flags = MemfdFlags::CLOEXEC;
    if allow_sealing {
        flags |= MemfdFlags::ALLOW_SEALING;
    }
    let fd = rustix::fs::memfd_create("shmproc-test", flags).unwrap();
    let mut f = File::from(fd);
    f.write_all(bytes).unwrap();
    let fd = OwnedFd::from(f);
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
    }
    fd
}

/// Reads the `u64` at the start of a segment's data.
fn seg_u64(seg: &Segment) -> u64 {
    assert!(seg.len() >= 8);
    // SAFETY: the data region holds at least 8 bytes, aligned for u64 (checked above / by
    // the layout); nobody else writes it during the tests.
    unsafe { std::ptr::read_volatile(seg.as_ptr().cast::<u64>()) }
}

// ---------------------------------------------------------------------------------------
// Anonymous segments
// ---------------------------------------------------------------------------------------

#[test]
fn anonymous_segment_layout_and_zeroed_data() {
    let seg = Segment::anonymous(Fingerprint::bytes(), 5000).unwrap();
    assert_eq!(seg.len(), 5000);
    assert!(!seg.is_empty());
    assert!(seg.name().is_none());
    assert_eq!(seg.layout(), &Fingerprint::bytes());
    assert_eq!(seg.total_len(), HEADER_LEN + 5000);
    // SAFETY: 5000 readable bytes at as_ptr(), no concurrent writer.
    let data = unsafe { std::slice::from_raw_parts(seg.as_ptr(), seg.len()) };
    assert!(data.iter().all(|&b| b == 0), "new segment is not zeroed");
    assert_eq!(seg.data().as_ptr(), seg.as_ptr());

    let empty = Segment::anonymous(Fingerprint::bytes(), 0).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    assert_eq!(empty.total_len(), HEADER_LEN);
}

#[test]
fn anonymous_segment_is_sealed_and_cloexec() {
    let seg = Segment::anonymous(Fingerprint::of::<u64>(), 8).unwrap();
    // SAFETY: the segment keeps its fd open while `seg` lives, which outlives the borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(seg.as_raw_fd()) };
    let seals = rustix::fs::fcntl_get_seals(fd).unwrap();
    assert!(
        seals.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL),
        "seals: {seals:?}"
    );
    let flags = rustix::io::fcntl_getfd(fd).unwrap();
    assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
}

#[test]
fn anonymous_segment_honours_alignment() {
    for align in [1u64, 2, 8, 64, 256, 4096] {
        let fp = Fingerprint::new(align, align, "aligned");
        let seg = Segment::anonymous(fp, align as usize * 3).unwrap();
        assert_eq!(seg.as_ptr() as usize % align as usize, 0, "align {align}");
        assert_eq!(seg.len(), align as usize * 3);
        let offset = (HEADER_LEN as u64).next_multiple_of(align) as usize;
        assert_eq!(seg.total_len(), offset + seg.len(), "align {align}");
    }
    assert_eq!(MAX_ALIGN, 4096);
}

#[test]
fn anonymous_segment_rejects_bad_alignment() {
    for align in [0u64, 3, 12, 8192, 1 << 40] {
        let err = Segment::anonymous(Fingerprint::new(1, align, "weird"), 16).unwrap_err();
        assert!(
            matches!(err, SegmentError::Unsupported(_)),
            "align {align}: {err:?}"
        );
    }
}

#[test]
fn anonymous_segment_rejects_impossible_size() {
    for len in [usize::MAX, usize::MAX - HEADER_LEN + 1, isize::MAX as usize] {
        let err = Segment::anonymous(Fingerprint::bytes(), len).unwrap_err();
        assert!(matches!(err, SegmentError::TooLarge(_)), "len {len}: {err:?}");
    }
}

#[test]
fn anonymous_segment_clone_and_from_fd_share_memory() {
    let fp = Fingerprint::of::<u64>();
    let seg = Segment::anonymous(fp.clone(), 8).unwrap();
    let copy = seg.clone();
    assert_eq!(copy.as_raw_fd(), seg.as_raw_fd(), "a clone shares the fd");
    assert_eq!(copy.as_ptr(), seg.as_ptr(), "a clone shares the mapping");
    assert_eq!(copy.layout(), &fp);

    // SAFETY: 8 writable bytes aligned for u64.
    unsafe { std::ptr::write_volatile(seg.as_ptr().cast::<u64>(), 0xfeed) };
    assert_eq!(seg_u64(&copy), 0xfeed);

    // An inherited fd (here a dup) holding the sealed memfd opens the same memory.
    // SAFETY: the fd stays open while `seg` lives.
    let raw = unsafe { BorrowedFd::borrow_raw(seg.as_raw_fd()) };
    let dup = raw.try_clone_to_owned().unwrap();
    let via_fd = Segment::from_fd(dup, Some(&fp)).unwrap();
    assert_eq!(seg_u64(&via_fd), 0xfeed);
    // SAFETY: as above.
    unsafe { std::ptr::write_volatile(via_fd.as_ptr().cast::<u64>(), 7) };
    assert_eq!(seg_u64(&seg), 7);

    // The copies outlive the original.
    drop(seg);
    assert_eq!(seg_u64(&copy), 7);
    assert_eq!(seg_u64(&via_fd), 7);
}

// ---------------------------------------------------------------------------------------
// SharedMemory
// ---------------------------------------------------------------------------------------

#[test]
fn shared_memory_anonymous_read_write() {
    let shm = SharedMemory::new(32).unwrap();
    assert_eq!(shm.size(), 32);
    assert!(shm.name().is_none());
    assert_eq!(shm.to_vec(), vec![0u8; 32]);
    shm.write_at(3, b"hello").unwrap();
    let mut buf = [0u8; 7];
    shm.read_at(2, &mut buf).unwrap();
    assert_eq!(&buf, b"\0hello\0");
    shm.write_at(27, b"tail!").unwrap();
    let v = shm.to_vec();
    assert_eq!(&v[27..], b"tail!");
    // SAFETY: no other handle exists.
    assert_eq!(unsafe { shm.as_slice() }, &v[..]);
    // Unlink and keep are no-ops for anonymous blocks.
    shm.unlink().unwrap();
    shm.keep();
    assert_eq!(shm.segment().len(), 32);

    let mut shm = shm;
    // SAFETY: `shm` is the only handle.
    unsafe { shm.as_mut_slice()[0] = 0xaa };
    assert_eq!(shm.to_vec()[0], 0xaa);
}

#[test]
fn shared_memory_bounds_errors() {
    let shm = SharedMemory::new(16).unwrap();
    shm.write_at(0, &[9u8; 16]).unwrap();

    let mut buf = [0u8; 8];
    assert_eq!(
        shm.read_at(10, &mut buf),
        Err(IndexError {
            index: 10,
            count: 8,
            len: 16
        })
    );
    assert_eq!(
        shm.write_at(9, &[1u8; 8]),
        Err(IndexError {
            index: 9,
            count: 8,
            len: 16
        })
    );
    assert_eq!(
        shm.write_at(usize::MAX, &[1u8]),
        Err(IndexError {
            index: usize::MAX,
            count: 1,
            len: 16
        })
    );
    assert_eq!(
        shm.read_at(17, &mut []),
        Err(IndexError {
            index: 17,
            count: 0,
            len: 16
        })
    );
    // Empty accesses at the very end are in range.
    shm.read_at(16, &mut []).unwrap();
    shm.write_at(16, &[]).unwrap();
    // Failed writes changed nothing, and the error prints its numbers.
    assert_eq!(shm.to_vec(), vec![9u8; 16]);
    let msg = IndexError {
        index: 9,
        count: 8,
        len: 16,
    }
    .to_string();
    assert!(msg.contains('9') && msg.contains("16"), "{msg}");
}

/// What a child gets from every constructor whose size makes no sense.
fn zero_sizes(name: String) -> Vec<String> {
    let kind = |r: Result<(), SegmentError>| match r {
        Err(SegmentError::InvalidSize(why)) => format!("InvalidSize({why})"),
        other => format!("{other:?}"),
    };
    vec![
        kind(SharedMemory::new(0).map(drop)),
        kind(SharedMemory::create_named(&name, 0).map(drop)),
        kind(shmproc::Queue::<u32>::with_capacity(0, 0).map(drop)),
        kind(shmproc::Queue::<u64, shmproc::PodCodec>::with_capacity(0, 0).map(drop)),
        kind(shmproc::Connection::<u32>::pair(true, 0).map(drop)),
        kind(shmproc::raw::Channel::new(0).map(drop)),
        kind(shmproc::raw::SpscRing::<u64>::new(0).map(drop)),
        kind(shmproc::raw::MpmcRing::<u64>::new(0).map(drop)),
        kind(shmproc::Barrier::new(0).map(drop)),
    ]
}

/// Python's `SharedMemory(create=True, size=0)` and `Barrier(0)` are `ValueError`s: every
/// constructor whose size makes no sense is `InvalidSize`, in the parent and in a child of
/// each start method, and the refused named segment leaves nothing in `/dev/shm`.
#[test]
fn zero_sizes_are_invalid() {
    let mut names = ShmNames::new("zero");
    let expected = [
        "InvalidSize(a SharedMemory needs at least one byte)",
        "InvalidSize(a SharedMemory needs at least one byte)",
        "InvalidSize(a queue's buffer needs at least one byte)",
        "InvalidSize(a queue's buffer needs at least one byte)",
        "InvalidSize(a buffer needs at least one byte)",
        "InvalidSize(a buffer needs at least one byte)",
        "InvalidSize(a ring needs at least one slot)",
        "InvalidSize(a ring needs at least one slot)",
        "InvalidSize(a barrier needs at least one party)",
    ];
    assert_eq!(zero_sizes(names.name()), expected, "in the test process");
    for m in [shmproc::StartMethod::Fork, shmproc::StartMethod::Spawn] {
        let mut child = shmproc::Process::new(zero_sizes, names.name())
            .start_method(m)
            .daemon(true)
            .start()
            .unwrap();
        let got = child.join_timeout(std::time::Duration::from_secs(60)).unwrap();
        assert_eq!(got, expected, "{m:?}");
    }
    // The smallest sizes that make sense are fine.
    let one = SharedMemory::new(1).unwrap();
    assert_eq!(one.size(), 1);
    one.write_at(0, &[7]).unwrap();
    assert_eq!(one.to_vec(), [7]);
    assert_eq!(
        one.write_at(1, &[1]),
        Err(IndexError {
            index: 1,
            count: 1,
            len: 1
        })
    );
    let named = SharedMemory::create_named(&names.name(), 1).unwrap();
    assert_eq!(SharedMemory::open_named(named.name().unwrap()).unwrap().size(), 1);
    drop(named);
    shmproc::Barrier::new(1).unwrap().wait().unwrap();
    names.assert_clean();
}

// ---------------------------------------------------------------------------------------
// RawValue
// ---------------------------------------------------------------------------------------

#[test]
fn raw_value_get_set_and_clone() {
    let v = RawValue::new(7u64).unwrap();
    assert_eq!(v.get(), 7);
    v.set(u64::MAX - 1);
    assert_eq!(v.get(), u64::MAX - 1);

    let w = v.clone();
    assert_eq!(w.as_ptr(), v.as_ptr(), "a clone shares the mapping");
    assert_eq!(w.get(), u64::MAX - 1);
    w.set(11);
    assert_eq!(v.get(), 11);
    // SAFETY: as_ptr points to a live, aligned u64.
    unsafe { v.as_ptr().write_volatile(12) };
    assert_eq!(w.get(), 12);
    // Arena representation: a 64-byte-aligned slot of a shared "shmproc arena" chunk.
    assert_eq!(v.segment().layout().name, "shmproc arena");
    assert_eq!(v.offset() % 64, 0);
    assert!(v.offset() + 8 <= v.segment().len());

    drop(v);
    assert_eq!(w.get(), 12, "the clone outlives the original");
}

#[test]
fn raw_value_various_types() {
    let a = RawValue::new(0xabu8).unwrap();
    assert_eq!(a.get(), 0xab);
    let b = RawValue::new(-1.5f64).unwrap();
    assert_eq!(b.get(), -1.5);
    assert_eq!(b.as_ptr() as usize % 8, 0);
    let c = RawValue::new([1u16, 2, 3]).unwrap();
    assert_eq!(c.get(), [1, 2, 3]);
    c.set([4, 5, 6]);
    assert_eq!(c.clone().get(), [4, 5, 6]);
    let d = RawValue::new(u128::MAX / 3).unwrap();
    assert_eq!(d.get(), u128::MAX / 3);
    assert_eq!(d.as_ptr() as usize % std::mem::align_of::<u128>(), 0);
    assert_eq!(d.segment().layout().name, "shmproc arena");
    assert!(d.offset() + 16 <= d.segment().len());
}

// ---------------------------------------------------------------------------------------
// RawArray
// ---------------------------------------------------------------------------------------

#[test]
fn raw_array_basics() {
    let a = RawArray::from_slice(&[1.0f64, 2.0, 3.0]).unwrap();
    assert_eq!(a.len(), 3);
    assert!(!a.is_empty());
    assert_eq!(a.to_vec(), vec![1.0, 2.0, 3.0]);
    a.set(1, 20.0).unwrap();
    assert_eq!(a.get(1), Some(20.0));
    a.write_from(1, &[7.0, 8.0]).unwrap();
    let mut out = [0.0; 2];
    a.read_into(0, &mut out).unwrap();
    assert_eq!(out, [1.0, 7.0]);
    a.copy_from_slice(&[4.0, 5.0, 6.0]).unwrap();
    // SAFETY: no writer while the slice lives.
    assert_eq!(unsafe { a.as_slice() }, &[4.0, 5.0, 6.0]);
    assert_eq!(a.segment().layout().name, "shmproc arena");
    assert!(a.offset() + 24 <= a.segment().len());

    let b = a.clone();
    assert_eq!(b.len(), 3);
    b.set(2, -1.0).unwrap();
    assert_eq!(a.get(2), Some(-1.0));

    let mut z = RawArray::<u32>::new(5).unwrap();
    assert_eq!(z.to_vec(), vec![0; 5]);
    // SAFETY: `z` is the only handle.
    unsafe { z.as_mut_slice()[4] = 99 };
    assert_eq!(z.get(4), Some(99));
}

#[test]
fn raw_array_bounds_errors() {
    let a = RawArray::from_slice(&[10u32, 20, 30, 40]).unwrap();
    assert_eq!(a.get(4), None);
    assert_eq!(a.get(usize::MAX), None);
    assert_eq!(
        a.set(4, 1),
        Err(IndexError {
            index: 4,
            count: 1,
            len: 4
        })
    );
    assert_eq!(
        a.set(usize::MAX, 1),
        Err(IndexError {
            index: usize::MAX,
            count: 1,
            len: 4
        })
    );
    let mut out = [0u32; 3];
    assert_eq!(
        a.read_into(2, &mut out),
        Err(IndexError {
            index: 2,
            count: 3,
            len: 4
        })
    );
    assert_eq!(
        a.write_from(usize::MAX, &[1, 2]),
        Err(IndexError {
            index: usize::MAX,
            count: 2,
            len: 4
        })
    );
    assert_eq!(
        a.write_from(3, &[1, 2]),
        Err(IndexError {
            index: 3,
            count: 2,
            len: 4
        })
    );
    assert_eq!(
        a.copy_from_slice(&[1, 2, 3]),
        Err(IndexError {
            index: 0,
            count: 3,
            len: 4
        })
    );
    assert_eq!(
        a.to_vec(),
        vec![10, 20, 30, 40],
        "failed writes changed the array"
    );
    a.read_into(4, &mut []).unwrap();
}

#[test]
fn raw_array_empty() {
    let a = RawArray::<u64>::new(0).unwrap();
    assert!(a.is_empty());
    assert_eq!(a.len(), 0);
    assert!(a.to_vec().is_empty());
    assert_eq!(a.get(0), None);
    let b = RawArray::<u16>::from_slice(&[]).unwrap();
    assert!(b.is_empty());
}

#[test]
fn raw_array_rejects_zero_sized_elements() {
    let mut names = ShmNames::new("zst");
    let err = RawArray::<()>::new(3).unwrap_err();
    assert!(matches!(err, SegmentError::Unsupported(_)), "{err:?}");
    let err = RawArray::<()>::new(0).unwrap_err();
    assert!(matches!(err, SegmentError::Unsupported(_)), "{err:?}");
    let err = RawArray::<[u32; 0]>::from_slice(&[[], []]).unwrap_err();
    assert!(matches!(err, SegmentError::Unsupported(_)), "{err:?}");
    let name = names.name();
    let err = RawArray::<()>::create_named(&name, 4).unwrap_err();
    assert!(matches!(err, SegmentError::Unsupported(_)), "{err:?}");
    assert!(!exists(&name));
    names.assert_clean();
}

#[test]
fn raw_array_too_large() {
    let err = RawArray::<u64>::new(usize::MAX).unwrap_err();
    assert!(matches!(err, SegmentError::TooLarge(_)), "{err:?}");
    let err = RawArray::<u64>::new(usize::MAX / 8).unwrap_err();
    assert!(matches!(err, SegmentError::TooLarge(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// Shared<T>
// ---------------------------------------------------------------------------------------

#[repr(C)]
struct Stats {
    hits: AtomicU64,
    limit: u64,
    flags: [AtomicU32; 2],
}
// SAFETY: repr(C), no padding-sensitive or invalid bit patterns, mutated only via atomics.
unsafe impl ShmSafe for Stats {}

#[test]
fn shared_struct_atomics_and_clone() {
    let s = Shared::new(Stats {
        hits: AtomicU64::new(5),
        limit: 100,
        flags: [AtomicU32::new(1), AtomicU32::new(2)],
    })
    .unwrap();
    assert_eq!(s.hits.load(Ordering::Relaxed), 5);
    assert_eq!(s.limit, 100);
    assert_eq!(s.flags[1].load(Ordering::Relaxed), 2);
    assert_eq!(s.segment().layout().name, "shmproc arena");
    assert!(s.offset() + std::mem::size_of::<Stats>() <= s.segment().len());
    assert_eq!(&*s as *const Stats as usize % std::mem::align_of::<Stats>(), 0);

    let t = s.clone();
    t.hits.fetch_add(10, Ordering::Relaxed);
    t.flags[0].store(77, Ordering::Relaxed);
    assert_eq!(s.hits.load(Ordering::Relaxed), 15);
    assert_eq!(s.flags[0].load(Ordering::Relaxed), 77);
    drop(s);
    assert_eq!(t.hits.load(Ordering::Relaxed), 15);

    let arr = Shared::new([AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)]).unwrap();
    arr[2].store(3, Ordering::Relaxed);
    assert_eq!(arr.clone()[2].load(Ordering::Relaxed), 3);
}

// ---------------------------------------------------------------------------------------
// Named segments
// ---------------------------------------------------------------------------------------

#[test]
fn named_create_then_open_sees_same_bytes() {
    let mut names = ShmNames::new("roundtrip");
    let name = names.name();
    let creator = SharedMemory::create_named(&name, 64).unwrap();
    assert_eq!(creator.name(), Some(name.as_str()));
    assert_eq!(creator.size(), 64);
    creator.write_at(0, b"from the creator").unwrap();

    let opener = SharedMemory::open_named(&name).unwrap();
    assert_eq!(opener.name(), Some(name.as_str()));
    assert_eq!(opener.size(), 64);
    let mut buf = [0u8; 16];
    opener.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"from the creator");

    opener.write_at(60, b"back").unwrap();
    let mut back = [0u8; 4];
    creator.read_at(60, &mut back).unwrap();
    assert_eq!(&back, b"back");

    // The bytes live in the /dev/shm object right after the header.
    let file = fs::read(path_of(&name)).unwrap();
    assert_eq!(file.len(), HEADER_LEN + 64);
    assert_eq!(&file[HEADER_LEN..HEADER_LEN + 16], b"from the creator");
    assert_eq!(
        check_image(&file, Some(&Fingerprint::bytes())).unwrap(),
        DataRange {
            offset: HEADER_LEN,
            len: 64
        }
    );

    drop(opener);
    drop(creator);
    names.assert_clean();
}

#[test]
fn named_file_is_private_regular_and_sized() {
    let mut names = ShmNames::new("mode");
    let name = names.name();
    let v = RawArray::<u32>::create_named(&name, 100).unwrap();
    let meta = fs::symlink_metadata(path_of(&name)).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o600,
        "mode {:o}",
        meta.mode()
    );
    assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
    assert_eq!(meta.len(), v.segment().total_len() as u64);
    assert_eq!(meta.len(), (HEADER_LEN + 400) as u64);
    drop(v);
    names.assert_clean();
}

/// Field 22 of `/proc/self/stat` (start time in clock ticks after boot).
fn own_start_time() -> u64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_ascii_whitespace().nth(19).unwrap().parse().unwrap()
}

#[test]
fn handmade_image_matches_library_image() {
    let mut names = ShmNames::new("layout");
    let lib = library_u64_image(&mut names, 0x1122_3344_5566_7788);
    let hand = handmade_image(&Fingerprint::of::<u64>(), &0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(get_u64(&lib, 0), MAGIC);
    assert_eq!(&lib[..8], b"SHMPROC\x01");
    let pid = u32::from_le_bytes(lib[64..68].try_into().unwrap());
    assert_eq!(pid, std::process::id(), "creator_pid field");
    assert_eq!(&lib[68..72], &[0; 4], "flags field");
    assert_eq!(
        get_u64(&lib, 72),
        own_start_time(),
        "creator_start field of a named segment"
    );
    // Everything else must match the documented layout byte for byte.
    assert_eq!(lib[..64], hand[..64]);
    assert_eq!(lib[80..], hand[80..]);
    assert_eq!(&lib[80..84], b"u64\0");
    names.assert_clean();
}

#[test]
fn named_typed_cells_roundtrip() {
    let mut names = ShmNames::new("typed");
    let (n1, n2, n3) = (names.name(), names.name(), names.name());

    let v = RawValue::create_named(&n1, 41u64).unwrap();
    let v2 = RawValue::<u64>::open_named(&n1).unwrap();
    assert_eq!(v2.get(), 41);
    v2.set(42);
    assert_eq!(v.get(), 42);
    assert_eq!(v2.segment().name(), Some(n1.as_str()));

    let a = RawArray::<f32>::create_named(&n2, 5).unwrap();
    a.set(4, 2.5).unwrap();
    let a2 = RawArray::<f32>::open_named(&n2).unwrap();
    assert_eq!(a2.len(), 5);
    assert_eq!(a2.to_vec(), vec![0.0, 0.0, 0.0, 0.0, 2.5]);

    let s = Shared::create_named(
        &n3,
        Stats {
            hits: AtomicU64::new(1),
            limit: 9,
            flags: [AtomicU32::new(0), AtomicU32::new(0)],
        },
    )
    .unwrap();
    let s2 = Shared::<Stats>::open_named(&n3).unwrap();
    assert_eq!(s2.limit, 9);
    s2.hits.fetch_add(1, Ordering::SeqCst);
    assert_eq!(s.hits.load(Ordering::SeqCst), 2);

    // The same u64 segment also opens as a one-element array of u64 and untyped.
    let as_array = RawArray::<u64>::open_named(&n1).unwrap();
    assert_eq!(as_array.to_vec(), vec![42]);
    let untyped = Segment::open_named(&n1, None).unwrap();
    assert_eq!(untyped.layout(), &Fingerprint::of::<u64>());
    assert_eq!(seg_u64(&untyped), 42);

    drop((v, v2, a, a2, s, s2, as_array, untyped));
    names.assert_clean();
}

#[repr(C)]
struct AStructWhoseFullTypeNameIsLongerThanFortyEightBytes {
    x: AtomicU64,
}
// SAFETY: a single atomic.
unsafe impl ShmSafe for AStructWhoseFullTypeNameIsLongerThanFortyEightBytes {}

#[test]
fn named_long_type_name_is_truncated_but_still_matches() {
    type Long = AStructWhoseFullTypeNameIsLongerThanFortyEightBytes;
    let mut names = ShmNames::new("longname");
    let name = names.name();
    let full = std::any::type_name::<Long>();
    assert!(full.len() > 48);
    let s = Shared::create_named(&name, Long { x: AtomicU64::new(3) }).unwrap();
    let t = Shared::<Long>::open_named(&name).unwrap();
    assert_eq!(t.x.load(Ordering::Relaxed), 3);
    let untyped = Segment::open_named(&name, None).unwrap();
    assert_eq!(untyped.layout().name, full[..48]);
    assert_eq!(untyped.layout().hash, Fingerprint::of::<Long>().hash);
    drop((s, t, untyped));
    names.assert_clean();
}

#[test]
fn named_create_existing_name_fails_and_keeps_original() {
    let mut names = ShmNames::new("exists");
    let name = names.name();
    let first = SharedMemory::create_named(&name, 8).unwrap();
    first.write_at(0, b"original").unwrap();

    match SharedMemory::create_named(&name, 8) {
        Err(SegmentError::AlreadyExists(n)) => assert_eq!(n, name),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match RawValue::create_named(&name, 1u64) {
        Err(SegmentError::AlreadyExists(n)) => assert_eq!(n, name),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // The failed attempts neither unlinked nor clobbered the original.
    assert!(exists(&name));
    let again = SharedMemory::open_named(&name).unwrap();
    assert_eq!(again.to_vec(), b"original");
    drop(again);

    // A plain file someone else put there also counts as existing.
    let other = names.name();
    write_shm_file(&other, b"not a segment", 0o600);
    assert!(matches!(
        SharedMemory::create_named(&other, 8),
        Err(SegmentError::AlreadyExists(_))
    ));
    assert_eq!(fs::read(path_of(&other)).unwrap(), b"not a segment");
    fs::remove_file(path_of(&other)).unwrap();

    drop(first);
    names.assert_clean();
}

#[test]
fn named_open_missing_is_not_found() {
    let mut names = ShmNames::new("missing");
    let name = names.name();
    match SharedMemory::open_named(&name) {
        Err(SegmentError::NotFound(n)) => assert_eq!(n, name),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        RawValue::<u64>::open_named(&name),
        Err(SegmentError::NotFound(_))
    ));
    assert!(matches!(
        RawArray::<u8>::open_named(&name),
        Err(SegmentError::NotFound(_))
    ));
    assert!(matches!(
        Shared::<AtomicU64>::open_named(&name),
        Err(SegmentError::NotFound(_))
    ));
    assert!(matches!(
        Segment::open_named(&name, None),
        Err(SegmentError::NotFound(_))
    ));
    assert!(!exists(&name), "opening must not create");
    names.assert_clean();
}

#[test]
fn invalid_names_are_rejected() {
    let mut names = ShmNames::new("badname");
    let base = names.name(); // "/shmproc-test-...-0"
    let stem = base.strip_prefix('/').unwrap().to_owned();
    let max_ok = format!("/{stem}{}", "x".repeat(250 - stem.len()));
    let too_long = format!("{max_ok}x");
    let bad: Vec<String> = vec![
        "noslash".into(),
        stem.clone(), // no leading slash
        "/a/b".into(),
        format!("{base}/b"),
        format!("/{base}"), // two leading slashes
        "/".into(),
        String::new(),
        "/.".into(),
        "/..".into(),
        format!("{base}\0x"),
        too_long.clone(),
    ];
    for name in &bad {
        let check = |r: Result<(), SegmentError>, what: &str| match r {
            Err(SegmentError::InvalidName(n)) => assert_eq!(&n, name, "{what}"),
            other => panic!("{what}({name:?}): expected InvalidName, got {other:?}"),
        };
        check(
            SharedMemory::create_named(name, 8).map(drop),
            "SharedMemory::create",
        );
        check(SharedMemory::open_named(name).map(drop), "SharedMemory::open");
        check(
            RawValue::create_named(name, 1u32).map(drop),
            "RawValue::create_named",
        );
        check(
            RawValue::<u32>::open_named(name).map(drop),
            "RawValue::open_named",
        );
        check(
            RawArray::<u8>::create_named(name, 3).map(drop),
            "RawArray::create_named",
        );
        check(RawArray::<u8>::open_named(name).map(drop), "RawArray::open_named");
        check(
            Shared::create_named(name, AtomicU32::new(0)).map(drop),
            "Shared::create_named",
        );
        check(
            Shared::<AtomicU32>::open_named(name).map(drop),
            "Shared::open_named",
        );
        check(
            Segment::create_named(name, Fingerprint::bytes(), 1).map(drop),
            "Segment::create_named",
        );
        check(Segment::open_named(name, None).map(drop), "Segment::open_named");
    }
    assert!(!PathBuf::from(SHM_DIR).join(&stem).exists());
    let msg = SegmentError::InvalidName("/a/b".into()).to_string();
    assert!(msg.contains("/a/b"), "{msg}");

    // 250 bytes after the slash is the longest accepted name.
    assert_eq!(max_ok.len(), 251);
    let ok = SharedMemory::create_named(&max_ok, 1).unwrap();
    assert!(exists(&max_ok));
    drop(ok);
    names.assert_clean();
}

#[test]
fn dropping_creator_unlinks_but_opener_does_not() {
    let mut names = ShmNames::new("drop");
    let name = names.name();
    let creator = RawValue::create_named(&name, 5u32).unwrap();
    let opener = RawValue::<u32>::open_named(&name).unwrap();
    drop(opener);
    assert!(exists(&name), "dropping an opener must not unlink");
    let opener = RawValue::<u32>::open_named(&name).unwrap();
    drop(creator);
    assert!(!exists(&name), "dropping the creator must unlink");
    // The opener's mapping is still valid.
    assert_eq!(opener.get(), 5);
    opener.set(6);
    assert_eq!(opener.get(), 6);
    assert!(matches!(
        RawValue::<u32>::open_named(&name),
        Err(SegmentError::NotFound(_))
    ));
    drop(opener);
    names.assert_clean();
}

#[test]
fn keep_leaves_the_name() {
    let mut names = ShmNames::new("keep");
    let name = names.name();
    let creator = SharedMemory::create_named(&name, 4).unwrap();
    creator.write_at(0, b"kept").unwrap();
    creator.keep();
    drop(creator);
    assert!(exists(&name), "keep() must leave the name");
    let later = SharedMemory::open_named(&name).unwrap();
    assert_eq!(later.to_vec(), b"kept");
    // Clean up by hand, the way Python's users call unlink().
    later.unlink().unwrap();
    assert!(!exists(&name));
    drop(later);
    names.assert_clean();
}

#[test]
fn unlink_removes_name_but_mapping_stays_valid() {
    let mut names = ShmNames::new("unlink");
    let name = names.name();
    let shm = SharedMemory::create_named(&name, 8).unwrap();
    let other = SharedMemory::open_named(&name).unwrap();
    shm.unlink().unwrap();
    assert!(!exists(&name));
    shm.write_at(0, b"stillok!").unwrap();
    assert_eq!(other.to_vec(), b"stillok!");
    match shm.unlink() {
        Err(SegmentError::NotFound(n)) => assert_eq!(n, name),
        other => panic!("second unlink: expected NotFound, got {other:?}"),
    }

    // The name is free again; dropping the old creator must not remove the new object.
    let newer = SharedMemory::create_named(&name, 8).unwrap();
    drop(shm);
    assert!(exists(&name), "old handle removed a newer object after unlink()");
    drop(other);
    drop(newer);
    names.assert_clean();
}

#[test]
fn opener_may_unlink() {
    let mut names = ShmNames::new("openunlink");
    let name = names.name();
    let creator = SharedMemory::create_named(&name, 8).unwrap();
    let opener = SharedMemory::open_named(&name).unwrap();
    opener.unlink().unwrap();
    assert!(!exists(&name));
    drop(opener);
    drop(creator); // its own unlink fails quietly
    names.assert_clean();
}

/// The creator unlinks by *name* on drop. If another handle unlinked the name and a new,
/// unrelated segment took it, dropping the old creator removes the newcomer's name.
#[test]

fn dropping_creator_does_not_remove_a_recreated_name() {
    let mut names = ShmNames::new("recreated");
    let name = names.name();
    let old = SharedMemory::create_named(&name, 8).unwrap();
    SharedMemory::open_named(&name).unwrap().unlink().unwrap();
    let newer = SharedMemory::create_named(&name, 8).unwrap();
    drop(old);
    assert!(
        exists(&name),
        "dropping the old creator removed the newer segment's name"
    );
    drop(newer);
    assert!(!exists(&name));
    names.assert_clean();
}

#[test]
fn name_can_be_reused_after_drop() {
    let mut names = ShmNames::new("reuse");
    let name = names.name();
    for round in 0..3u64 {
        let v = RawValue::create_named(&name, round).unwrap();
        assert_eq!(RawValue::<u64>::open_named(&name).unwrap().get(), round);
        drop(v);
        assert!(!exists(&name));
    }
    names.assert_clean();
}

#[test]
fn named_clone_shares_memory() {
    let mut names = ShmNames::new("clone");
    let name = names.name();
    let v = RawValue::create_named(&name, 1u64).unwrap();
    let w = v.clone();
    w.set(2);
    assert_eq!(v.get(), 2);
    assert_eq!(w.segment().name(), Some(name.as_str()));
    drop(w);
    assert!(exists(&name), "a clone must never unlink");
    let shm = SharedMemory::create_named(&names.name(), 4).unwrap();
    let seg = shm.segment().clone();
    assert_eq!(seg.name(), shm.name());
    drop(shm);
    assert!(exists(seg.name().unwrap()), "the name lives while a clone does");
    drop(v);
    drop(seg);
    names.assert_clean();
}

// ---------------------------------------------------------------------------------------
// Opening bad objects by name
// ---------------------------------------------------------------------------------------

#[test]
fn open_with_wrong_type_is_layout_mismatch() {
    let mut names = ShmNames::new("layout-mismatch");
    let name = names.name();
    let v = RawValue::create_named(&name, 8u64).unwrap();
    let u64fp = Fingerprint::of::<u64>();

    match RawValue::<u32>::open_named(&name) {
        Err(SegmentError::LayoutMismatch { expected, found }) => {
            assert_eq!(expected, Fingerprint::of::<u32>());
            assert_eq!(found, u64fp);
            let err = SegmentError::LayoutMismatch { expected, found };
            let msg = err.to_string();
            assert!(msg.contains("u32") && msg.contains("u64"), "{msg}");
        }
        other => panic!("expected LayoutMismatch, got {other:?}"),
    }
    match RawArray::<f32>::open_named(&name) {
        Err(err @ SegmentError::LayoutMismatch { .. }) => {
            let msg = err.to_string();
            assert!(msg.contains("f32") && msg.contains("u64"), "{msg}");
            let SegmentError::LayoutMismatch { expected, found } = err else {
                unreachable!()
            };
            assert_eq!((expected.size, expected.align), (4, 4));
            assert_eq!((found.size, found.align, found.name.as_str()), (8, 8, "u64"));
        }
        other => panic!("expected LayoutMismatch, got {other:?}"),
    }
    // Same size and alignment, different type: the name hash tells them apart.
    match RawValue::<i64>::open_named(&name) {
        Err(SegmentError::LayoutMismatch { expected, .. }) => assert_eq!(expected.name, "i64"),
        other => panic!("expected LayoutMismatch, got {other:?}"),
    }
    assert!(matches!(
        SharedMemory::open_named(&name),
        Err(SegmentError::LayoutMismatch { .. })
    ));
    assert!(matches!(
        Shared::<AtomicU64>::open_named(&name),
        Err(SegmentError::LayoutMismatch { .. })
    ));
    assert!(matches!(
        Segment::open_named(&name, Some(&Fingerprint::new(8, 8, "something else"))),
        Err(SegmentError::LayoutMismatch { .. })
    ));
    // Failed opens leave the segment alone.
    assert_eq!(RawValue::<u64>::open_named(&name).unwrap().get(), 8);
    drop(v);
    names.assert_clean();
}

#[test]
fn open_wrong_version_is_version_mismatch() {
    let mut names = ShmNames::new("version");
    let good = library_u64_image(&mut names, 1);
    for version in [0u32, VERSION + 1, u32::MAX] {
        let mut b = good.clone();
        put_u32(&mut b, 8, version);
        match open_err_u64(&mut names, &b) {
            SegmentError::VersionMismatch { expected, found } => {
                assert_eq!(expected, VERSION);
                assert_eq!(found, version);
            }
            other => panic!("version {version}: expected VersionMismatch, got {other:?}"),
        }
    }
    names.assert_clean();
}

#[test]
fn open_garbage_is_bad_magic() {
    let mut names = ShmNames::new("magic");
    // Deterministic pseudo-random bytes (xorshift64).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut flipped = library_u64_image(&mut names, 1);
    flipped[0] ^= 0x01;
    let mut future = library_u64_image(&mut names, 1);
    future[7] = 2; // "SHMPROC\x02"

    for bytes in [&garbage, &flipped, &future] {
        match open_err_u64(&mut names, bytes) {
            SegmentError::BadMagic { found } => assert_eq!(found, get_u64(bytes, 0)),
            other => panic!("expected BadMagic, got {other:?}"),
        }
    }
    names.assert_clean();
}

#[test]
fn open_zero_header_is_uninitialized() {
    let mut names = ShmNames::new("zero");
    let mut data_but_no_header = vec![0u8; 136];
    data_but_no_header[128..].copy_from_slice(&[0xff; 8]);
    for bytes in [
        vec![0u8; HEADER_LEN],
        vec![0u8; 136],
        vec![0u8; 4096],
        data_but_no_header,
    ] {
        let err = open_err_u64(&mut names, &bytes);
        assert!(
            matches!(err, SegmentError::Uninitialized),
            "{} bytes: {err:?}",
            bytes.len()
        );
    }
    names.assert_clean();
}

#[test]
fn open_short_file_is_too_small() {
    let mut names = ShmNames::new("short");
    let good = library_u64_image(&mut names, 1);
    for len in [0usize, 1, 8, 100, HEADER_LEN - 1] {
        match open_err_u64(&mut names, &good[..len]) {
            SegmentError::TooSmall { len: l, needed } => {
                assert_eq!(l, len as u64);
                assert_eq!(needed, HEADER_LEN as u64);
            }
            other => panic!("{len} bytes: expected TooSmall, got {other:?}"),
        }
    }
    names.assert_clean();
}

#[test]
fn open_file_truncated_after_header_is_too_small() {
    let mut names = ShmNames::new("truncated");
    let good = library_u64_image(&mut names, 1);
    // Cut inside the data: the header's total_len (136) is more than the file holds.
    for len in [HEADER_LEN, HEADER_LEN + 4, HEADER_LEN + 7] {
        match open_err_u64(&mut names, &good[..len]) {
            SegmentError::TooSmall { len: l, needed } => assert_eq!((l, needed), (len as u64, 136)),
            other => panic!("{len} bytes: expected TooSmall, got {other:?}"),
        }
    }
    // A whole file whose total_len claims more.
    for claimed in [137u64, 1 << 40, u64::MAX] {
        let mut b = good.clone();
        put_u64(&mut b, 16, claimed);
        match open_err_u64(&mut names, &b) {
            SegmentError::TooSmall { len, needed } => assert_eq!((len, needed), (136, claimed)),
            other => panic!("total_len {claimed}: expected TooSmall, got {other:?}"),
        }
    }
    names.assert_clean();
}

#[test]
fn open_corrupt_fields_is_corrupt() {
    let mut names = ShmNames::new("corrupt");
    let good = library_u64_image(&mut names, 1);
    type Patch = (&'static str, usize, u64, bool); // what, offset, value, is u32
    let patches: &[Patch] = &[
        ("header_len small", 12, 64, true),
        ("header_len large", 12, 256, true),
        ("total_len below file size", 16, 100, false),
        ("total_len zero", 16, 0, false),
        ("data_offset inside header", 24, 64, false),
        ("data_offset zero", 24, 0, false),
        ("data_offset misaligned", 24, 129, false),
        ("data_offset at end", 24, 136, false),
        ("data_offset past end", 24, 4096, false),
        ("data_offset near u64::MAX", 24, !7, false),
        ("data_len past end", 32, 16, false),
        ("data_len u64::MAX", 32, u64::MAX, false),
        ("data_len not whole elements", 32, 4, false),
        ("fp_align zero", 48, 0, false),
        ("fp_align not power of two", 48, 3, false),
        ("fp_align above page", 48, 8192, false),
        ("fp_align u64::MAX", 48, u64::MAX, false),
    ];
    for &(what, off, value, is_u32) in patches {
        let mut b = good.clone();
        if is_u32 {
            put_u32(&mut b, off, value as u32);
        } else {
            put_u64(&mut b, off, value);
        }
        let err = open_err_u64(&mut names, &b);
        assert!(matches!(err, SegmentError::Corrupt(_)), "{what}: {err:?}");
        assert!(
            err.to_string().starts_with("corrupt segment header"),
            "{what}: {err}"
        );
    }

    // A consistent header whose data_len is zero: the segment is sound, but a RawValue
    // refuses it.
    let mut b = good.clone();
    put_u64(&mut b, 32, 0);
    let name = names.name();
    write_shm_file(&name, &b, 0o600);
    let seg = Segment::open_named(&name, Some(&Fingerprint::of::<u64>())).unwrap();
    assert!(seg.is_empty());
    drop(seg);
    let err = RawValue::<u64>::open_named(&name).unwrap_err();
    assert!(matches!(err, SegmentError::Corrupt(_)), "{err:?}");
    // An array of u64 may be empty.
    assert!(RawArray::<u64>::open_named(&name).unwrap().is_empty());
    fs::remove_file(path_of(&name)).unwrap();
    names.assert_clean();
}

#[test]
fn open_group_or_world_accessible_file_is_denied() {
    let mut names = ShmNames::new("perm");
    let good = library_u64_image(&mut names, 1);
    for mode in [0o644, 0o640, 0o604, 0o660, 0o606, 0o666, 0o610, 0o601] {
        let name = names.name();
        write_shm_file(&name, &good, mode);
        let res = RawValue::<u64>::open_named(&name);
        fs::remove_file(path_of(&name)).unwrap();
        match res {
            Err(SegmentError::PermissionDenied { name: n, reason }) => {
                assert_eq!(n, name);
                assert!(reason.contains(&format!("{mode:o}")), "mode {mode:o}: {reason}");
            }
            other => panic!("mode {mode:o}: expected PermissionDenied, got {other:?}"),
        }
    }
    // The same image at 0600 opens fine, so the mode alone was refused.
    let name = names.name();
    write_shm_file(&name, &good, 0o600);
    assert_eq!(RawValue::<u64>::open_named(&name).unwrap().get(), 1);
    fs::remove_file(path_of(&name)).unwrap();
    names.assert_clean();
}

#[test]
fn open_file_of_another_user_is_denied() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: chown to another uid needs root");
        return;
    }
    let mut names = ShmNames::new("owner");
    let good = library_u64_image(&mut names, 1);
    let name = names.name();
    write_shm_file(&name, &good, 0o600);
    std::os::unix::fs::chown(path_of(&name), Some(65534), None).unwrap();
    let res = RawValue::<u64>::open_named(&name);
    fs::remove_file(path_of(&name)).unwrap();
    match res {
        Err(SegmentError::PermissionDenied { name: n, reason }) => {
            assert_eq!(n, name);
            assert!(reason.contains("65534"), "{reason}");
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    names.assert_clean();
}

/// A symlink in /dev/shm must not be followed. `fd::shm_open_existing` relies on
/// `shm_open` adding `O_NOFOLLOW`, which glibc does but rustix's default `linux_raw` backend
/// does not, so today the link is followed and the target opens. With `O_NOFOLLOW` the
/// kernel answers `ELOOP`, which `SegmentError::from_open` maps to `PermissionDenied`.
#[test]

fn open_symlink_is_refused() {
    let mut names = ShmNames::new("symlink");
    let target = names.name();
    let link = names.name();
    let v = RawValue::create_named(&target, 5u64).unwrap();
    std::os::unix::fs::symlink(path_of(&target), path_of(&link)).unwrap();
    let res = RawValue::<u64>::open_named(&link).map(|l| l.get());
    fs::remove_file(path_of(&link)).unwrap();
    match res {
        Err(SegmentError::PermissionDenied { name, .. }) => assert_eq!(name, link),
        other => panic!("a symlink must not be opened, got {other:?}"),
    }
    drop(v);
    names.assert_clean();
}

#[test]
fn create_over_symlink_fails_without_touching_target() {
    let mut names = ShmNames::new("createlink");
    let target = names.name();
    let link = names.name();
    write_shm_file(&target, b"precious", 0o600);
    std::os::unix::fs::symlink(path_of(&target), path_of(&link)).unwrap();
    let dangling = names.name();
    std::os::unix::fs::symlink(path_of(&names.name()), path_of(&dangling)).unwrap();

    for name in [&link, &dangling] {
        match SharedMemory::create_named(name, 4096) {
            Err(SegmentError::AlreadyExists(n)) => assert_eq!(&n, name),
            other => panic!("create over symlink {name}: expected AlreadyExists, got {other:?}"),
        }
    }
    assert_eq!(fs::read(path_of(&target)).unwrap(), b"precious");
    assert!(fs::symlink_metadata(path_of(&link))
        .unwrap()
        .file_type()
        .is_symlink());
    for n in [&target, &link, &dangling] {
        fs::remove_file(path_of(n)).unwrap();
    }
    names.assert_clean();
}

#[test]
fn open_directory_fails() {
    let mut names = ShmNames::new("dir");
    let name = names.name();
    fs::create_dir(path_of(&name)).unwrap();
    let res = SharedMemory::open_named(&name);
    let res2 = Segment::open_named(&name, None);
    let res3 = SharedMemory::create_named(&name, 8);
    fs::remove_dir(path_of(&name)).unwrap();
    // Opening read-write fails in the kernel (EISDIR) before the regular-file check.
    for r in [res.map(drop), res2.map(drop)] {
        match r {
            Err(SegmentError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::EISDIR)),
            other => panic!("expected Io(EISDIR), got {other:?}"),
        }
    }
    assert!(matches!(res3, Err(SegmentError::AlreadyExists(_))), "{res3:?}");
    names.assert_clean();
}

#[test]
fn open_fifo_is_not_a_regular_file() {
    let mut names = ShmNames::new("fifo");
    let name = names.name();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path_of(&name),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .unwrap();
    // Opening a FIFO read-write does not block on Linux; the regular-file check refuses it.
    let res = Segment::open_named(&name, None);
    fs::remove_file(path_of(&name)).unwrap();
    assert!(matches!(res, Err(SegmentError::NotARegularFile)), "{res:?}");
    names.assert_clean();
}

// ---------------------------------------------------------------------------------------
// Segment::from_fd
// ---------------------------------------------------------------------------------------

#[test]
fn from_fd_rejects_unsealed_memfd() {
    let image = handmade_image(&Fingerprint::of::<u64>(), &9u64.to_le_bytes());
    let cases = [
        (
            "sealing allowed, no seals",
            memfd_with(&image, true, SealFlags::empty()),
        ),
        (
            "sealing not allowed",
            memfd_with(&image, false, SealFlags::empty()),
        ),
        ("only grow sealed", memfd_with(&image, true, SealFlags::GROW)),
        ("only seal sealed", memfd_with(&image, true, SealFlags::SEAL)),
    ];
    for (what, fd) in cases {
        match Segment::from_fd(fd, Some(&Fingerprint::of::<u64>())) {
            Err(SegmentError::PermissionDenied { name, reason }) => {
                assert_eq!(name, "", "{what}");
                assert!(reason.contains("sealed"), "{what}: {reason}");
            }
            other => panic!("{what}: expected PermissionDenied, got {other:?}"),
        }
    }
}

#[test]
fn from_fd_accepts_sealed_memfd_with_valid_image() {
    let fp = Fingerprint::of::<u64>();
    let image = handmade_image(&fp, &0xdead_beefu64.to_le_bytes());
    assert_eq!(
        check_image(&image, Some(&fp)).unwrap(),
        DataRange {
            offset: HEADER_LEN,
            len: 8
        }
    );

    let all = SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
    let seg = Segment::from_fd(memfd_with(&image, true, all), Some(&fp)).unwrap();
    assert_eq!(seg.len(), 8);
    assert!(seg.name().is_none());
    assert_eq!(seg.layout(), &fp);
    assert_eq!(seg_u64(&seg), 0xdead_beef);

    // Sealing against shrinking is what counts.
    let seg = Segment::from_fd(memfd_with(&image, true, SealFlags::SHRINK), None).unwrap();
    assert_eq!(seg.layout(), &fp, "layout read back from the header");
    assert_eq!(seg_u64(&seg), 0xdead_beef);

    // A page-aligned type: the data starts at 4096.
    let page = Fingerprint::new(4096, 4096, "page");
    let image = handmade_image(&page, &[7u8; 4096]);
    let seg = Segment::from_fd(memfd_with(&image, true, all), Some(&page)).unwrap();
    assert_eq!(seg.total_len(), 8192);
    assert_eq!(seg.as_ptr() as usize % 4096, 0);
    // SAFETY: 4096 readable bytes, no writer.
    assert!(unsafe { std::slice::from_raw_parts(seg.as_ptr(), 4096) }
        .iter()
        .all(|&b| b == 7));
}

#[test]
fn from_fd_validates_content() {
    let all = SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
    let fp = Fingerprint::of::<u64>();

    let err = Segment::from_fd(memfd_with(&[0x55; 256], true, all), Some(&fp)).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::BadMagic {
                found: 0x5555_5555_5555_5555
            }
        ),
        "{err:?}"
    );

    let err = Segment::from_fd(memfd_with(&[0; 256], true, all), None).unwrap_err();
    assert!(matches!(err, SegmentError::Uninitialized), "{err:?}");

    let err = Segment::from_fd(memfd_with(&[1; 10], true, all), None).unwrap_err();
    assert!(
        matches!(err, SegmentError::TooSmall { len: 10, needed: 128 }),
        "{err:?}"
    );

    let err = Segment::from_fd(memfd_with(&[], true, all), None).unwrap_err();
    assert!(matches!(err, SegmentError::TooSmall { len: 0, .. }), "{err:?}");

    let image = handmade_image(&fp, &1u64.to_le_bytes());
    let err = Segment::from_fd(memfd_with(&image, true, all), Some(&Fingerprint::of::<u32>())).unwrap_err();
    assert!(matches!(err, SegmentError::LayoutMismatch { .. }), "{err:?}");

    let mut big = image.clone();
    put_u64(&mut big, 16, 1 << 30);
    let err = Segment::from_fd(memfd_with(&big, true, all), Some(&fp)).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::TooSmall {
                len: 136,
                needed: 0x4000_0000
            }
        ),
        "{err:?}"
    );
}

#[test]
fn from_fd_rejects_fds_that_are_not_memfds() {
    // A named segment's fd passed as an anonymous one: /dev/shm objects cannot be sealed.
    let mut names = ShmNames::new("fromfd-named");
    let name = names.name();
    let v = RawValue::create_named(&name, 3u64).unwrap();
    let dup = File::open(path_of(&name)).unwrap();
    match Segment::from_fd(OwnedFd::from(dup), None) {
        Err(SegmentError::PermissionDenied { name, .. }) => assert_eq!(name, ""),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    drop(v);

    // A regular file on another file system (no seals at all).
    let image = handmade_image(&Fingerprint::of::<u64>(), &3u64.to_le_bytes());
    let path = std::env::temp_dir().join(format!("shmproc-test-{}-fromfd.bin", std::process::id()));
    fs::write(&path, &image).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    fs::remove_file(&path).unwrap();
    let res = Segment::from_fd(OwnedFd::from(f), None);
    assert!(
        matches!(res, Err(SegmentError::PermissionDenied { .. })),
        "{res:?}"
    );
    names.assert_clean();
}

#[test]
fn from_fd_rejects_non_regular_files() {
    let dir = OwnedFd::from(File::open(SHM_DIR).unwrap());
    let err = Segment::from_fd(dir, None).unwrap_err();
    assert!(matches!(err, SegmentError::NotARegularFile), "{err:?}");

    let null = OwnedFd::from(
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .unwrap(),
    );
    let err = Segment::from_fd(null, None).unwrap_err();
    assert!(matches!(err, SegmentError::NotARegularFile), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// Named cells opened by name in another process; bulk copies; unlink by a non-creator
// ---------------------------------------------------------------------------------------

#[repr(C)]
struct Pair {
    a: AtomicU64,
    b: AtomicU64,
}
// SAFETY: repr(C) of atomics only; any bit pattern is valid.
unsafe impl ShmSafe for Pair {}

/// Opens every named cell by name (no handle passed), changes each, and checks the type
/// checks on open: a `RawValue<u64>` name opened as `RawValue<u32>` is a layout mismatch.
fn open_by_name(names: Vec<String>) -> Vec<String> {
    let v = RawValue::<u64>::open_named(&names[0]).expect("open RawValue");
    v.set(v.get() + 1);
    let a = RawArray::<u32>::open_named(&names[1]).expect("open RawArray");
    let mut buf = [0u32; 4];
    a.read_into(2, &mut buf).expect("read_into");
    a.write_from(0, &buf.map(|x| x * 10)).expect("write_from");
    let s = Shared::<Pair>::open_named(&names[2]).expect("open Shared");
    s.a.fetch_add(5, Ordering::SeqCst);
    let seg = Segment::open_named(&names[3], Some(&Fingerprint::of::<u64>())).expect("open Segment");
    // SAFETY: the segment holds one u64 (its fingerprint was checked), 8-aligned.
    unsafe { (*seg.as_ptr().cast::<AtomicU64>()).store(77, Ordering::SeqCst) };
    let wrong = match RawValue::<u32>::open_named(&names[0]) {
        Err(SegmentError::LayoutMismatch { .. }) => "LayoutMismatch".to_owned(),
        other => format!("{:?}", other.map(|_| ())),
    };
    let shm = SharedMemory::open_named(&names[4]).expect("open SharedMemory");
    // Python: any process may unlink; this one did not create it.
    shm.unlink().expect("unlink by a non-creator");
    vec![
        wrong,
        format!("{:?}", SharedMemory::open_named(&names[4]).map(|_| ())),
    ]
}

/// `create_named` here, `open_named` in a child of each start method that gets only the
/// names: `RawValue`, `RawArray` (with `read_into` / `write_from`), `Shared<T>`, a raw
/// `Segment`, and a `SharedMemory` that the child unlinks although it did not create it.
#[test]
fn named_cells_are_opened_and_unlinked_from_another_process() {
    let mut names = ShmNames::new("named-xproc");
    for m in [shmproc::StartMethod::Fork, shmproc::StartMethod::Spawn] {
        let n: Vec<String> = (0..5).map(|_| names.name()).collect();
        let v = RawValue::<u64>::create_named(&n[0], 41).unwrap();
        let a = RawArray::<u32>::create_named(&n[1], 6).unwrap();
        a.write_from(0, &[1, 2, 3, 4, 5, 6]).unwrap();
        let s = Shared::<Pair>::create_named(
            &n[2],
            Pair {
                a: AtomicU64::new(1),
                b: AtomicU64::new(2),
            },
        )
        .unwrap();
        let seg = Segment::create_named(&n[3], Fingerprint::of::<u64>(), 8).unwrap();
        let shm = SharedMemory::create_named(&n[4], 16).unwrap();
        let mut child = shmproc::Process::new(open_by_name, n.clone())
            .start_method(m)
            .daemon(true)
            .start()
            .unwrap();
        let got = child.join_timeout(std::time::Duration::from_secs(60)).unwrap();
        assert_eq!(got[0], "LayoutMismatch", "{m:?}");
        assert!(got[1].contains("NotFound"), "{m:?}: {}", got[1]);
        assert_eq!(v.get(), 42, "{m:?}");
        let mut all = [0u32; 6];
        a.read_into(0, &mut all).unwrap();
        assert_eq!(all, [30, 40, 50, 60, 5, 6], "{m:?}");
        assert_eq!(s.a.load(Ordering::SeqCst), 6);
        assert_eq!(s.b.load(Ordering::SeqCst), 2);
        // SAFETY: as in the child.
        assert_eq!(
            unsafe { (*seg.as_ptr().cast::<AtomicU64>()).load(Ordering::SeqCst) },
            77
        );
        // The creator's mapping outlives the name; its own unlink now finds nothing.
        shm.write_at(0, b"still mapped").unwrap();
        assert!(matches!(shm.unlink(), Err(SegmentError::NotFound(_))));
        drop((v, a, s, seg, shm));
    }
    names.assert_clean();
}
