//! The Node.js example of docs/js-client.md, run as the document has it (the code block
//! is read from the file) on this machine's Node.js, with the `ws` package that
//! `tests/console/package-lock.json` pins and the client a node serves at
//! `/shardcast.js`: it connects, reads `clientSend` from the welcome, and its `send()`
//! is refused at once under `ws.client_send = "off"` (instead of waiting `ackTimeout`
//! for an ack that never comes) and acked under `"all"`.
//!
//! Needs `node` (18 or later) and `npm ci --prefix tests/console` (scripts/test.sh
//! does both); no browser.

use crate::support::{docs, node::Node};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the example may take; `ackTimeout` is 10 s.
const LIMIT: Duration = Duration::from_secs(8);

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// The ```js block of the "Node.js" section of docs/js-client.md.
fn documented_example() -> String {
    docs::block("docs/js-client.md", "\n## Node.js", "```js\n")
}

/// Runs the example against `node` (system `demo`); its output, after asserting it
/// exited with success within `LIMIT`.
fn run_example(node: &Node) -> String {
    let ws = console_dir().join("node_modules/ws");
    assert!(
        ws.is_dir(),
        "{} is missing: run npm ci --prefix tests/console (scripts/test.sh does)",
        ws.display()
    );
    // Inside tests/console, so that `import … from 'ws'` finds its node_modules.
    let dir = tempfile::tempdir_in(console_dir()).expect("tempdir");
    let served = node.get("/shardcast.js");
    assert_eq!(served.status, 200);
    std::fs::write(dir.path().join("shardcast.mjs"), &served.body).expect("shardcast.mjs");
    std::fs::write(dir.path().join("example.mjs"), documented_example()).expect("example.mjs");
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg("example.mjs")
        .current_dir(dir.path())
        .env("SHARDCAST_URL", format!("ws://{}/ws", node.addr()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the example still ran after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    eprintln!("[node example] {:?}:\n{out}{err}", started.elapsed());
    assert!(
        status.success(),
        "the example failed ({status}):\n{out}{err}"
    );
    out
}

fn node_with(client_send: &str) -> Node {
    Node::start(&format!(
        "[api]\nsystems = [\"demo\"]\n[ws]\nclient_send = \"{client_send}\"\n"
    ))
}

#[test]
fn the_documented_node_example_is_refused_at_once_where_clients_may_not_send() {
    let node = node_with("off");
    let out = run_example(&node);
    assert!(out.contains("clientSend off"), "{out}");
    assert!(
        out.contains("refused: shardcast: this node does not route client messages"),
        "{out}"
    );
}

#[test]
fn the_documented_node_example_is_acked_where_clients_may_send() {
    let node = node_with("all");
    let out = run_example(&node);
    assert!(out.contains("clientSend all"), "{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("sent as "))
        .unwrap_or_else(|| panic!("no ack:\n{out}"));
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{out}"
    );
}
