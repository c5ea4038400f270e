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

/// (seconds, events per second) for `count` events seen between the ticks
/// `first` and `last`; zero when none was seen (`first` still `u64::MAX`).
pub fn rate(count: u64, first: u64, last: u64) -> (f64, f64) {
    if first == u64::MAX || last < first {
        return (0.0, 0.0);
    }
    let secs = secs_between(first, last);
    let per_sec = if secs > 0.0 { count as f64 / secs } else { 0.0 };
    (secs, per_sec)
}
