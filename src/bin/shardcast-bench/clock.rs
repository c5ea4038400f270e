//! The one clock every process of a run shares: CLOCK_MONOTONIC in nanoseconds.
//!
//! Publishers write it into each message and receivers subtract it from their own
//! reading, so a worker process measures latency against the same clock as the parent.

/// Nanoseconds of CLOCK_MONOTONIC (shared by all processes of the machine).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Seconds between two `mono_ns` readings (0 when `end` is not after `start`).
pub fn secs_between(start: u64, end: u64) -> f64 {
    end.saturating_sub(start) as f64 / 1e9
}
