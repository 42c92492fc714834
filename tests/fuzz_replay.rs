//! Replays every committed fuzz corpus on stable Rust, through the very functions the
//! cargo-fuzz targets call (shared with `#[path]`), so a crash the fuzzer once found stays
//! fixed without nightly or libFuzzer.
//!
//! Adding a fuzz target: put its per-input function in `tests/fuzz_logic/<target>.rs`,
//! include it below, and add one line to [`TARGETS`].
// std atomics here are user code (e.g. inside a `Shared<T>`); the shim rule is for the library.
#![allow(clippy::disallowed_types)]

use std::fs;
use std::path::{Path, PathBuf};

#[path = "fuzz_logic/arena_slot.rs"]
mod arena_slot;
#[path = "fuzz_logic/channel_garbage.rs"]
mod channel_garbage;
#[path = "fuzz_logic/channel_ops.rs"]
mod channel_ops;
#[path = "fuzz_logic/manager_image.rs"]
mod manager_image;
#[path = "fuzz_logic/manager_ops.rs"]
mod manager_ops;
#[path = "fuzz_logic/mpmc_garbage.rs"]
mod mpmc_garbage;
#[path = "fuzz_logic/mpmc_ops.rs"]
mod mpmc_ops;
#[path = "fuzz_logic/pool_ops.rs"]
mod pool_ops;
#[path = "fuzz_logic/pool_wire.rs"]
mod pool_wire;
#[path = "fuzz_logic/segment_open.rs"]
mod segment_open;

/// The per-input function of a fuzz target.
type Target = fn(&[u8]);

/// Corpus directory under `fuzz/corpus/` and the per-input function of its target.
const TARGETS: &[(&str, Target)] = &[
    ("segment_open", segment_open::segment_open_input),
    ("channel_ops", channel_ops::channel_ops_input),
    ("channel_garbage", |d| {
        channel_garbage::channel_garbage_input(d);
    }),
    ("mpmc_ops", mpmc_ops::mpmc_ops_input),
    ("mpmc_garbage", mpmc_garbage::mpmc_garbage_input),
    ("pool_ops", pool_ops::pool_ops_input),
    ("pool_wire", pool_wire::pool_wire_input),
    ("manager_ops", manager_ops::manager_ops_input),
    ("manager_image", manager_image::manager_image_input),
    ("arena_slot", arena_slot::arena_slot_input),
];

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus")
}

fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_dir_has_a_target() {
    let mut dirs: Vec<String> = fs::read_dir(corpus_root())
        .expect("fuzz/corpus exists")
        .map(|e| e.expect("corpus dir entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let known: Vec<&str> = TARGETS.iter().map(|(d, _)| *d).collect();
    for d in &dirs {
        assert!(
            known.contains(&d.as_str()),
            "fuzz/corpus/{d} has no entry in TARGETS"
        );
    }
    for d in &known {
        assert!(
            dirs.iter().any(|x| x == d),
            "TARGETS names {d} but fuzz/corpus/{d} is missing"
        );
    }
}

#[test]
fn replay_fuzz_corpora() {
    for &(dir, run) in TARGETS {
        let files = corpus_files(&corpus_root().join(dir));
        assert!(
            !files.is_empty(),
            "fuzz/corpus/{dir} is empty: the replay would prove nothing"
        );
        for file in &files {
            let data = fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{dir}: input {} panicked", file.display());
        }
        eprintln!("{dir}: replayed {} inputs", files.len());
    }
}

/// The `segment_open` corpus must reach both outcomes, or its replay checks only half the
/// logic (the agreement of a successful open with `check_image`, or the error paths).
#[test]
fn segment_open_corpus_has_accepted_and_rejected_inputs() {
    let fp = shmproc::Fingerprint::of::<u64>();
    let files = corpus_files(&corpus_root().join("segment_open"));
    let accepted = files
        .iter()
        .filter(|f| shmproc::check_image(&fs::read(f).unwrap(), Some(&fp)).is_ok())
        .count();
    assert!(accepted > 0, "no corpus input is a valid u64 segment");
    assert!(accepted < files.len(), "no corpus input is rejected");
}

/// The named inputs of `channel_garbage` are exactly what their recipes (in
/// `tests/fuzz_logic/channel_garbage.rs`, written by header field name) give today: a
/// committed input cannot silently stop hitting the field it was written for. After a
/// change of the input format, regenerate them with
/// `cargo test --test fuzz_replay -- --ignored write_channel_garbage_named_inputs`.
#[test]
fn channel_garbage_named_inputs_match_their_recipes() {
    let dir = corpus_root().join("channel_garbage");
    for (name, bytes) in channel_garbage::named_inputs() {
        let file = dir.join(name);
        let committed = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            committed == bytes,
            "{name}: the committed input differs from its recipe"
        );
    }
}

/// The `limit-` inputs run into the channel's documented limit (so the replay exercises the
/// watchdog's one exception), and every other named input finishes every call by its
/// deadline: none is forgiven anything.
#[test]
fn channel_garbage_only_limit_inputs_meet_the_limit() {
    for (name, bytes) in channel_garbage::named_inputs() {
        let hits = channel_garbage::channel_garbage_input(&bytes);
        if name.starts_with("limit-") {
            assert!(hits > 0, "{name}: never met the documented limit");
        } else {
            assert_eq!(hits, 0, "{name}: met the documented limit");
        }
    }
}

/// Writes the named inputs of `channel_garbage` (run by hand after a format change).
#[test]
#[ignore = "a tool: regenerates fuzz/corpus/channel_garbage's named inputs"]
fn write_channel_garbage_named_inputs() {
    let dir = corpus_root().join("channel_garbage");
    for (name, bytes) in channel_garbage::named_inputs() {
        fs::write(dir.join(name), bytes).unwrap();
    }
}
