//! Fuzzes a shared container (`Dict`, `List`, `Namespace`) whose memory was overwritten with
//! garbage: every operation must fail cleanly (`ManagerError`) or do what it claims, never
//! crash or hang. The per-input logic lives in `tests/fuzz_logic/manager_image.rs`, which
//! `tests/fuzz_replay.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_logic/manager_image.rs"]
mod logic;

fuzz_target!(|data: &[u8]| logic::manager_image_input(data));
