//! Loom model checks of the crate's lock-free protocols.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom` (`.ci/run` does).
//! Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmproc::loom_api::{observe, publish, MagicWord};

const MAGIC: u64 = 0x5348_4d50_524f_4301;

/// Writer publishes a two-word header body; a concurrent reader that sees the magic must
/// see the body. The body words are relaxed atomics: the reader may race with the writer, as
/// an opener may race with a segment's creator.
fn check_header_publish<W: MagicWord + Send + Sync + 'static>(new_word: fn() -> W) {
    loom::model(move || {
        let seg = Arc::new((new_word(), AtomicU64::new(0), AtomicU64::new(0)));
        let writer = {
            let seg = seg.clone();
            thread::spawn(move || {
                publish(&seg.0, MAGIC, || {
                    seg.1.store(4096, Ordering::Relaxed);
                    seg.2.store(0xfeed, Ordering::Relaxed);
                });
            })
        };
        let (magic, (len, fp)) = observe(&seg.0, || {
            (seg.1.load(Ordering::Relaxed), seg.2.load(Ordering::Relaxed))
        });
        if magic == MAGIC {
            assert_eq!((len, fp), (4096, 0xfeed), "saw the magic before the header body");
        }
        writer.join().unwrap();
    });
}

#[test]
fn header_publish_is_ordered() {
    check_header_publish(|| AtomicU64::new(0));
}

/// A deliberately broken word (relaxed both ways): loom must find the reordering, which
/// shows that the check above can fail.
struct RelaxedWord(AtomicU64);

impl MagicWord for RelaxedWord {
    fn load_acquire(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn store_release(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed)
    }
}

#[test]
#[should_panic(expected = "saw the magic before the header body")]
fn relaxed_publish_is_caught() {
    check_header_publish(|| RelaxedWord(AtomicU64::new(0)));
}
