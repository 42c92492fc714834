//! Fuzzes a `Channel` with programs of sends and receives in one process, checked against a
//! `VecDeque` model (order, contents, `len()`, `Full` exactly when there is no room). The
//! per-input logic lives in `tests/fuzz_logic/channel_ops.rs`, which `tests/fuzz_replay.rs`
//! replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_logic/channel_ops.rs"]
mod logic;

fuzz_target!(|data: &[u8]| logic::channel_ops_input(data));
