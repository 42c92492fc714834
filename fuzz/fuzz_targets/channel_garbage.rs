//! Fuzzes a `Channel` whose shared memory holds garbage (indices, frames, robust locks,
//! counters): every call must return, without panicking or blocking past its deadline
//! (the channel's one documented exception aside). The
//! per-input logic lives in `tests/fuzz_logic/channel_garbage.rs`, which
//! `tests/fuzz_replay.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_logic/channel_garbage.rs"]
mod logic;

fuzz_target!(|data: &[u8]| {
    logic::channel_garbage_input(data);
});
