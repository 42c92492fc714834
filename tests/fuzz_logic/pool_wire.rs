//! Per-input logic of the `pool_wire` fuzz target, shared with its stable replay
//! (`tests/fuzz_replay.rs`) through `#[path]`.
//!
//! (Panicking tasks are left to the tests: libFuzzer's panic hook aborts.)
//!
//! The messages between a pool and its workers, as untrusted bytes on both sides:
//! - byte 0 even: the rest is a message *to a worker*. It must parse as a task or `STOP`
//!   or give `Codec`. A parsed task's payload then goes through real trampolines (a `u64`
//!   task, a `(String, Vec<u32>)` task, a `String` task) as a worker would run it; the
//!   reply must parse, and a `DONE` reply must decode as the task's results.
//! - byte 0 odd: the rest is a *reply from a worker*. It must parse or give `Codec`; a
//!   `DONE` or `INIT` payload must decode, for several result types and item counts, to
//!   exactly the number of items asked for or to `Codec` — never panic.

use shmproc::wire::{decode_outcomes, parse_reply, parse_task, run_payload, task_message, Reply, TaskMsg};
use shmproc::PoolError;

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn pair_len(p: (String, Vec<u32>)) -> usize {
    p.0.len() + p.1.len()
}

fn shout(s: String) -> String {
    s.to_uppercase()
}

fn check_decode<R: serde::de::DeserializeOwned>(payload: &[u8]) {
    for n in [0, 1, 2, 3, 17] {
        match decode_outcomes::<R>(payload, n) {
            Ok(v) => assert_eq!(v.len(), n),
            Err(PoolError::Codec(_)) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}

/// Runs `payload` like a worker and checks the reply.
fn run_as_worker<R: serde::de::DeserializeOwned>(reply: Vec<u8>) {
    match parse_reply(&reply) {
        Ok(Reply::Done(p)) => check_decode::<R>(p),
        Ok(Reply::Failed(msg)) => assert!(!msg.is_empty()),
        other => panic!("a trampoline replied {other:?}"),
    }
}

pub fn pool_wire_input(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        match parse_task(rest) {
            Ok(TaskMsg::Run { payload, .. }) => {
                assert_eq!(payload, &rest[9..]);
                run_as_worker::<u64>(run_payload(square, payload));
                run_as_worker::<usize>(run_payload(pair_len, payload));
                run_as_worker::<String>(run_payload(shout, payload));
            }
            Ok(TaskMsg::Stop) => assert_eq!(rest, [2]),
            Err(PoolError::Codec(_)) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
        // A well-formed message built from the input's bytes round-trips.
        let items: Vec<u64> = rest
            .chunks(8)
            .map(|c| c.iter().fold(0u64, |a, &b| a << 8 | b as u64))
            .collect();
        let msg = task_message(square, &items);
        let Ok(TaskMsg::Run { payload, .. }) = parse_task(&msg) else {
            panic!("own message unparsable")
        };
        let reply = run_payload(square, payload);
        let Ok(Reply::Done(p)) = parse_reply(&reply) else {
            panic!("own task failed")
        };
        let got: Vec<u64> = decode_outcomes::<u64>(p, items.len())
            .expect("own results decode")
            .into_iter()
            .map(|r| r.expect("square does not panic"))
            .collect();
        assert_eq!(got, items.iter().map(|&x| square(x)).collect::<Vec<_>>());
    } else {
        match parse_reply(rest) {
            Ok(Reply::Done(p)) | Ok(Reply::Init(p)) => {
                check_decode::<u64>(p);
                check_decode::<()>(p);
                check_decode::<String>(p);
                check_decode::<(u32, Vec<u8>)>(p);
            }
            Ok(Reply::Failed(_)) | Err(PoolError::Codec(_)) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}
