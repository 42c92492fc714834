//! Fuzzes opening a segment from arbitrary bytes: `check_image` and `Segment::from_fd` on a
//! sealed memfd must never panic and must agree. The per-input logic lives in
//! `tests/fuzz_logic/segment_open.rs`, which `tests/fuzz_replay.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_logic/segment_open.rs"]
mod logic;

fuzz_target!(|data: &[u8]| logic::segment_open_input(data));
