//! Cluster harness: a private etcd per test and shardcast nodes in cluster mode.
//!
//! - `Etcd::start()` runs `/usr/bin/etcd` (3.4) on free loopback ports with a temporary
//!   data directory and waits until `GET /health` answers `{"health":"true"}`. `pause()` /
//!   `resume()` send SIGSTOP / SIGCONT; Drop sends SIGCONT, then SIGKILL, and reaps it.
//!   Each `Etcd` also names the cluster (`cluster.name`) its nodes join, unique per test.
//! - `ClusterNode::start(&etcd, extra)` starts a shardcast node (through `common::Node`, so
//!   every helper of the standalone suite works on it) with `[cluster] enabled = true`, a
//!   free `listen_addr` (= `advertise_addr`), the shared `cluster.secret`, the shared
//!   `server.crypto_key`, `lease_ttl = "2s"`, `request_timeout = "1s"`, and waits until
//!   `/readyz` answers 200 (cluster: joined). `extra` (same format as `build_config`'s)
//!   overrides any of these keys.
//! - `Cluster::start(n)` / `start_cluster(n)`: an etcd and `n` nodes started in parallel,
//!   then `wait_mesh` — every node's `send_to_system` reaches a client on every node — so
//!   that a test starts from a formed cluster (a node learns its peers through the etcd
//!   watch a moment after they became ready).
//! - `api_timed` is an API call with a hard limit on the wait for the answer (a hang is
//!   reported as such, not as a 10 s client timeout) and the measured duration.
//!
//! Everything is killed and reaped on drop; ports come from `free_port`, directories from
//! `tempfile`, so the tests run in parallel.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::net::TcpStream;
use std::ops::{Deref, DerefMut, Index, IndexMut};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::Message;

use super::{free_port, try_get, Client, HttpConn, Node, QUIET, SYS_A, SYS_B, WAIT};

/// The etcd binary (Debian etcd-server 3.4).
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// `server.crypto_key` shared by every node of a test cluster (AES-128).
pub const CRYPTO_KEY: &str = "5ca1ab1e0ddba11c0ffee0ddf00dcafe";
/// `cluster.secret` shared by every node of a test cluster.
pub const CLUSTER_SECRET: &str = "shardcast-test-cluster-secret";
/// A system used only by `wait_mesh`, so its probes never reach a test's clients.
pub const SYS_MESH: &str = "sys-mesh";
/// `cluster.lease_ttl` of the test nodes.
pub const LEASE_TTL: Duration = Duration::from_secs(2);
/// `cluster.request_timeout` of the test nodes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a cluster-wide answer may take: `request_timeout` + 0.5 s.
pub const CALL_LIMIT: Duration = Duration::from_millis(1500);
/// The pause a test leaves after a bind before it changes the group again. A notice
/// reaches the members a group has when it lands on their node; a client that joins the
/// group while an earlier notice is still in transit (a millisecond or so, more on a
/// node-to-node link still being set up) may receive that notice too. The contract does
/// not settle this race, so the tests do not provoke it.
pub const SETTLE: Duration = Duration::from_millis(100);
/// How long `api_timed` waits for an answer at most before calling it a hang.
pub const HANG: Duration = Duration::from_secs(5);

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

/// Whether `pid` runs (exists and is not a zombie).
pub fn process_alive(pid: i32) -> bool {
    matches!(process_state(pid), Some(s) if s != 'Z')
}

fn send_signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}) failed: {}",
        std::io::Error::last_os_error()
    );
}

/// The last `max` bytes of `s` (on a char boundary).
fn tail(s: &str, max: usize) -> &str {
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
// etcd
// ---------------------------------------------------------------------------

/// A private single-member etcd.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    cluster_name: String,
}

impl Etcd {
    /// Starts etcd on free loopback ports and waits until it answers `/health`.
    pub fn start() -> Etcd {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let cluster_name = format!("t{}-{seq}", std::process::id());
        for attempt in 1..=3 {
            let dir = tempfile::tempdir().expect("tempdir for etcd");
            let client_port = free_port();
            let peer_port = free_port();
            let client_url = format!("http://127.0.0.1:{client_port}");
            let peer_url = format!("http://127.0.0.1:{peer_port}");
            let log_path = dir.path().join("etcd.log");
            let log = File::create(&log_path).unwrap();
            let mut cmd = Command::new(ETCD_BIN);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("ETCD") {
                    cmd.env_remove(k);
                }
            }
            cmd.arg("--name")
                .arg("t")
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .arg("--listen-client-urls")
                .arg(&client_url)
                .arg("--advertise-client-urls")
                .arg(&client_url)
                .arg("--listen-peer-urls")
                .arg(&peer_url)
                .arg("--initial-advertise-peer-urls")
                .arg(&peer_url)
                .arg("--initial-cluster")
                .arg(format!("t={peer_url}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {ETCD_BIN}: {e}"));
            let mut etcd = Etcd {
                child: Some(child),
                dir,
                client_port,
                cluster_name: cluster_name.clone(),
            };
            match etcd.wait_healthy(Duration::from_secs(15)) {
                Ok(took) => {
                    eprintln!(
                        "[cluster] etcd {} healthy after {:.2}s",
                        etcd.endpoint(),
                        took.as_secs_f64()
                    );
                    return etcd;
                }
                Err(why) => {
                    let log = etcd.log();
                    etcd.kill();
                    if log.contains("address already in use") && attempt < 3 {
                        continue;
                    }
                    panic!("etcd did not start: {why}\nlog:\n{}", tail(&log, 8000));
                }
            }
        }
        unreachable!()
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("etcd exited ({st})"));
            }
            if self.healthy(Duration::from_millis(500)) {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= timeout {
                return Err(format!("etcd not healthy within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn client_addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The `cluster.name` the nodes of this test join (unique per etcd).
    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// The etcd key prefix of this test's cluster (`/shardcast/<name>/`).
    pub fn cluster_prefix(&self) -> String {
        format!("/shardcast/{}/", self.cluster_name)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("etcd not running").id() as i32
    }

    /// True when `GET /health` answers `{"health":"true"}` within `timeout`.
    pub fn healthy(&self, timeout: Duration) -> bool {
        match try_get(&self.client_addr(), "/health", timeout) {
            Ok(r) => r.status == 200 && r.text().replace(' ', "").contains("\"health\":\"true\""),
            Err(_) => false,
        }
    }

    /// SIGSTOP: etcd stops answering (its sockets stay open). Returns once the process
    /// is stopped.
    pub fn pause(&self) {
        send_signal(self.pid(), libc::SIGSTOP);
        self.wait_state(|s| s == 'T', "stopped");
    }

    /// SIGCONT. Returns once the process runs again.
    pub fn resume(&self) {
        send_signal(self.pid(), libc::SIGCONT);
        self.wait_state(|s| s != 'T', "continued");
    }

    fn wait_state(&self, ok: impl Fn(char) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match process_state(self.pid()) {
                Some(s) if ok(s) => return,
                None => panic!("etcd is gone"),
                Some(s) => assert!(
                    Instant::now() < deadline,
                    "etcd not {what} after 2 s (state {s})"
                ),
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The keys (with their values, as text) under `prefix`, through etcd's v3 JSON
    /// gateway. For diagnostics: the key layout is a design choice, not the contract.
    pub fn keys_under(&self, prefix: &str) -> Vec<(String, String)> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut end = prefix.as_bytes().to_vec();
        match end.last_mut() {
            Some(b) if *b < 0xff => *b += 1,
            _ => end = vec![0],
        }
        let body = json!({"key": b64.encode(prefix), "range_end": b64.encode(&end)}).to_string();
        let mut conn = HttpConn::connect(&self.client_addr());
        let bytes = conn.format_request("POST", "/v3/kv/range", &[], body.as_bytes());
        conn.send_raw(&bytes);
        let resp = match conn.read_response(Duration::from_secs(2)) {
            Ok(r) => r,
            Err(e) => return vec![("<etcd range failed>".into(), e)],
        };
        let v = resp.json();
        let decode = |s: &Value| {
            s.as_str()
                .and_then(|s| b64.decode(s).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| (decode(&kv["key"]), decode(&kv["value"])))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The cluster's keys, one per line, for failure messages.
    pub fn dump(&self) -> String {
        self.keys_under(&self.cluster_prefix())
            .into_iter()
            .map(|(k, v)| format!("  {k} = {v}\n"))
            .collect()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our unreaped child. SIGKILL also ends a stopped process;
            // the SIGCONT first just makes sure a test's pause() never outlives it.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!(
                "---- etcd {} (cluster {}) keys ----\n{}---- etcd log (tail) ----\n{}\n---- end ----",
                self.endpoint(),
                self.cluster_name,
                if process_state(self.pid()) == Some('T') {
                    "  (etcd is paused)\n".to_string()
                } else {
                    self.dump()
                },
                tail(&self.log(), 3000)
            );
        }
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// Cluster nodes
// ---------------------------------------------------------------------------

/// The TOML fragment that puts a node in the cluster of `etcd`, listening for peers on
/// `cluster_port`; `extra` is appended (its keys win).
pub fn cluster_config(etcd: &Etcd, cluster_port: u16, extra: &str) -> String {
    format!(
        "[server]\n\
         crypto_key = \"{CRYPTO_KEY}\"\n\
         [api]\n\
         systems = [\"{SYS_A}\", \"{SYS_B}\", \"{SYS_MESH}\"]\n\
         [cluster]\n\
         enabled = true\n\
         name = \"{name}\"\n\
         listen_addr = \"127.0.0.1:{cluster_port}\"\n\
         advertise_addr = \"127.0.0.1:{cluster_port}\"\n\
         etcd_endpoints = [\"{endpoint}\"]\n\
         secret = \"{CLUSTER_SECRET}\"\n\
         lease_ttl = \"{ttl}ms\"\n\
         request_timeout = \"{rt}ms\"\n\
         {extra}\n",
        name = etcd.cluster_name(),
        endpoint = etcd.endpoint(),
        ttl = LEASE_TTL.as_millis(),
        rt = REQUEST_TIMEOUT.as_millis(),
    )
}

/// A shardcast node in cluster mode. Derefs to `Node`.
pub struct ClusterNode {
    pub node: Node,
    pub cluster_port: u16,
}

impl ClusterNode {
    /// Starts a node in the cluster of `etcd` and waits until `/readyz` is 200.
    pub fn start(etcd: &Etcd, extra: &str) -> ClusterNode {
        let cluster_port = free_port();
        let start = Instant::now();
        let node = Node::start(&cluster_config(etcd, cluster_port, extra));
        eprintln!(
            "[cluster] node http {} cluster 127.0.0.1:{cluster_port} ready after {:.2}s",
            node.addr(),
            start.elapsed().as_secs_f64()
        );
        ClusterNode { node, cluster_port }
    }

    /// The node-to-node address (`cluster.listen_addr`).
    pub fn cluster_addr(&self) -> String {
        format!("127.0.0.1:{}", self.cluster_port)
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

    /// Whether the process still runs.
    pub fn alive(&self) -> bool {
        process_alive(self.pid())
    }

    /// SIGTERM (SIGKILL after 15 s) if it runs, then starts it again with the same config
    /// (same cluster port, a new http port) and waits until ready.
    pub fn restart(&mut self) {
        self.node.restart();
    }

    /// `GET /readyz` status, None when the node does not answer within 1 s.
    pub fn readyz(&self) -> Option<u16> {
        try_get(self.addr(), "/readyz", Duration::from_secs(1))
            .ok()
            .map(|r| r.status)
    }
}

impl Deref for ClusterNode {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl DerefMut for ClusterNode {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.node
    }
}

/// An etcd and the nodes of one test cluster. `cluster[i]` is node i+1 of the tests'
/// prose ("node 1" is `cluster[0]`).
pub struct Cluster {
    // Declared first: the nodes die before their etcd.
    pub nodes: Vec<ClusterNode>,
    pub etcd: Etcd,
}

impl Cluster {
    /// An etcd and `n` nodes with the default test settings; returns once every node
    /// reaches every other (`wait_mesh`).
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, "")
    }

    /// Like `start`, every node's config extended with `extra`.
    pub fn start_with(n: usize, extra: &str) -> Cluster {
        let etcd = Etcd::start();
        let start = Instant::now();
        let nodes = start_nodes(&etcd, n, extra);
        let cluster = Cluster { nodes, etcd };
        let started = start.elapsed();
        wait_mesh(&cluster.nodes, &cluster.etcd);
        eprintln!(
            "[cluster] {n} nodes ready after {:.2}s, mesh formed after {:.2}s",
            started.as_secs_f64(),
            start.elapsed().as_secs_f64()
        );
        cluster
    }

    /// Starts one more node (no mesh wait); its index.
    pub fn add_node(&mut self, extra: &str) -> usize {
        let node = ClusterNode::start(&self.etcd, extra);
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl Index<usize> for Cluster {
    type Output = ClusterNode;
    fn index(&self, i: usize) -> &ClusterNode {
        &self.nodes[i]
    }
}

impl IndexMut<usize> for Cluster {
    fn index_mut(&mut self, i: usize) -> &mut ClusterNode {
        &mut self.nodes[i]
    }
}

/// An etcd and `n` formed nodes with the default test settings.
pub fn start_cluster(n: usize) -> Cluster {
    Cluster::start(n)
}

/// Starts `n` nodes in parallel; a failure of one kills the others and re-raises it.
pub fn start_nodes(etcd: &Etcd, n: usize, extra: &str) -> Vec<ClusterNode> {
    let results: Vec<std::thread::Result<ClusterNode>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| s.spawn(|| ClusterNode::start(etcd, extra)))
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let mut nodes = Vec::new();
    let mut failure = None;
    for r in results {
        match r {
            Ok(node) => nodes.push(node),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        drop(nodes);
        std::panic::resume_unwind(e);
    }
    nodes
}

/// Waits (at most 10 s) until a `send_to_system` of `SYS_MESH` issued on any node reaches
/// a client connected to every node; panics naming the pair that does not connect.
pub fn wait_mesh(nodes: &[ClusterNode], etcd: &Etcd) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut clients: Vec<Client> = nodes.iter().map(|n| n.ws(SYS_MESH)).collect();
    for (i, sender) in nodes.iter().enumerate() {
        let prefix = format!("mesh-from-{i}-");
        let mut reached = vec![false; nodes.len()];
        let mut attempt = 0;
        while reached.iter().any(|r| !r) {
            if Instant::now() >= deadline {
                let missing: Vec<usize> = (0..nodes.len()).filter(|j| !reached[*j]).collect();
                panic!(
                    "the cluster did not form within 10 s: send_to_system on node {} does not \
                     reach the clients of nodes {:?} (1-based)\netcd keys:\n{}",
                    i + 1,
                    missing.iter().map(|j| j + 1).collect::<Vec<_>>(),
                    etcd.dump()
                );
            }
            attempt += 1;
            let body = json!({"msg": format!("{prefix}{attempt}")});
            // Errors and slow answers only mean "not yet".
            let _ = try_api(sender, "/api/send_to_system", Some(SYS_MESH), &body, HANG);
            for (j, c) in clients.iter_mut().enumerate() {
                if reached[j] {
                    continue;
                }
                let until = Instant::now() + Duration::from_millis(300);
                while let Some(v) = c.recv_json(until.saturating_duration_since(Instant::now())) {
                    if v["msg"].as_str().is_some_and(|m| m.starts_with(&prefix)) {
                        reached[j] = true;
                        break;
                    }
                }
            }
        }
    }
    for c in clients.iter_mut() {
        c.close_cleanly();
    }
}

// ---------------------------------------------------------------------------
// Timed API calls
// ---------------------------------------------------------------------------

/// One API answer with its timing.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// When the request was about to be sent.
    pub sent_at: Instant,
    /// From `sent_at` to the complete answer.
    pub took: Duration,
}

impl Answer {
    /// The success envelope's `data` (asserts HTTP 200, code 0, msg success).
    pub fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "expected HTTP 200: {}", self.body);
        assert_eq!(
            self.body["code"],
            json!(0),
            "expected code 0: {}",
            self.body
        );
        assert_eq!(
            self.body["msg"],
            json!("success"),
            "expected success: {}",
            self.body
        );
        self.body["data"].clone()
    }

    pub fn is_ok(&self) -> bool {
        self.status == 200 && self.body["code"] == json!(0)
    }

    /// Whether this is the failure `{"code":-1,"msg":msg}` with HTTP `status`.
    pub fn is_err(&self, status: u16, msg: &str) -> bool {
        self.status == status && self.body["code"] == json!(-1) && self.body["msg"] == json!(msg)
    }

    /// `data.partial == true`.
    pub fn partial(&self) -> bool {
        self.body["data"]["partial"] == json!(true)
    }

    /// Asserts the answer came within `limit`.
    pub fn within(&self, limit: Duration, what: &str) -> &Answer {
        assert!(
            self.took <= limit,
            "{what}: answered after {:.3}s, limit {:.3}s: {}",
            self.took.as_secs_f64(),
            limit.as_secs_f64(),
            self.body
        );
        self
    }
}

/// POST `path` on a fresh connection; Err when the node gives no complete answer within
/// `limit` (a node that refuses the connection makes it panic).
pub fn try_api(
    node: &Node,
    path: &str,
    system_id: Option<&str>,
    body: &Value,
    limit: Duration,
) -> Result<Answer, String> {
    let sent_at = Instant::now();
    let mut conn = HttpConn::connect(node.addr());
    let headers: Vec<(&str, &str)> = system_id.map(|s| ("SystemId", s)).into_iter().collect();
    let bytes = conn.format_request("POST", path, &headers, body.to_string().as_bytes());
    conn.try_send_raw(&bytes).map_err(|e| e.to_string())?;
    let resp = conn.read_response(limit)?;
    let took = sent_at.elapsed();
    let body = serde_json::from_slice(&resp.body).map_err(|e| {
        format!(
            "HTTP {} body is not JSON ({e}): {:?}",
            resp.status,
            resp.text()
        )
    })?;
    Ok(Answer {
        status: resp.status,
        body,
        sent_at,
        took,
    })
}

/// POST `path` and measure it; panics when no answer arrives within `HANG` (5 s).
pub fn api_timed(node: &Node, path: &str, system_id: Option<&str>, body: &Value) -> Answer {
    try_api(node, path, system_id, body, HANG)
        .unwrap_or_else(|e| panic!("POST {path} {body} on {}: {e}", node.addr()))
}

/// Asserts `data` has no `partial` key (an answer that left no node out).
pub fn assert_not_partial(data: &Value, what: &str) {
    assert!(
        data.get("partial").is_none(),
        "{what}: every node is up, yet the answer carries partial: {data}"
    );
}

// ---------------------------------------------------------------------------
// WebSocket helpers
// ---------------------------------------------------------------------------

/// Connects to `/ws?systemId=<system_id>`: Ok(client) on a welcome, Err(first frame) on a
/// refusal (`-1001`).
pub fn try_ws(node: &Node, system_id: &str) -> Result<Client, Value> {
    let mut socket = node.ws_connect(&format!("/ws?systemId={system_id}"));
    socket.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    loop {
        match socket.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str().trim_end())
                    .unwrap_or_else(|e| panic!("first frame is not JSON ({e}): {t:?}"));
                if v["code"] == json!(0) {
                    let id = v["data"]["clientId"]
                        .as_str()
                        .unwrap_or_else(|| panic!("welcome without clientId: {v}"))
                        .to_string();
                    return Ok(Client {
                        client_id: id,
                        socket,
                    });
                }
                return Err(v);
            }
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
            Ok(other) => panic!("unexpected first message {other:?}"),
            Err(e) => panic!("no first frame from {}: {e}", node.addr()),
        }
    }
}

/// Reads frames until one with `message_id` arrives (asserting nothing else arrives
/// first); returns it.
pub fn expect_message(c: &mut Client, message_id: &str, timeout: Duration) -> Value {
    let id = c.client_id.clone();
    let v = c
        .recv_json(timeout)
        .unwrap_or_else(|| panic!("client {id}: message {message_id} did not arrive"));
    assert_eq!(
        v["messageId"],
        json!(message_id),
        "client {id}: expected message {message_id}, got {v}"
    );
    v
}

/// Reads frames until every id of `message_ids` arrived exactly once, then watches for
/// `QUIET` that nothing more comes. Panics on a duplicate, an unexpected frame, or a
/// missing message after `timeout`. Returns the frames in arrival order.
pub fn expect_messages(c: &mut Client, message_ids: &[String], timeout: Duration) -> Vec<Value> {
    let wanted: HashSet<&str> = message_ids.iter().map(|s| s.as_str()).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut frames = Vec::new();
    let deadline = Instant::now() + timeout;
    while seen.len() < wanted.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = c.recv_json(left).unwrap_or_else(|| {
            let missing: Vec<&&str> = wanted.iter().filter(|m| !seen.contains(**m)).collect();
            panic!(
                "client {}: {} of {} messages missing after {timeout:?}: {missing:?}",
                c.client_id,
                missing.len(),
                wanted.len()
            )
        });
        let mid = v["messageId"].as_str().unwrap_or("").to_string();
        assert!(
            wanted.contains(mid.as_str()),
            "client {}: unexpected frame {v}",
            c.client_id
        );
        assert!(
            seen.insert(mid),
            "client {}: message delivered twice: {v}",
            c.client_id
        );
        frames.push(v);
    }
    c.expect_silence(QUIET);
    frames
}

/// The message id of a send answer.
pub fn message_id_of(data: &Value) -> String {
    super::assert_message_id(&data["messageId"])
}

// ---------------------------------------------------------------------------
// Raw bytes for the cluster port
// ---------------------------------------------------------------------------

/// `n` pseudo-random bytes from a fixed `seed` (xorshift64*): reproducible garbage.
pub fn garbage(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Connects to `addr` and writes `bytes` (a write error — the peer closed early — is
/// ignored); returns the stream for `wait_eof`.
pub fn write_raw(addr: &str, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.write_all(bytes);
    let _ = s.flush();
    s
}
