//! Cluster harness: a private etcd per test and shardcast nodes in cluster mode.
//!
//! - `Etcd::start()` runs `/usr/bin/etcd` (3.4) on two free loopback ports (client and
//!   peer, never handed out twice in this test process) with a temporary data directory
//!   and waits until `GET /health` answers `{"health":"true"}`. `pause()` / `resume()`
//!   send SIGSTOP / SIGCONT; Drop sends SIGCONT, then SIGKILL, and reaps it. Each `Etcd`
//!   also names the cluster (`cluster.name`) its nodes join: the name of the test that
//!   started it plus the process id and a sequence number, so no two tests (and no two
//!   runs) share a cluster. `assert_running()` fails clearly, with etcd's log, when the
//!   etcd process has exited; the harness calls it before it relies on etcd.
//! - `ClusterNode::start(&etcd, extra)` starts a shardcast node (through `Node`, so every
//!   helper of the standalone tests works on it) with `[cluster] enabled = true`, a free
//!   `listen_addr` (= `advertise_addr`), the shared `cluster.secret`, the shared
//!   `server.crypto_key`, `lease_ttl = "2s"`, `request_timeout = "1s"`, and waits until
//!   `/readyz` answers 200 (cluster: joined). `extra` (same format as `build_config`'s)
//!   overrides any of these keys.
//! - `Cluster::start(n)` / `start_cluster(n)`: an etcd and `n` nodes started in parallel,
//!   then `wait_mesh` — every node's `send_to_system` reaches a client on every node — so
//!   that a test starts from a formed cluster (a node learns its peers through the etcd
//!   watch a moment after they became ready).
//!
//! Everything is killed and reaped on drop; ports come from `free_port`, directories from
//! `tempfile`, so the tests run in parallel.

use std::fs::File;
use std::ops::{Deref, DerefMut, Index, IndexMut};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::api::{try_api, HANG};
use super::http::{try_get, HttpConn};
use super::node::{free_port, process_state, send_signal, tail, Node, CRYPTO_KEY};
use super::ws::Client;
use super::{SYS_A, SYS_B};

/// The etcd binary (Debian etcd-server 3.4).
const ETCD_BIN: &str = "/usr/bin/etcd";
/// `cluster.secret` shared by every node of a test cluster.
pub const CLUSTER_SECRET: &str = "shardcast-test-cluster-secret";
/// A system used only by `wait_mesh`, so its probes never reach a test's clients. Its
/// clients still reach a webhook receiver configured for all systems: webhook tests
/// filter the events by their own clientIds.
const SYS_MESH: &str = "sys-mesh";
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

// ---------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------

/// A private single-member etcd.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    cluster_name: String,
}

/// A cluster name for the test running on this thread: its last path segment (the test
/// function's name, as libtest names the thread), the process id and `seq`.
fn cluster_name_for_this_test(seq: u32) -> String {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    let short: String = test
        .rsplit("::")
        .next()
        .unwrap_or(test)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("{short}-{}-{seq}", std::process::id())
}

impl Etcd {
    /// Starts etcd on free loopback ports and waits until it answers `/health`.
    pub fn start() -> Etcd {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let cluster_name = cluster_name_for_this_test(seq);
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
                peer_port,
                cluster_name: cluster_name.clone(),
            };
            match etcd.wait_healthy(Duration::from_secs(15)) {
                Ok(took) => {
                    eprintln!(
                        "[cluster] etcd {} (cluster {}) healthy after {:.2}s",
                        etcd.endpoint(),
                        etcd.cluster_name,
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

    /// (client port, peer port).
    pub fn ports(&self) -> (u16, u16) {
        (self.client_port, self.peer_port)
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

    /// Whether the etcd process still exists (running or stopped, not a zombie).
    pub fn running(&self) -> bool {
        let Some(child) = self.child.as_ref() else {
            return false;
        };
        matches!(process_state(child.id() as i32), Some(s) if s != 'Z')
    }

    /// Panics with etcd's log when the etcd process has exited: whatever a test sees of
    /// its cluster next would be the consequence, not the cause.
    pub fn assert_running(&self) {
        assert!(
            self.running(),
            "etcd {} (cluster {}) has exited; its log:\n{}",
            self.endpoint(),
            self.cluster_name,
            tail(&self.log(), 8000)
        );
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
        self.assert_running();
        send_signal(self.pid(), libc::SIGSTOP);
        self.wait_state(|s| s == 'T', "stopped");
    }

    /// SIGCONT. Returns once the process runs again.
    pub fn resume(&self) {
        self.assert_running();
        send_signal(self.pid(), libc::SIGCONT);
        self.wait_state(|s| s != 'T', "continued");
    }

    fn wait_state(&self, ok: impl Fn(char) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match process_state(self.pid()) {
                Some(s) if ok(s) => return,
                None | Some('Z') => self.assert_running(),
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

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// A POST to etcd's v3 JSON gateway; its JSON answer (asserts HTTP 200).
    pub fn post(&self, path: &str, body: Value) -> Value {
        self.assert_running();
        let mut conn = HttpConn::connect(&self.client_addr());
        let bytes = conn.format_request("POST", path, &[], body.to_string().as_bytes());
        conn.send_raw(&bytes);
        let resp = conn
            .read_response(Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("etcd {path}: {e}"));
        assert_eq!(resp.status, 200, "etcd {path}: {}", resp.text());
        resp.json()
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

    /// The value stored at `systems/<system>`, as text. Panics when there is none.
    pub fn system_entry(&self, system: &str) -> String {
        let key = format!("{}systems/{system}", self.cluster_prefix());
        self.keys_under(&key)
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("no {key} in etcd:\n{}", self.dump()))
    }

    /// Puts `value` at `systems/<system>` (any bytes for `system`), as anyone with write
    /// access to etcd could.
    pub fn put_system_entry(&self, system: &str, value: &str) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = format!("{}systems/{system}", self.cluster_prefix());
        self.post(
            "/v3/kv/put",
            json!({"key": b64.encode(key), "value": b64.encode(value)}),
        );
    }

    /// The cluster's keys, one per line, for failure messages.
    pub fn dump(&self) -> String {
        if !self.running() {
            return "  (etcd has exited)\n".into();
        }
        if process_state(self.pid()) == Some('T') {
            return "  (etcd is paused)\n".into();
        }
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
                self.dump(),
                tail(&self.log(), 3000)
            );
        }
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// Registry entries
// ---------------------------------------------------------------------------

/// The registry key of a cluster whose `cluster.secret` is `secret`:
/// HMAC-SHA256(secret, "shardcast registry key v2") (docs/cluster.md, "Keys").
fn registry_cipher(secret: &str) -> aes_gcm::Aes256Gcm {
    use aes_gcm::aead::KeyInit;
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(b"shardcast registry key v2");
    let key: [u8; 32] = mac.finalize().into_bytes().into();
    aes_gcm::Aes256Gcm::new(&key.into())
}

/// The value a node of a cluster with `cluster.secret` = `secret` stores at
/// `systems/<system>` for `entry` (docs/cluster.md, "Keys"): `"v2:"` and the base64 of
/// nonce ‖ AES-256-GCM(entry JSON, associated data: the system id) ‖ tag. The nonce is
/// fixed: a test seals each entry once.
pub fn seal_entry(secret: &str, system: &str, entry: &Value) -> String {
    use aes_gcm::aead::AeadInOut;
    let nonce = [0x5e_u8; 12];
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(entry.to_string().as_bytes());
    let tag = registry_cipher(secret)
        .encrypt_inout_detached(&nonce.into(), system.as_bytes(), (&mut sealed[12..]).into())
        .expect("seal");
    sealed.extend_from_slice(&tag);
    format!(
        "v2:{}",
        base64::engine::general_purpose::STANDARD.encode(sealed)
    )
}

/// The entry sealed in `value` for `system` under `secret`; panics when it does not
/// open.
pub fn open_entry(secret: &str, system: &str, value: &str) -> Value {
    use aes_gcm::aead::AeadInOut;
    let text = value
        .strip_prefix("v2:")
        .unwrap_or_else(|| panic!("not a sealed entry: {value}"));
    let mut sealed = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64");
    let (nonce, rest) = sealed.split_at_mut(12);
    let (body, tag) = rest.split_at_mut(rest.len() - 16);
    let nonce: [u8; 12] = (&*nonce).try_into().unwrap();
    let tag: [u8; 16] = (&*tag).try_into().unwrap();
    registry_cipher(secret)
        .decrypt_inout_detached(&nonce.into(), system.as_bytes(), body.into(), &tag.into())
        .unwrap_or_else(|_| panic!("the entry of {system} does not open"));
    serde_json::from_slice(body).expect("the entry is JSON")
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
    /// Starts a node in the cluster of `etcd` and waits until `/readyz` is 200. A cluster
    /// port taken by someone else meanwhile is replaced by another free one.
    pub fn start(etcd: &Etcd, extra: &str) -> ClusterNode {
        etcd.assert_running();
        let start = Instant::now();
        for attempt in 1..=3 {
            let cluster_port = free_port();
            match Node::try_start(&cluster_config(etcd, cluster_port, extra), &[]) {
                Ok(node) => {
                    eprintln!(
                        "[cluster] node http {} cluster 127.0.0.1:{cluster_port} ready after \
                         {:.2}s",
                        node.addr(),
                        start.elapsed().as_secs_f64()
                    );
                    return ClusterNode { node, cluster_port };
                }
                Err(why) => {
                    etcd.assert_running();
                    let port_taken = why.to_ascii_lowercase().contains("in use");
                    if !(port_taken && attempt < 3) {
                        panic!("cluster node did not start: {why}");
                    }
                }
            }
        }
        unreachable!()
    }

    /// The node-to-node address (`cluster.listen_addr`).
    pub fn cluster_addr(&self) -> String {
        format!("127.0.0.1:{}", self.cluster_port)
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
        Cluster::start_each(&vec![extra; n])
    }

    /// An etcd and one node per entry of `extras`, node i's config extended with
    /// `extras[i]`; returns once every node reaches every other.
    pub fn start_each(extras: &[&str]) -> Cluster {
        let etcd = Etcd::start();
        let start = Instant::now();
        let nodes = start_nodes(&etcd, extras);
        let cluster = Cluster { nodes, etcd };
        let started = start.elapsed();
        wait_mesh(&cluster.nodes, &cluster.etcd);
        eprintln!(
            "[cluster] {} nodes ready after {:.2}s, mesh formed after {:.2}s",
            extras.len(),
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

/// Starts one node per entry of `extras` in parallel; a failure of one kills the others
/// and re-raises it.
fn start_nodes(etcd: &Etcd, extras: &[&str]) -> Vec<ClusterNode> {
    let results: Vec<std::thread::Result<ClusterNode>> = std::thread::scope(|s| {
        let handles: Vec<_> = extras
            .iter()
            .map(|extra| s.spawn(move || ClusterNode::start(etcd, extra)))
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
fn wait_mesh(nodes: &[ClusterNode], etcd: &Etcd) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut clients: Vec<Client> = nodes.iter().map(|n| n.ws(SYS_MESH)).collect();
    for (i, sender) in nodes.iter().enumerate() {
        let prefix = format!("mesh-from-{i}-");
        let mut reached = vec![false; nodes.len()];
        let mut attempt = 0;
        while reached.iter().any(|r| !r) {
            if Instant::now() >= deadline {
                etcd.assert_running();
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
