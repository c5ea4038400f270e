//! The CPU time of the calling thread, for the benches that measure it rather than
//! wall time (a core's work without the wait for the kernel or other threads). Shared
//! by `#[path]` include: each bench is its own crate.

/// CPU time of this thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
