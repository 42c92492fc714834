//! Fuzzes the messages between a pool and its workers in both directions: parsing, running
//! a task's payload through real trampolines, decoding results. The per-input logic lives
//! in `tests/fuzz_logic/pool_wire.rs`, which `tests/fuzz_replay.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_logic/pool_wire.rs"]
mod logic;

fuzz_target!(|data: &[u8]| logic::pool_wire_input(data));
