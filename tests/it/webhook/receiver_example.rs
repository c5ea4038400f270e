//! The Python webhook receiver of docs/api.md §2.2, run as the document has it (the
//! code block is read from the file, not copied here): in open mode it takes the
//! node's unsigned events, in token mode it takes the signed ones and refuses an
//! unsigned request with 401, it handles an `eventId` once, and it handles events
//! concurrently — one request it is still reading does not hold up the node's events,
//! which arrive with no retry.
//!
//! Needs `python3` (3.7 or later: `ThreadingHTTPServer`).

use crate::support::{
    api::expect_ok,
    docs,
    http::HttpConn,
    node::{free_port, Node},
    process::Group,
    WAIT,
};
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-secret-for-the-receiver-example";

/// The first ```python block of docs/api.md §2.2.
fn documented_receiver() -> String {
    docs::block("docs/api.md", "### 2.2 Webhooks", "```python\n")
}

/// The documented receiver running on a free port; killed on drop.
struct Example {
    /// Killed with its process group on drop.
    _child: Group,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Example {
    fn start(secret: Option<&str>) -> Example {
        Example::start_on(secret, free_port())
    }

    fn start_on(secret: Option<&str>, port: u16) -> Example {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("receiver.py");
        std::fs::write(&script, documented_receiver()).expect("write receiver.py");
        let out = dir.path().join("out.txt");
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .env("PORT", port.to_string())
            .env_remove("WEBHOOK_SECRET")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("out.txt"))
            .stderr(Stdio::inherit());
        if let Some(secret) = secret {
            cmd.env("WEBHOOK_SECRET", secret);
        }
        // A process group: `python3` may be a wrapper (pyenv) that runs the
        // interpreter as a child.
        let mut child = Group::spawn(&mut cmd).expect("run python3");
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = child.0.try_wait() {
                panic!("the documented receiver exited ({st})");
            }
            assert!(Instant::now() < deadline, "the receiver does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Example {
            _child: child,
            port,
            out,
            _dir: dir,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr())
    }

    /// What it printed so far, one line per event handled.
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until it printed `line`.
    fn wait_line(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.lines().iter().any(|l| l == line) {
            assert!(
                Instant::now() < deadline,
                "the receiver did not print {line:?} in 10 s; it printed {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A request it starts reading and never gets the body of: one of its handlers
    /// waits on it for as long as the connection is open.
    fn hold_a_handler(&self) -> TcpStream {
        let mut s = TcpStream::connect(self.addr()).expect("connect to the receiver");
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            .expect("write");
        std::thread::sleep(Duration::from_millis(100));
        s
    }

    fn post(&self, body: &str, headers: &[(&str, &str)]) -> u16 {
        let mut c = HttpConn::connect(&self.addr());
        c.request("POST", "/", headers, body.as_bytes()).status
    }
}

/// A client connects and says goodbye; the receiver prints both events, and the node
/// delivered them at the first attempt, dropping nothing.
fn connect_and_leave(node: &Node, example: &Example, system: &str) {
    let mut c = node.ws(system);
    example.wait_line(&format!("connect {} \"\"", c.client_id));
    c.close_cleanly();
    example.wait_line(&format!("disconnect {} client_closed", c.client_id));
    node.wait_metric(
        "shardcast_webhook_delivered_total",
        WAIT,
        "two deliveries",
        |n| n >= 2.0,
    );
    let m = node.metrics();
    let retried = m.sum("shardcast_webhook_retries_total");
    let dropped = m
        .try_sum_where("shardcast_webhook_dropped_total", &[])
        .unwrap_or(0.0);
    assert_eq!((retried, dropped), (0.0, 0.0), "{m}");
}

#[test]
fn the_documented_receiver_works_in_open_mode_concurrently_and_once_per_event_id() {
    let example = Example::start(None);
    let node = Node::start(&format!(
        "[webhook]\nurl = \"{}\"\ntimeout = \"1s\"\n",
        example.url()
    ));
    // A single-threaded server would read this request to its end before anything
    // else: the node's events would time out and be retried.
    let held = example.hold_a_handler();
    connect_and_leave(&node, &example, crate::support::SYS_A);
    drop(held);

    // The same event twice (a retry after a late answer): handled once.
    let event = json!({"event": "connect", "eventId": "0123456789abcdef0123456789abcdef",
        "systemId": "sys-a", "clientId": "dup", "userId": "", "groups": [], "time": 1})
    .to_string();
    assert_eq!(example.post(&event, &[]), 204);
    assert_eq!(example.post(&event, &[]), 204, "a repeat is acknowledged");
    example.wait_line("connect dup \"\"");
    std::thread::sleep(Duration::from_millis(200));
    let dups = example
        .lines()
        .iter()
        .filter(|l| l.contains(" dup "))
        .count();
    assert_eq!(dups, 1, "{:?}", example.lines());
}

#[test]
fn the_documented_receiver_checks_signatures_in_token_mode() {
    // The node first, for the system's secret; then the receiver, at its webhook.url.
    let port = free_port();
    let node = Node::start(&format!(
        "[api]\nauth = \"token\"\nadmin_token = \"{ADMIN}\"\nsystems = []\n\
         [webhook]\nurl = \"http://127.0.0.1:{port}/\"\ntimeout = \"1s\"\n"
    ));
    let d = expect_ok(node.api_with_headers(
        "/api/register",
        &[("AdminToken", ADMIN)],
        &json!({"systemId": "shop"}).to_string(),
    ));
    let secret = d["token"]
        .as_str()
        .expect("the system's secret")
        .to_string();
    let example = Example::start_on(Some(&secret), port);
    connect_and_leave(&node, &example, "shop");
    let forged = json!({"event": "connect", "eventId": "ffffffffffffffffffffffffffffffff",
        "systemId": "shop", "clientId": "forged", "userId": "", "groups": [], "time": 1})
    .to_string();
    assert_eq!(example.post(&forged, &[]), 401, "unsigned in token mode");
    let wrong = [("X-Shardcast-Signature", "sha256=00")];
    assert_eq!(example.post(&forged, &wrong), 401, "a wrong signature");
    assert!(!example.lines().iter().any(|l| l.contains("forged")));
}
