//! Fuzzes a `SlotRing` whose shared memory holds garbage (indices, slot states, owner
//! records, event counts, geometry): every call must return within its deadline, without
//! panicking or touching memory out of bounds. The per-input logic lives in
//! `tests/fuzz_logic/mpmc_garbage.rs`, which `tests/fuzz_replay.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_logic/mpmc_garbage.rs"]
mod logic;

fuzz_target!(|data: &[u8]| logic::mpmc_garbage_input(data));
