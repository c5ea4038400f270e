//! CPU time and resident memory of processes, read from /proc.
//!
//! CPU is utime + stime (all threads) of `/proc/<pid>/stat`; memory is `VmRSS` of
//! `/proc/<pid>/status`. A server given by pid is observed together with its child
//! processes (nginx: the master's workers), found by their parent pid.

use std::fs;

/// Clock ticks per second of the utime/stime fields.
fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The fields after the `(comm)` of a stat line (comm may contain spaces and parens).
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime in seconds of `pid` ("self" for this process).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let f = stat_fields(pid)?;
    // After comm: state(0) ppid(1) ... utime(11) stime(12).
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

/// CPU seconds of this process.
pub fn self_cpu() -> f64 {
    cpu_seconds("self").unwrap_or(0.0)
}

/// VmRSS of `pid` in bytes.
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The server under test: the given pids and their children.
#[derive(Clone, Debug, Default)]
pub struct Server {
    roots: Vec<u32>,
}

/// A reading of a server's processes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub cpu_s: f64,
    pub rss: u64,
    pub processes: usize,
}

impl Server {
    pub fn new(roots: Vec<u32>) -> Self {
        Server { roots }
    }

    /// Fails when a given pid names no process.
    pub fn check(&self) -> Result<(), String> {
        for pid in &self.roots {
            if cpu_seconds(&pid.to_string()).is_none() {
                return Err(format!("--server-pid {pid}: no such process"));
            }
        }
        Ok(())
    }

    pub fn is_set(&self) -> bool {
        !self.roots.is_empty()
    }

    /// The roots and every live process whose parent is a root.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = self.roots.clone();
        if let Ok(dir) = fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let Ok(pid) = name.parse::<u32>() else {
                    continue;
                };
                if pids.contains(&pid) {
                    continue;
                }
                let ppid =
                    stat_fields(name).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()));
                if ppid.is_some_and(|pp| self.roots.contains(&pp)) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    /// Sum of CPU and RSS over the server's processes (None when no pid was given).
    pub fn sample(&self) -> Option<Sample> {
        if !self.is_set() {
            return None;
        }
        let mut s = Sample::default();
        for pid in self.pids() {
            let p = pid.to_string();
            if let (Some(cpu), Some(rss)) = (cpu_seconds(&p), rss_bytes(&p)) {
                s.cpu_s += cpu;
                s.rss += rss;
                s.processes += 1;
            }
        }
        Some(s)
    }
}

/// (VmRSS `after` − `before`) / `n`: the server's memory growth per connection.
pub fn rss_growth(before: Option<Sample>, after: Option<Sample>, n: u64) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some((a.rss as f64 - b.rss as f64) / n as f64),
        _ => None,
    }
}

/// Parses `--server-pid 12,34` into pids.
pub fn parse_pids(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .map_err(|_| format!("not a pid: {p:?}"))
        })
        .collect()
}
