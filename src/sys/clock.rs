//! Clock reads for the channel layer: nanosecond counters with no lazily set origin (which a
//! fork could catch half-initialised), unlike `Instant`'s `duration_since` arithmetic.

/// `CLOCK_MONOTONIC` in nanoseconds.
pub(crate) fn monotonic_ns() -> u64 {
    ns(rustix::time::clock_gettime(rustix::time::ClockId::Monotonic))
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: a few ns per read, a few ms of resolution (for
/// throttling checks on a hot path).
pub(crate) fn coarse_monotonic_ns() -> u64 {
    ns(rustix::time::clock_gettime(
        rustix::time::ClockId::MonotonicCoarse,
    ))
}

#[inline]
fn ns(t: rustix::time::Timespec) -> u64 {
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}
