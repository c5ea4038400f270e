//! One shardcast process: the binary, free ports, the config file, start / signals /
//! restart / exit, and the node's log.
//!
//! `Node` starts the real `shardcast` binary on a free loopback port with its own
//! temporary directory (config, data directory, log). The binary is
//! `CARGO_BIN_EXE_shardcast` when the tests live in the shardcast crate, else the path in
//! the environment variable `SHARDCAST_BIN`.
//!
//! Every process a test starts is killed and reaped when its `Node` is dropped; when the
//! test is failing (panicking) the node's config and log are printed to stderr.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::http::try_get;
use super::{SYS_A, SYS_B};

// ---------------------------------------------------------------------------
// Binary, ports
// ---------------------------------------------------------------------------

/// Path of the shardcast binary under test.
pub fn bin_path() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_shardcast") {
        return PathBuf::from(p);
    }
    match std::env::var_os("SHARDCAST_BIN") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "no shardcast binary: build these tests inside the shardcast crate \
             (CARGO_BIN_EXE_shardcast) or set SHARDCAST_BIN=/path/to/shardcast"
        ),
    }
}

/// A loopback port that was free a moment ago and was never handed out before in this
/// test process (two nodes given the same port would share it through SO_REUSEPORT; two
/// tests given the same port would fight over it).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        if given.insert(port) {
            return port;
        }
    }
}

/// A command for the binary with every inherited `SHARDCAST_*` variable removed, so the
/// test runner's environment (e.g. `SHARDCAST_BIN`) never overrides a test's config.
fn shardcast_command() -> Command {
    let mut cmd = Command::new(bin_path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHARDCAST_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs the binary with `args`, stdout+stderr to a file; kills it after `timeout`.
/// Returns (exit status, or None when it had to be killed; its output).
pub fn run_binary(args: &[&str], timeout: Duration) -> (Option<ExitStatus>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.log");
    let out = File::create(&out_path).unwrap();
    let mut child = shardcast_command()
        .args(args)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn shardcast");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    (status, text)
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// The state letter of `/proc/<pid>/stat` (R, S, T, Z, ...); None when there is no
/// such process.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ..." — comm may contain spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// A `kB` field of `/proc/<pid>/status` (VmRSS:, VmHWM:, ...); 0 when unreadable.
pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// VmRSS of `pid` in KiB (0 when it cannot be read).
pub fn rss_kib(pid: i32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// CPU time (user + system) `pid` has used, in seconds.
pub fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    // Fields 14 and 15 (utime, stime), counted from the state (field 3).
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn process_alive(pid: i32) -> bool {
    matches!(process_state(pid), Some(s) if s != 'Z')
}

/// Sends `sig` to `pid` (a child we spawned and have not reaped yet).
pub fn send_signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}) failed: {}",
        io::Error::last_os_error()
    );
}

/// The last `max` bytes of `s` (on a char boundary).
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

// ---------------------------------------------------------------------------
// ClientIds
// ---------------------------------------------------------------------------

/// A `server.crypto_key` (AES-128) for nodes whose clientIds a test reads (`core_of`);
/// every node of a test cluster has it.
pub const CRYPTO_KEY: &str = "5ca1ab1e0ddba11c0ffee0ddf00dcafe";

/// The core that owns `client_id` of `system` on a node started with
/// `server.crypto_key = CRYPTO_KEY`: a clientId carries its route (docs/api.md §3).
pub fn core_of(client_id: &str, system: &str) -> usize {
    let key: Vec<u8> = (0..CRYPTO_KEY.len() / 2)
        .map(|i| u8::from_str_radix(&CRYPTO_KEY[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let codec = shardcast::client_id::ClientIdCodec::new(&key).expect("an AES key");
    let id = codec
        .decode(client_id, system)
        .unwrap_or_else(|e| panic!("clientId {client_id} of {system}: {e}"));
    usize::from(id.core)
}

// ---------------------------------------------------------------------------
// Config building
// ---------------------------------------------------------------------------

/// Builds the node config: the base keys (`server.http_addr`, `server.workers = 2`,
/// `server.data_dir`, `api.systems = ["sys-a","sys-b"]`) merged with `extra`, a TOML
/// fragment of `[section]` headers and single-line `key = value` lines. A key of `extra`
/// replaces the base key of the same name in the same section.
/// The `[ws]` resume settings of the shipped `conf/shardcast.toml` (resume on, as
/// users run it), as lines to put under a test's own `[ws]`.
pub fn shipped_resume() -> String {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/shardcast.toml");
    let text = std::fs::read_to_string(&conf).expect("conf/shardcast.toml");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("resume_"))
        .collect();
    assert!(!lines.is_empty(), "the shipped config sets no resume key");
    lines.iter().map(|l| format!("{l}\n")).collect()
}

pub fn build_config(http_addr: &str, data_dir: &Path, extra: &str) -> String {
    let mut sections: Vec<(String, Vec<(String, String)>)> = vec![
        (
            "server".into(),
            vec![
                ("http_addr".into(), format!("\"{http_addr}\"")),
                ("workers".into(), "2".into()),
                ("data_dir".into(), format!("'{}'", data_dir.display())),
            ],
        ),
        (
            "api".into(),
            vec![("systems".into(), format!("[\"{SYS_A}\", \"{SYS_B}\"]"))],
        ),
    ];
    let mut current: Option<String> = None;
    for raw in extra.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            let name = line.trim_start_matches('[').trim_end_matches(']').trim();
            current = Some(name.to_string());
            if !sections.iter().any(|(s, _)| s == name) {
                sections.push((name.to_string(), Vec::new()));
            }
            continue;
        }
        let section = current
            .clone()
            .unwrap_or_else(|| panic!("extra config line outside a [section]: {line}"));
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("extra config line is not `key = value`: {line}"));
        let (key, value) = (key.trim().to_string(), value.trim().to_string());
        let entries = &mut sections.iter_mut().find(|(s, _)| *s == section).unwrap().1;
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value,
            None => entries.push((key, value)),
        }
    }
    let mut out = String::new();
    for (name, entries) in sections {
        out.push_str(&format!("[{name}]\n"));
        for (k, v) in entries {
            out.push_str(&format!("{k} = {v}\n"));
        }
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------

/// One running shardcast process.
pub struct Node {
    pub port: u16,
    addr: String,
    dir: tempfile::TempDir,
    extra: String,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    exit_status: Option<ExitStatus>,
}

impl Node {
    /// Starts a node with the base config merged with `extra` (see `build_config`) and
    /// waits until `/readyz` answers 200.
    pub fn start(extra: &str) -> Node {
        Node::start_with_env(extra, &[])
    }

    /// Like `start`, with extra environment variables for the process.
    pub fn start_with_env(extra: &str, envs: &[(&str, &str)]) -> Node {
        Node::try_start(extra, envs).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like `start_with_env`; Err(why, with the config and the log) when the node does
    /// not become ready. The process is stopped then.
    pub fn try_start(extra: &str, envs: &[(&str, &str)]) -> Result<Node, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let port = free_port();
        let mut node = Node {
            port,
            addr: format!("127.0.0.1:{port}"),
            dir,
            extra: extra.to_string(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            exit_status: None,
        };
        node.spawn()?;
        Ok(node)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.addr.parse().unwrap()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("shardcast.toml")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// The node's log so far (stdout and stderr of every run).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Spawns the process and waits until it is ready. A port taken by someone else
    /// between free_port() and the node's bind makes the node exit at once: another port
    /// is tried then.
    fn spawn(&mut self) -> Result<(), String> {
        for attempt in 1..=3 {
            let log_len = std::fs::metadata(self.log_path())
                .map(|m| m.len() as usize)
                .unwrap_or(0);
            self.spawn_once();
            match self.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return Ok(()),
                Err(why) => {
                    let log = self.log();
                    let this_run = log.get(log_len..).unwrap_or("");
                    let port_taken = this_run.to_ascii_lowercase().contains("in use");
                    if port_taken && self.child.is_none() && attempt < 3 {
                        self.port = free_port();
                        self.addr = format!("127.0.0.1:{}", self.port);
                        continue;
                    }
                    self.kill();
                    return Err(format!(
                        "{why}; config:\n{}\nlog:\n{}",
                        std::fs::read_to_string(self.config_path()).unwrap_or_default(),
                        tail(&log, 20_000)
                    ));
                }
            }
        }
        unreachable!()
    }

    fn spawn_once(&mut self) {
        let config = build_config(&self.addr, &self.dir.path().join("data"), &self.extra);
        std::fs::write(self.config_path(), &config).unwrap();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = shardcast_command();
        cmd.arg("-c")
            .arg(self.config_path())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Debugging a flaky test: SHARDCAST_TEST_LOG_LEVEL sets every node's
        // `log.level` (e.g. `info,shardcast::core=debug`); a test's own env wins.
        if let Ok(level) = std::env::var("SHARDCAST_TEST_LOG_LEVEL") {
            cmd.env("SHARDCAST_LOG_LEVEL", level);
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin_path().display()));
        self.child = Some(child);
        self.exit_status = None;
    }

    /// Polls `/readyz` until 200. Err when the process exits first (it is then reaped and
    /// `child` is None) or after `timeout`.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                self.exit_status = Some(st);
                return Err(format!("shardcast exited before it was ready ({st})"));
            }
            if let Ok(resp) = try_get(&self.addr, "/readyz", Duration::from_secs(1)) {
                if resp.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("shardcast not ready within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the node with SIGTERM (SIGKILL after 15 s) and starts it again with the
    /// same data directory and config (on a new free port).
    pub fn restart(&mut self) {
        self.stop_for_restart();
        self.port = free_port();
        self.addr = format!("127.0.0.1:{}", self.port);
        if let Err(e) = self.spawn() {
            panic!("restart: {e}");
        }
    }

    /// Stops the node with SIGTERM (SIGKILL after 15 s), waits for the process to exit
    /// and at once starts it again on the same port, with the same data directory and
    /// config. Err (why, with the log of this run) when it does not become ready: no other
    /// port is tried, unlike `restart`.
    pub fn restart_on_same_port(&mut self) -> Result<(), String> {
        self.stop_for_restart();
        let log_len = self.log().len();
        self.spawn_once();
        self.wait_ready(Duration::from_secs(10)).map_err(|why| {
            let log = self.log();
            format!(
                "{why}; log:\n{}",
                tail(log.get(log_len..).unwrap_or(""), 20_000)
            )
        })
    }

    fn stop_for_restart(&mut self) {
        if self.child.is_some() {
            self.sigterm();
            if self.try_wait_exit(Duration::from_secs(15)).is_none() {
                self.kill();
            }
        }
    }

    /// Like `restart`, with `extra` as the config's additions from now on.
    pub fn restart_with(&mut self, extra: &str) {
        self.extra = extra.to_string();
        self.restart();
    }

    /// The node's `server.data_dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `GET /readyz` status, None when the node does not answer within 1 s.
    pub fn readyz(&self) -> Option<u16> {
        try_get(&self.addr, "/readyz", Duration::from_secs(1))
            .ok()
            .map(|r| r.status)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("node not running").id() as i32
    }

    /// Whether the process still runs.
    pub fn alive(&self) -> bool {
        process_alive(self.pid())
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `sig` to the node process.
    pub fn signal(&self, sig: libc::c_int) {
        send_signal(self.pid(), sig);
    }

    /// SIGKILL, and waits until the process has died (its sockets are closed then; it is
    /// reaped on drop or restart).
    pub fn kill9(&self) {
        let pid = self.pid();
        self.signal(libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_alive(pid) {
            assert!(Instant::now() < deadline, "pid {pid} survived SIGKILL");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the process to exit; None after `timeout`.
    pub fn try_wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exit_status {
            return Some(st);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Some(st) = child.try_wait().unwrap() {
                self.exit_status = Some(st);
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit; panics (the process is then killed by Drop) after
    /// `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.try_wait_exit(timeout) {
            Some(st) => st,
            None => panic!("shardcast did not exit within {timeout:?}"),
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Ok(st) = child.wait() {
                self.exit_status = Some(st);
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        // Debugging a flaky test: SHARDCAST_TEST_NODE_LOGS=<dir> keeps every node's
        // log (and config) there, passing or not, named by the node's address.
        if let Some(dir) = std::env::var_os("SHARDCAST_TEST_NODE_LOGS") {
            let dir = PathBuf::from(dir);
            let name = self.addr.replace([':', '.'], "_");
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(self.log_path(), dir.join(format!("{name}.log")));
            let _ = std::fs::copy(self.config_path(), dir.join(format!("{name}.toml")));
        }
        if std::thread::panicking() {
            eprintln!(
                "---- shardcast node {} config ----\n{}\n---- log (tail) ----\n{}\n---- end ----",
                self.addr,
                std::fs::read_to_string(self.config_path()).unwrap_or_default(),
                tail(&self.log(), 20_000)
            );
        }
    }
}
