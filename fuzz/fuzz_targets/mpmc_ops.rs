//! Fuzzes a `SlotRing` with programs of pushes and pops (try and timed forms, clones,
//! shutdown) on a small ring, mostly of a capacity that is not a power of two, checked
//! against a `VecDeque` model. The per-input logic lives in `tests/fuzz_logic/mpmc_ops.rs`,
//! which `tests/fuzz_replay.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_logic/mpmc_ops.rs"]
mod logic;

fuzz_target!(|data: &[u8]| logic::mpmc_ops_input(data));
