//! Fuzzes sequences of operations on a shared `Dict`, `List` or `Namespace` with a small
//! memory limit against a model (`HashMap`, `Vec`): every result must match, and a change
//! refused with `LimitExceeded` must leave the container unchanged. The per-input logic lives
//! in `tests/fuzz_logic/manager_ops.rs`, which `tests/fuzz_replay.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_logic/manager_ops.rs"]
mod logic;

fuzz_target!(|data: &[u8]| logic::manager_ops_input(data));
