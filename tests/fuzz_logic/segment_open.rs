//! Per-input logic of the `segment_open` fuzz target, shared with its stable replay
//! (`tests/fuzz_replay.rs`) through `#[path]`, so both run exactly the same code.
//!
//! The input is taken as a whole segment image. It goes through the pure validator
//! (`check_image`) and through the real path (a sealed memfd opened with
//! `Segment::from_fd`). Neither may panic, and they must agree: the same verdict, the same
//! error text, the same data range, and the mapped data must be the input's bytes.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use rustix::fs::{MemfdFlags, SealFlags};
use shmproc::{check_image, Fingerprint, Segment, HEADER_LEN};

/// Runs one input; panics only if the library misbehaves (panic, disagreement, bad range).
pub fn segment_open_input(data: &[u8]) {
    let fp = Fingerprint::of::<u64>();
    let pure_typed = check_image(data, Some(&fp));
    let pure_any = check_image(data, None);

    for r in [&pure_typed, &pure_any].into_iter().flatten() {
        assert!(r.offset >= HEADER_LEN, "data range {r:?} overlaps the header");
        let end = r.offset.checked_add(r.len).expect("data range overflows");
        assert!(
            end <= data.len(),
            "data range {r:?} runs past {} bytes",
            data.len()
        );
    }
    if let Ok(r) = &pure_typed {
        // Matching a layout is the only extra check an expected fingerprint adds.
        assert_eq!(
            pure_any.as_ref().ok(),
            Some(r),
            "typed check passed, untyped did not"
        );
        assert_eq!(r.len % 8, 0, "u64 data length {} is not whole elements", r.len);
        assert_eq!(r.offset % 8, 0, "u64 data offset {} is misaligned", r.offset);
    }

    let fd = sealed_memfd(data);
    let second = fd.try_clone().expect("dup memfd");
    compare(data, Segment::from_fd(fd, Some(&fp)), &pure_typed);
    compare(data, Segment::from_fd(second, None), &pure_any);
}

/// A memfd holding `data`, sealed against shrinking, growing and further sealing.
fn sealed_memfd(data: &[u8]) -> OwnedFd {
    let fd = rustix::fs::memfd_create("shmproc-fuzz", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .expect("memfd_create");
    let mut file = File::from(fd);
    file.write_all(data).expect("write memfd");
    let fd = OwnedFd::from(file);
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        .expect("seal memfd");
    fd
}

/// Checks that opening the memfd gave the same verdict as `check_image`, and on success
/// reads every data byte through the mapping.
fn compare(
    data: &[u8],
    opened: Result<Segment, shmproc::SegmentError>,
    pure: &Result<shmproc::DataRange, shmproc::SegmentError>,
) {
    match (opened, pure) {
        (Ok(seg), Ok(r)) => {
            assert_eq!(seg.len(), r.len, "mapped length differs from check_image");
            assert_eq!(
                seg.total_len(),
                data.len(),
                "mapping length differs from the input"
            );
            let base = seg.as_ptr();
            for i in 0..seg.len() {
                // SAFETY: `i < seg.len()`, inside the live mapping of `seg`; volatile because
                // the memory is shared (nobody else holds this memfd, but it is the pattern
                // real callers must use).
                let b = unsafe { std::ptr::read_volatile(base.add(i)) };
                assert_eq!(b, data[r.offset + i], "data byte {i} differs from the input");
            }
        }
        (Err(e), Err(p)) => assert_eq!(e.to_string(), p.to_string(), "from_fd and check_image disagree"),
        (Ok(_), Err(p)) => panic!("from_fd accepted what check_image rejects: {p}"),
        (Err(e), Ok(r)) => panic!("from_fd rejected what check_image accepts ({r:?}): {e}"),
    }
}
