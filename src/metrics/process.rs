//! The standard `process_*` figures of the Prometheus client libraries, read
//! from `/proc/self` when `/metrics` is asked (nothing on the hot path).

use std::fmt::Write;

/// Writes `process_open_fds`, `process_max_fds`,
/// `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
/// `process_cpu_seconds_total` and `process_start_time_seconds`; a figure
/// that cannot be read is left out.
pub fn render(out: &mut String, start_time_secs: u64) {
    let mut gauge = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    };
    let open = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    gauge("process_open_fds", "gauge", "Open file descriptors.", open);
    gauge(
        "process_max_fds",
        "gauge",
        "Most open file descriptors.",
        max_fds(),
    );
    let (virt, rss) = statm();
    gauge(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory in bytes.",
        rss,
    );
    gauge(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory in bytes.",
        virt,
    );
    gauge(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time in seconds.",
        cpu_seconds(),
    );
    gauge(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the unix epoch in seconds.",
        Some(start_time_secs as f64),
    );
}

fn max_fds() -> Option<f64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    ok.then_some(lim.rlim_cur as f64)
}

fn page_size() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as f64
    } else {
        4096.0
    }
}

/// (virtual, resident) bytes from `/proc/self/statm`.
fn statm() -> (Option<f64>, Option<f64>) {
    let text = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut pages = text.split_whitespace().map(|p| p.parse::<f64>().ok());
    let page = page_size();
    let virt = pages.next().flatten().map(|p| p * page);
    let rss = pages.next().flatten().map(|p| p * page);
    (virt, rss)
}

/// utime + stime of `/proc/self/stat`, in seconds.
fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after ')'.
    Some((ticks(11)? + ticks(12)?) / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let mut out = String::new();
        render(&mut out, 1_700_000_000);
        for name in [
            "process_open_fds ",
            "process_max_fds ",
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
            "process_start_time_seconds 1700000000",
        ] {
            assert!(out.contains(name), "{name} missing:\n{out}");
        }
    }
}
