//! Shared harness of the black-box integration tests.
//!
//! Starts the real `shardcast` binary (`Node`) on a free loopback port with its own
//! temporary data directory, talks to it with a tiny HTTP/1.1 client on
//! `std::net::TcpStream` (`HttpConn`, including a raw mode for malformed requests) and
//! with tungstenite's sync WebSocket client (`Client`), and offers raw WebSocket sockets
//! (hand-made handshake) for tests that must control the socket completely.
//!
//! The binary is `CARGO_BIN_EXE_shardcast` when the tests live in the shardcast crate,
//! else the path in the environment variable `SHARDCAST_BIN`.
//!
//! Every process a test starts is killed and reaped when its `Node` is dropped; when the
//! test is failing (panicking) the node's log is printed to stderr.

#![allow(dead_code)]

pub mod cluster;
pub mod receiver;
use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// The two systems every test node registers at startup (`api.systems`).
pub const SYS_A: &str = "sys-a";
pub const SYS_B: &str = "sys-b";

/// Default wait for something that should happen "at once".
pub const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing more arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(400);

// ---------------------------------------------------------------------------
// Binary, ports, time
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
/// test process (two nodes given the same port would share it through SO_REUSEPORT).
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

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A command for the binary with every inherited `SHARDCAST_*` variable removed, so the
/// test runner's environment (e.g. `SHARDCAST_BIN`) never overrides a test's config.
pub fn shardcast_command() -> Command {
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
// Config building
// ---------------------------------------------------------------------------

/// Builds the node config: the base keys (`server.http_addr`, `server.workers = 2`,
/// `server.data_dir`, `api.systems = ["sys-a","sys-b"]`) merged with `extra`, a TOML
/// fragment of `[section]` headers and single-line `key = value` lines. A key of `extra`
/// replaces the base key of the same name in the same section.
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
        node.spawn();
        node
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.addr.parse().unwrap()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("shardcast.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// The node's log so far (stdout and stderr of every run).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        // A port taken by someone else between free_port() and the node's bind makes the
        // node exit at once: try another port then.
        for attempt in 1..=3 {
            let log_len = std::fs::metadata(self.log_path())
                .map(|m| m.len() as usize)
                .unwrap_or(0);
            self.spawn_once();
            match self.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return,
                Err(why) => {
                    let log = self.log();
                    let this_run = log.get(log_len..).unwrap_or("");
                    let port_taken = this_run.to_ascii_lowercase().contains("in use");
                    if port_taken && self.child.is_none() && attempt < 3 {
                        self.port = free_port();
                        self.addr = format!("127.0.0.1:{}", self.port);
                        continue;
                    }
                    panic!(
                        "{why}; config:\n{}\nlog:\n{log}",
                        std::fs::read_to_string(self.config_path()).unwrap_or_default()
                    );
                }
            }
        }
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
        if self.child.is_some() {
            self.sigterm();
            if self.try_wait_exit(Duration::from_secs(15)).is_none() {
                self.kill();
            }
        }
        self.port = free_port();
        self.addr = format!("127.0.0.1:{}", self.port);
        self.spawn();
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("node not running").id() as i32
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `sig` to the node process.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill({sig}) failed: {}", io::Error::last_os_error());
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

    // ---- HTTP ----------------------------------------------------------

    /// A new HTTP connection to the node.
    pub fn http(&self) -> HttpConn {
        HttpConn::connect(&self.addr)
    }

    /// POST `path` with optional `SystemId` header and `body`; (HTTP status, JSON body).
    pub fn api(&self, path: &str, system_id: Option<&str>, body: &str) -> (u16, Value) {
        self.http().api(path, system_id, body)
    }

    /// POST `path` with the given headers and `body`; (HTTP status, JSON body).
    pub fn api_with_headers(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value) {
        let resp = self.http().request("POST", path, headers, body.as_bytes());
        let v = resp.json();
        (resp.status, v)
    }

    /// A successful call on `system_id` (asserts the success envelope); its `data`.
    pub fn call(&self, system_id: &str, path: &str, body: Value) -> Value {
        expect_ok(self.api(path, Some(system_id), &body.to_string()))
    }

    /// A call on `system_id` that must fail with `status` and `msg`.
    pub fn call_err(&self, system_id: &str, path: &str, body: Value, status: u16, msg: &str) {
        expect_err(
            self.api(path, Some(system_id), &body.to_string()),
            status,
            msg,
        );
    }

    /// GET `path` on a fresh connection.
    pub fn get(&self, path: &str) -> HttpResponse {
        self.http().request("GET", path, &[], b"")
    }

    pub fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "GET /metrics");
        r.text()
    }

    // ---- convenience API wrappers (open mode) --------------------------

    pub fn send_to_client(&self, sys: &str, client_id: &str, msg: &str, data: Value) -> Value {
        self.call(
            sys,
            "/api/send_to_client",
            json!({"clientId": client_id, "msg": msg, "data": data}),
        )
    }

    pub fn bind(&self, sys: &str, client_id: &str, group: &str, user_id: &str, extend: &str) {
        let data = self.call(
            sys,
            "/api/bind_to_group",
            json!({"clientId": client_id, "groupName": group, "userId": user_id, "extend": extend}),
        );
        assert_eq!(data, json!([]), "bind_to_group data");
    }

    pub fn unbind(&self, sys: &str, client_id: &str, group: &str) {
        let data = self.call(
            sys,
            "/api/unbind_from_group",
            json!({"clientId": client_id, "groupName": group}),
        );
        assert_eq!(data, json!([]), "unbind_from_group data");
    }

    pub fn is_online(&self, sys: &str, client_id: &str) -> bool {
        let data = self.call(sys, "/api/is_online", json!({ "clientId": client_id }));
        data["online"]
            .as_bool()
            .unwrap_or_else(|| panic!("is_online data without bool online: {data}"))
    }

    /// Polls `is_online` until it is false; panics after `timeout`.
    pub fn wait_offline(&self, sys: &str, client_id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.is_online(sys, client_id) {
            assert!(
                Instant::now() < deadline,
                "{client_id} still online after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // ---- WebSocket -------------------------------------------------------

    /// A WebSocket connection to `/ws?systemId=<system_id>` whose welcome has been read.
    pub fn ws(&self, system_id: &str) -> Client {
        Client::welcome(self.ws_connect(&format!("/ws?systemId={system_id}")))
    }

    /// The WebSocket handshake on `path_and_query`, nothing read after it.
    pub fn ws_connect(&self, path_and_query: &str) -> WebSocket<TcpStream> {
        ws_connect(&self.addr, path_and_query)
    }

    /// A WebSocket connection whose client is gone: connected, closed by the client, and
    /// seen offline by the API. Returns its (well-formed) clientId.
    pub fn gone_client_id(&self, system_id: &str) -> String {
        let mut c = self.ws(system_id);
        let id = c.client_id.clone();
        c.close_cleanly();
        self.wait_offline(system_id, &id, WAIT);
        id
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail = if log.len() > 20_000 {
                let mut start = log.len() - 20_000;
                while !log.is_char_boundary(start) {
                    start += 1;
                }
                &log[start..]
            } else {
                &log[..]
            };
            eprintln!(
                "---- shardcast node {} config ----\n{}\n---- log (tail) ----\n{}\n---- end ----",
                self.addr,
                std::fs::read_to_string(self.config_path()).unwrap_or_default(),
                tail
            );
        }
    }
}

// ---------------------------------------------------------------------------
// API envelope assertions
// ---------------------------------------------------------------------------

/// Asserts `{"code":0,"msg":"success","data":…}` with HTTP 200; returns `data`.
pub fn expect_ok(resp: (u16, Value)) -> Value {
    let (status, v) = resp;
    assert_eq!(status, 200, "expected HTTP 200, got {status}: {v}");
    assert_eq!(v["code"], json!(0), "expected code 0: {v}");
    assert_eq!(v["msg"], json!("success"), "expected msg success: {v}");
    assert!(v.get("data").is_some(), "success without data: {v}");
    v["data"].clone()
}

/// Asserts `{"code":-1,"msg":msg}` with HTTP `status`.
pub fn expect_err(resp: (u16, Value), status: u16, msg: &str) {
    let (st, v) = resp;
    assert_eq!(
        (st, v["code"].clone(), v["msg"].clone()),
        (status, json!(-1), json!(msg)),
        "expected HTTP {status} code -1 msg {msg:?}, got HTTP {st}: {v}"
    );
}

/// `{"code":-1,…}` with HTTP `status`; returns the msg.
pub fn expect_err_any(resp: (u16, Value), status: u16) -> String {
    let (st, v) = resp;
    assert_eq!(st, status, "expected HTTP {status}, got {st}: {v}");
    assert_eq!(v["code"], json!(-1), "expected code -1: {v}");
    v["msg"]
        .as_str()
        .unwrap_or_else(|| panic!("msg not a string: {v}"))
        .to_string()
}

pub fn is_message_id(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Asserts `v` is a messageId (16 lowercase hex characters); returns it.
pub fn assert_message_id(v: &Value) -> String {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("messageId not a string: {v}"));
    assert!(is_message_id(s), "messageId is not 16 lowercase hex: {s:?}");
    s.to_string()
}

/// `s` is 22 characters of base64url (the clientId form of API.md §3).
pub fn is_client_id_form(s: &str) -> bool {
    s.len() == 22
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Sum of the samples of the metrics whose name satisfies `pred` (Prometheus text).
pub fn metric_sum(text: &str, pred: impl Fn(&str) -> bool) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if !pred(name) {
            continue;
        }
        let rest = if line[name_end..].starts_with('{') {
            match line[name_end..].find('}') {
                Some(i) => &line[name_end + i + 1..],
                None => continue,
            }
        } else {
            &line[name_end..]
        };
        if let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

// ---------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Whether the server said it will close the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .map(|v| v.eq_ignore_ascii_case("close"))
            .unwrap_or(false)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An HTTP/1.1 connection (keep-alive) with a buffer, so pipelined responses can be read
/// one after another.
pub struct HttpConn {
    pub stream: TcpStream,
    addr: String,
    buf: Vec<u8>,
    closed_by_server: bool,
}

impl HttpConn {
    pub fn connect(addr: &str) -> HttpConn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        HttpConn {
            stream,
            addr: addr.to_string(),
            buf: Vec::new(),
            closed_by_server: false,
        }
    }

    fn try_connect(addr: &str, timeout: Duration) -> io::Result<HttpConn> {
        let sa: SocketAddr = addr.parse().unwrap();
        let stream = TcpStream::connect_timeout(&sa, timeout)?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            stream,
            addr: addr.to_string(),
            buf: Vec::new(),
            closed_by_server: false,
        })
    }

    /// Writes raw bytes; panics on error.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to {}: {e}", self.addr));
    }

    /// Writes raw bytes.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The bytes of a request (Host and, for a body or POST, Content-Length added).
    pub fn format_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<u8> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// Sends one request and reads its response (reconnects first if the previous
    /// response announced `Connection: close`).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        if self.closed_by_server {
            *self = HttpConn::connect(&self.addr.clone());
        }
        let bytes = self.format_request(method, path, headers, body);
        self.send_raw(&bytes);
        let resp = self
            .read_response(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if resp.closes() {
            self.closed_by_server = true;
        }
        resp
    }

    /// POST an API request; (status, JSON body).
    pub fn api(&mut self, path: &str, system_id: Option<&str>, body: &str) -> (u16, Value) {
        let headers: Vec<(&str, &str)> = system_id.map(|s| ("SystemId", s)).into_iter().collect();
        let resp = self.request("POST", path, &headers, body.as_bytes());
        let v = resp.json();
        (resp.status, v)
    }

    /// Reads more bytes into the buffer; Ok(0) on EOF.
    fn fill(&mut self, deadline: Instant) -> Result<usize, String> {
        let now = Instant::now();
        if now >= deadline {
            return Err("timed out".into());
        }
        self.stream
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            .unwrap();
        let mut tmp = [0u8; 16 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err("timed out".into())
            }
            Err(e) => Err(format!("read error: {e}")),
        }
    }

    /// Reads one response (Content-Length, chunked, or until EOF).
    pub fn read_response(&mut self, timeout: Duration) -> Result<HttpResponse, String> {
        let deadline = Instant::now() + timeout;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.fill(deadline)? == 0 {
                return Err(format!(
                    "connection closed before a complete response head (got {:?})",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(format!("bad status line {status_line:?}"));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let body_start = head_end + 4;
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let chunked = get("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
        let body;
        if chunked {
            loop {
                if let Some((b, used)) = decode_chunked(&self.buf[body_start..]) {
                    body = b;
                    self.buf.drain(..body_start + used);
                    break;
                }
                if self.fill(deadline)? == 0 {
                    return Err("connection closed inside a chunked body".into());
                }
            }
        } else if let Some(len) = get("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| format!("bad Content-Length {len:?}"))?;
            while self.buf.len() < body_start + len {
                if self.fill(deadline)? == 0 {
                    return Err("connection closed inside the body".into());
                }
            }
            body = self.buf[body_start..body_start + len].to_vec();
            self.buf.drain(..body_start + len);
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            body = Vec::new();
            self.buf.drain(..body_start);
        } else {
            // No length: the body runs to the end of the connection.
            loop {
                match self.fill(deadline) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.starts_with("read error") => break,
                    Err(e) => return Err(e),
                }
            }
            body = self.buf[body_start..].to_vec();
            self.buf.clear();
            self.closed_by_server = true;
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// True when the server closes the connection (EOF or reset) within `timeout`; any
    /// bytes arriving meanwhile are discarded.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        self.buf.clear();
        wait_eof(&mut self.stream, timeout).is_some()
    }
}

fn decode_chunked(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let line_end = pos + find(&data[pos..], b"\r\n")?;
        let size_str = String::from_utf8_lossy(&data[pos..line_end]);
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            // Skip trailers up to the empty line.
            loop {
                let e = pos + find(&data[pos..], b"\r\n")?;
                let empty = e == pos;
                pos = e + 2;
                if empty {
                    return Some((body, pos));
                }
            }
        }
        if data.len() < pos + size + 2 {
            return None;
        }
        body.extend_from_slice(&data[pos..pos + size]);
        pos += size + 2;
    }
}

/// GET `path` on a fresh connection with short timeouts; Err on any failure.
pub fn try_get(addr: &str, path: &str, timeout: Duration) -> Result<HttpResponse, String> {
    let mut c = HttpConn::try_connect(addr, timeout).map_err(|e| e.to_string())?;
    let bytes = c.format_request("GET", path, &[], b"");
    c.try_send_raw(&bytes).map_err(|e| e.to_string())?;
    c.read_response(timeout)
}

/// Reads and discards until EOF or a connection error; the time it took, or None if the
/// connection was still open after `timeout`.
pub fn wait_eof(stream: &mut TcpStream, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut tmp = [0u8; 16 * 1024];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        stream
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut tmp) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
}

// ---------------------------------------------------------------------------
// WebSocket client (tungstenite)
// ---------------------------------------------------------------------------

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// Connects and performs the WebSocket handshake on `path_and_query`.
pub fn ws_connect(addr: &str, path_and_query: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let url = format!("ws://{addr}{path_and_query}");
    match tungstenite::client::client_with_config(url.as_str(), stream, Some(ws_config())) {
        Ok((socket, _resp)) => socket,
        Err(e) => panic!("WebSocket handshake to {url} failed: {e}"),
    }
}

/// One thing read from a WebSocket.
#[derive(Debug)]
pub enum WsEvent {
    Text(String),
    Binary(Vec<u8>),
    Ping,
    Pong,
    /// A close frame, with its code (1005 when it carried none).
    Close(u16),
    /// The connection ended without (further) close frame: EOF, reset, or already closed.
    Gone(String),
    Timeout,
}

/// A WebSocket client whose welcome frame has been read.
pub struct Client {
    pub client_id: String,
    pub socket: WebSocket<TcpStream>,
}

impl Client {
    /// Reads the welcome `{"code":0,"msg":"success","data":{"clientId":…}}`.
    pub fn welcome(socket: WebSocket<TcpStream>) -> Client {
        let mut c = Client {
            client_id: String::new(),
            socket,
        };
        let w = c
            .recv_json(WAIT)
            .expect("no welcome frame within 5 s after the handshake");
        assert_eq!(w["code"], json!(0), "welcome code: {w}");
        assert_eq!(w["msg"], json!("success"), "welcome msg: {w}");
        let id = w["data"]["clientId"]
            .as_str()
            .unwrap_or_else(|| panic!("welcome without data.clientId: {w}"));
        assert!(!id.is_empty(), "empty clientId in welcome: {w}");
        c.client_id = id.to_string();
        c
    }

    /// Reads one event, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> WsEvent {
        let t = timeout.max(Duration::from_millis(1));
        if let Err(e) = self.socket.get_ref().set_read_timeout(Some(t)) {
            return WsEvent::Gone(e.to_string());
        }
        match self.socket.read() {
            Ok(Message::Text(t)) => WsEvent::Text(t.as_str().to_owned()),
            Ok(Message::Binary(b)) => WsEvent::Binary(b.to_vec()),
            Ok(Message::Ping(_)) => WsEvent::Ping,
            Ok(Message::Pong(_)) => WsEvent::Pong,
            Ok(Message::Close(f)) => {
                // Let tungstenite send its close reply.
                let _ = self.socket.flush();
                WsEvent::Close(f.map(|f| u16::from(f.code)).unwrap_or(1005))
            }
            Ok(Message::Frame(_)) => WsEvent::Pong,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                WsEvent::Timeout
            }
            Err(e) => WsEvent::Gone(e.to_string()),
        }
    }

    /// The next text frame (pings/pongs skipped) within `timeout`; None on timeout.
    /// Panics if the connection closes or a binary frame arrives.
    pub fn recv_text(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            match self.next_event(deadline - now) {
                WsEvent::Text(t) => return Some(t),
                WsEvent::Ping | WsEvent::Pong => {}
                WsEvent::Timeout => return None,
                other => panic!(
                    "client {}: expected a text frame, got {other:?}",
                    self.client_id
                ),
            }
        }
    }

    /// The next text frame parsed as JSON (a trailing `\n` tolerated); None on timeout.
    pub fn recv_json(&mut self, timeout: Duration) -> Option<Value> {
        self.recv_text(timeout).map(|t| {
            serde_json::from_str(t.trim_end_matches(['\n', '\r']))
                .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {t:?}"))
        })
    }

    /// The next JSON frame; panics when none arrives within `timeout`.
    pub fn expect_json(&mut self, timeout: Duration) -> Value {
        let id = self.client_id.clone();
        self.recv_json(timeout)
            .unwrap_or_else(|| panic!("client {id}: no frame within {timeout:?}"))
    }

    /// The next JSON frame satisfying `pred`, skipping others; panics on timeout.
    pub fn expect_json_where(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            match self.recv_json(left) {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => panic!(
                    "client {}: no matching frame within {timeout:?}",
                    self.client_id
                ),
            }
        }
    }

    /// Asserts that no text/binary frame arrives (and the connection stays open) for `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match self.next_event(deadline - now) {
                WsEvent::Ping | WsEvent::Pong => {}
                WsEvent::Timeout => return,
                other => panic!("client {}: expected silence, got {other:?}", self.client_id),
            }
        }
    }

    /// Reads everything that arrives within `d` (text frames only), stopping at a quiet
    /// period of `QUIET`.
    pub fn drain(&mut self, d: Duration) -> Vec<Value> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.recv_json(left.min(QUIET)) {
                Some(v) => out.push(v),
                None => return out,
            }
        }
    }

    /// Waits for a close frame (skipping data frames); its code. Panics if the connection
    /// ends without one or nothing comes within `timeout`.
    pub fn expect_close(&mut self, timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "client {}: no close frame within {timeout:?}",
                self.client_id
            );
            match self.next_event(left) {
                WsEvent::Close(code) => return code,
                WsEvent::Gone(e) => panic!(
                    "client {}: connection ended without a close frame: {e}",
                    self.client_id
                ),
                WsEvent::Timeout => panic!(
                    "client {}: no close frame within {timeout:?}",
                    self.client_id
                ),
                _ => {}
            }
        }
    }

    /// True when the connection ends (close frame, EOF or reset) within `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.next_event(left) {
                WsEvent::Close(_) | WsEvent::Gone(_) => return true,
                WsEvent::Timeout => return false,
                _ => {}
            }
        }
    }

    pub fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text))
            .unwrap_or_else(|e| panic!("client {}: send failed: {e}", self.client_id));
    }

    /// Sends a close frame (1000) and waits briefly for the server's reply.
    pub fn close_cleanly(&mut self) {
        let _ = self.socket.close(None);
        let _ = self.socket.flush();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_event(left) {
                WsEvent::Gone(_) | WsEvent::Timeout | WsEvent::Close(_) => return,
                _ => {}
            }
        }
    }

    /// Drops the TCP connection without a close frame (FIN).
    pub fn drop_abruptly(self) {
        let _ = self.socket.get_ref().shutdown(Shutdown::Both);
    }

    /// Drops the TCP connection with a reset (SO_LINGER 0), no close frame.
    pub fn reset_abruptly(self) {
        set_linger_zero(self.socket.get_ref());
    }
}

/// Makes the next close of `stream` send a RST.
pub fn set_linger_zero(stream: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized option value.
    let r = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt(SO_LINGER)");
}

// ---------------------------------------------------------------------------
// Notices
// ---------------------------------------------------------------------------

/// Asserts `frame` is the online (1001) or offline (1002) notice of §4 for the given
/// connection: `data` a JSON string with exactly the keys clientId, extend, userId in
/// sorted order.
pub fn assert_notice(frame: &Value, code: i64, client_id: &str, user_id: &str, extend: &str) {
    let msg = match code {
        1001 => "客户端上线",
        1002 => "客户端下线",
        _ => panic!("not a notice code: {code}"),
    };
    assert_eq!(frame["code"], json!(code), "notice code: {frame}");
    assert_eq!(frame["msg"], json!(msg), "notice msg: {frame}");
    assert_eq!(frame["sendUserId"], json!(""), "notice sendUserId: {frame}");
    assert_message_id(&frame["messageId"]);
    let data = frame["data"]
        .as_str()
        .unwrap_or_else(|| panic!("notice data must be a JSON string: {frame}"));
    let parsed: Value = serde_json::from_str(data)
        .unwrap_or_else(|e| panic!("notice data is not JSON text ({e}): {data:?}"));
    assert_eq!(
        parsed,
        json!({"clientId": client_id, "extend": extend, "userId": user_id}),
        "notice data: {data}"
    );
    let p_client = data.find("\"clientId\"").unwrap();
    let p_extend = data.find("\"extend\"").unwrap();
    let p_user = data.find("\"userId\"").unwrap();
    assert!(
        p_client < p_extend && p_extend < p_user,
        "notice data keys not sorted: {data}"
    );
}

pub fn is_notice(v: &Value) -> bool {
    v["code"] == json!(1001) || v["code"] == json!(1002)
}

// ---------------------------------------------------------------------------
// Raw WebSocket sockets
// ---------------------------------------------------------------------------

/// The RFC 6455 sample key and its accept value.
pub const SAMPLE_WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const SAMPLE_WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Sends a hand-written upgrade request on `stream` and reads the response head byte by
/// byte (so no frame after it is consumed). Returns (status, head text).
pub fn raw_ws_handshake(
    stream: &mut TcpStream,
    host: &str,
    path_and_query: &str,
    extra_headers: &str,
) -> (u16, String) {
    let req = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {SAMPLE_WS_KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    );
    raw_upgrade(stream, &req)
}

/// Sends `request` and reads the response head byte by byte. Returns (status, head).
pub fn raw_upgrade(stream: &mut TcpStream, request: &str) -> (u16, String) {
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut b) {
            Ok(1) => head.push(b[0]),
            Ok(_) => panic!(
                "connection closed during the upgrade: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Err(e) => panic!(
                "reading the upgrade response: {e}; got {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
        assert!(head.len() < 64 * 1024, "upgrade response head too long");
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad upgrade response: {text:?}"));
    (status, text)
}

/// Value of a header in a raw response head (case-insensitive name).
pub fn head_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Reads one server frame from a raw socket (unmasked; fragments not joined):
/// (opcode, payload). None on timeout, EOF or error.
pub fn read_raw_frame(stream: &mut TcpStream, timeout: Duration) -> Option<(u8, Vec<u8>)> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut h = [0u8; 2];
    stream.read_exact(&mut h).ok()?;
    let opcode = h[0] & 0x0f;
    let masked = h[1] & 0x80 != 0;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as u64
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b)
        }
        n => n as u64,
    };
    let mut mask = [0u8; 4];
    if masked {
        stream.read_exact(&mut mask).ok()?;
    }
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Some((opcode, payload))
}

/// Writes one masked client frame on a raw socket.
pub fn write_raw_frame(stream: &mut TcpStream, opcode: u8, payload: &[u8]) {
    let mut f = vec![0x80 | opcode];
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&f).unwrap();
}

/// A TCP connection to `addr` whose receive buffer was set to `rcvbuf` bytes before
/// connecting (so the advertised window stays small).
pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: i32) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 address expected: {addr}")
    };
    // SAFETY: plain socket calls on a descriptor we own; on success it is handed to
    // TcpStream, which then owns and closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket(): {}", io::Error::last_os_error());
        let v: libc::c_int = rcvbuf;
        let r = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(
            r,
            0,
            "setsockopt(SO_RCVBUF): {}",
            io::Error::last_os_error()
        );
        let ip: Ipv4Addr = *v4.ip();
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if r != 0 {
            let e = io::Error::last_os_error();
            libc::close(fd);
            panic!("connect {addr}: {e}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

// ---------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------

/// `s` with the character at `i` replaced by a different base64url character.
pub fn change_char(s: &str, i: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

/// Sorted copy of a JSON array of strings.
pub fn sorted_strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("expected an array: {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("expected strings: {v}"))
                .to_string()
        })
        .collect();
    out.sort();
    out
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `{groupName: count}` of a get_group_list answer.
pub fn group_counts(data: &Value) -> BTreeMap<String, u64> {
    data["list"]
        .as_array()
        .unwrap_or_else(|| panic!("group list is not an array: {data}"))
        .iter()
        .map(|g| {
            (
                g["groupName"].as_str().unwrap().to_string(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect()
}
