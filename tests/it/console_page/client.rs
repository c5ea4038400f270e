//! The JavaScript client (`/shardcast.js`, docs/js-client.md) in headless Chromium,
//! scripted by `tests/console/client.mjs` and `tests/console/resume.mjs`: imported from
//! another origin, an ack round trip, a reconnect after the node restarts (behind a
//! relay, at the same address), a refusal that is not retried; and, with `ws.resume_window` on, a session
//! resumed after the network between the browser and the node failed (a `CutProxy`
//! cut), in the client and in the console, which keep their clientId and get the
//! pushes sent during the gap (and report the loss when the node could not keep them
//! all).

use crate::support::{cut_proxy::CutProxy, node::Node, process::Group};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// What a script may ask of the network between it and `node` (through
/// `proxy`): `CUT` it, `HEAL` it, `RESTART` the node — on a new port: the
/// script knows only the proxy's.
pub(super) fn network<'a>(
    proxy: &'a CutProxy,
    node: &'a mut Node,
) -> impl FnMut(&str) -> Option<String> + 'a {
    move |line| match line {
        "CUT" => {
            proxy.cut();
            Some("CUT".into())
        }
        "HEAL" => {
            proxy.heal();
            Some("HEALED".into())
        }
        "RESTART" => {
            node.restart();
            proxy.set_upstream(node.addr());
            Some("RESTARTED".into())
        }
        _ => None,
    }
}

/// Runs `node <script> <args…>` in `tests/console`; each line it prints is
/// passed to `answer`, and what that returns is written back on its stdin.
/// Asserts it exits with success and printed every one of `steps`. (A script
/// that drives Chromium: call `require_browser_tools` first.)
pub(super) fn run_script(
    script: &str,
    args: &[String],
    steps: &[&str],
    mut answer: impl FnMut(&str) -> Option<String>,
) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    // A process group: node (and its Chromium), killed together if the test ends first.
    let mut child = Group::spawn(
        Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .expect("run node");
    let mut stdin = child.0.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.0.stdout.take().expect("stdout"));
    let mut output = String::new();
    for line in stdout.lines() {
        let line = line.expect("a line");
        output.push_str(&line);
        output.push('\n');
        if let Some(reply) = answer(&line) {
            writeln!(stdin, "{reply}").expect("answer the script");
        }
    }
    let status = child.0.wait().expect("wait for node");
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    eprintln!("{output}");
    assert!(status.success(), "{script} failed:\n{output}{err}");
    for step in steps {
        assert!(output.contains(step), "no `{step}`:\n{output}{err}");
    }
}

#[test]
fn the_js_client_acks_reconnects_and_reports_refusals() {
    super::browser::require_browser_tools();
    let mut node = Node::start("[ws]\nclient_send = \"all\"\n");
    // Behind a relay, so that the node can restart on a new port (its old one
    // may not be free again at once) at an address the browser keeps using.
    let proxy = CutProxy::start(node.addr());
    let base = format!("http://{}", proxy.addr());
    let steps = [
        "ack round trip ok",
        "RESTART",
        "reconnected as",
        "refusal: ",
        "PASS",
    ];
    run_script("client.mjs", &[base], &steps, |line| {
        (line == "RESTART").then(|| {
            node.restart();
            proxy.set_upstream(node.addr());
            "RESTARTED".to_string()
        })
    });
}

#[test]
fn the_js_client_and_the_console_resume_after_the_network_fails() {
    super::browser::require_browser_tools();
    let mut node = Node::start(
        "[server]\nworkers = 1\n[console]\nenabled = true\n[ws]\nresume_window = \"30s\"\nresume_buffer_bytes = 4096\nresume_max_bytes = 8000\n",
    );
    let proxy = CutProxy::start(node.addr());
    let args = [
        format!("http://{}", node.addr()),
        format!("http://{}", proxy.addr()),
    ];
    let steps = [
        "CUT",
        "HEAL",
        "client resumed",
        "console resumed",
        "client resumed as",
        "again, not recovered",
        "recovered: no",
        "RESTART",
        "client reconnected as a new clientId",
        "console reconnected as a new clientId",
        "PASS",
    ];
    run_script("resume.mjs", &args, &steps, network(&proxy, &mut node));
    // The client tried again while the network was down, and resumed after.
    assert!(proxy.refused() > 0, "no connect attempt during the cut");
}
