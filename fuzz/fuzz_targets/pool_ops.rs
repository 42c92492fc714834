//! Fuzzes sequences of pool operations (submit, cancel, result with a zero timeout, map,
//! imap_unordered, callbacks) on the thread backend against their sequential results. The
//! per-input logic lives in `tests/fuzz_logic/pool_ops.rs`, which `tests/fuzz_replay.rs`
//! replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_logic/pool_ops.rs"]
mod logic;

fuzz_target!(|data: &[u8]| logic::pool_ops_input(data));
