//! One core of a node stopped while the others run: its thread
//! (`shardcast-core<N>`) is put in a ptrace stop, the way a core stuck in a long
//! computation or a blocked syscall would look to its neighbours. Its mailbox then
//! fills with what the other cores send it, and nothing drains it until the stop ends.
//!
//! ptrace ties the stop to the thread that made it: the `CoreStop` must be made, used
//! and dropped on one test thread (the test's own). Drop resumes the core; if the test
//! thread ends first the kernel resumes it.

use std::io;
use std::time::{Duration, Instant};

use super::http::HttpConn;
use super::node::Node;

/// The thread id of core `core` of process `pid`.
pub fn core_thread(pid: i32, core: usize) -> i32 {
    let want = format!("shardcast-core{core}");
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/<pid>/task");
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == want {
            if let Some(tid) = task.file_name().to_str().and_then(|s| s.parse().ok()) {
                return tid;
            }
        }
    }
    panic!("no thread {want} in process {pid}")
}

/// The state letter of thread `tid` of `pid` (R, S, t, ...).
fn thread_state(pid: i32, tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// A core thread held in a ptrace stop; resumed on drop.
pub struct CoreStop {
    pid: i32,
    tid: i32,
    resumed: bool,
}

impl CoreStop {
    /// Stops core `core` of process `pid` and waits until it is stopped. Panics, with
    /// the reason, when ptrace is refused (a sandbox without ptrace cannot run the test).
    pub fn new(pid: i32, core: usize) -> CoreStop {
        let tid = core_thread(pid, core);
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: ptrace on a thread of our own child process; no memory is passed.
        let seized = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, null, null) };
        assert_eq!(
            seized,
            0,
            "ptrace(PTRACE_SEIZE) of core {core} (tid {tid}) refused: {} — this test needs \
             ptrace of its own child process",
            io::Error::last_os_error()
        );
        let stop = CoreStop {
            pid,
            tid,
            resumed: false,
        };
        // SAFETY: as above; the thread is our tracee now.
        let interrupted = unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, null, null) };
        assert_eq!(
            interrupted,
            0,
            "PTRACE_INTERRUPT: {}",
            io::Error::last_os_error()
        );
        let mut status = 0;
        // SAFETY: waits for the stop of our tracee; `status` is ours.
        let waited = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        assert_eq!(waited, tid, "waitpid: {}", io::Error::last_os_error());
        let deadline = Instant::now() + Duration::from_secs(5);
        while thread_state(pid, tid) != Some('t') {
            assert!(Instant::now() < deadline, "core {core} did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        stop
    }

    /// Lets the core run again (also done by drop).
    pub fn resume(&mut self) {
        if std::mem::replace(&mut self.resumed, true) {
            return;
        }
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: detaches our stopped tracee; it runs on.
        let r = unsafe { libc::ptrace(libc::PTRACE_DETACH, self.tid, null, null) };
        if r != 0 && !std::thread::panicking() {
            panic!(
                "PTRACE_DETACH of tid {} (pid {}): {}",
                self.tid,
                self.pid,
                io::Error::last_os_error()
            );
        }
    }
}

impl Drop for CoreStop {
    fn drop(&mut self) {
        self.resume();
    }
}

/// An HTTP connection served by a core that runs while another is stopped: a
/// connection the kernel gave to the stopped core is never answered. Probes up to 64
/// connections with `GET /healthz`.
pub fn http_conn_on_running_core(node: &Node) -> HttpConn {
    for _ in 0..64 {
        let mut conn = HttpConn::connect(node.addr());
        let probe = conn.format_request("GET", "/healthz", &[], b"");
        conn.send_raw(&probe);
        if matches!(conn.read_response(Duration::from_millis(300)), Ok(r) if r.status == 200) {
            return conn;
        }
    }
    panic!("64 connections and none answered by the running core");
}

/// `n` keep-alive HTTP connections that core `core` of a two-core node serves (the
/// kernel spreads connections over the cores' listeners): found with the other core
/// stopped, which runs again before this returns.
pub fn http_conns_on_core(node: &Node, core: usize, n: usize) -> Vec<HttpConn> {
    let _stop = CoreStop::new(node.pid(), 1 - core);
    (0..n).map(|_| http_conn_on_running_core(node)).collect()
}
