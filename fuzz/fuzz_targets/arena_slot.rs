//! Fuzzes opening arena slots from received tokens: a real arena chunk with fuzzed data and
//! scribbled header bytes, and a fuzzed (offset, length, type) token. Every outcome must be
//! a typed error or a usable handle inside the chunk. The per-input logic lives in
//! `tests/fuzz_logic/arena_slot.rs`, which `tests/fuzz_replay.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_logic/arena_slot.rs"]
mod logic;

fuzz_target!(|data: &[u8]| logic::arena_slot_input(data));
