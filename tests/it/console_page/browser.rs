//! The console page (docs/api.md §2.3) driven in a real browser: headless Chromium,
//! scripted by `tests/console/e2e.mjs` (playwright-core). Two users connect as
//! `sys-a`, join `room1` and chat; both logs show the message with its sender,
//! the node panel counts the connections, and the page fits a 390 px phone,
//! which joins late and shows the room's earlier messages (group history,
//! docs/api.md §9: the node keeps the history of `room` groups).
//! Once with the node's default `ws.client_send = "off"` (the page sends
//! through the HTTP API), once with `"group"` (the page sends client messages
//! over the WebSocket, docs/api.md §2.1, and shows their acks).
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/console`, both done by
//! `scripts/setup.sh`. With `SHARDCAST_UPDATE_SCREENSHOT=1` the screenshot
//! replaces `tests/console/screenshot.png` (the README's picture):
//! `SHARDCAST_UPDATE_SCREENSHOT=1 cargo test --test it console_page::browser`.

use crate::support::{node::Node, process::Group};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The script gives up by itself after 60 s; this is the backstop.
const HANG: Duration = Duration::from_secs(120);

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// Fails (never skips) when the browser or the driver is missing.
pub(super) fn require_browser_tools() {
    let driver = console_dir().join("node_modules/playwright-core");
    let mut missing = Vec::new();
    if !driver.is_dir() {
        missing.push(format!(
            "{} (npm ci --prefix tests/console)",
            driver.display()
        ));
    }
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (Debian package chromium)"));
    }
    assert!(
        missing.is_empty(),
        "the browser test needs {}: run scripts/setup.sh",
        missing.join(" and ")
    );
}

/// Runs `node e2e.mjs <base> <png> <mode>`, killing it (and its Chromium) after
/// `HANG`. Returns (exited successfully, its output, how long it took).
fn run_e2e(base: &str, png: &Path, mode: &str) -> (bool, String, Duration) {
    let out_path = png.with_extension("log");
    let out = File::create(&out_path).expect("create e2e log");
    let started = Instant::now();
    // A process group: node and the browser it launches.
    let mut child = Group::spawn(
        Command::new("node")
            .arg("e2e.mjs")
            .arg(base)
            .arg(png)
            .arg(mode)
            .current_dir(console_dir())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out),
    )
    .unwrap_or_else(|e| panic!("cannot run `node` ({e}): run scripts/setup.sh"));
    let (ok, killed) = loop {
        if let Some(status) = child.0.try_wait().expect("wait for node") {
            break (status.success(), false);
        }
        if started.elapsed() > HANG {
            child.kill();
            break (false, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let mut text = std::fs::read_to_string(&out_path).unwrap_or_default();
    if killed {
        text.push_str(&format!("\nkilled after {} s\n", HANG.as_secs()));
    }
    (ok, text, took)
}

/// Starts a node with `config`, runs the script against it expecting the send
/// path `mode` (`http` or `ws`), and checks that it passed and wrote its
/// screenshot to `<CARGO_TARGET_TMPDIR>/<png_name>`, which it returns. With
/// `mode` `ws`, Chromium's client messages must have come compressed
/// (permessage-deflate, on by default, docs/api.md §10) and been inflated.
fn chat_in_the_browser(config: &str, mode: &str, png_name: &str) -> PathBuf {
    require_browser_tools();
    let node = Node::start(config);
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join(png_name);
    let _ = std::fs::remove_file(&png);

    let (ok, output, took) = run_e2e(&format!("http://{}", node.addr()), &png, mode);
    eprintln!(
        "{output}browser test ({mode}) took {:.1} s",
        took.as_secs_f64()
    );
    assert!(ok, "the console failed in the browser ({mode}):\n{output}");
    if mode == "ws" {
        let inflated = node.metric("shardcast_deflate_inbound_messages_total");
        assert!(
            inflated >= 1.0,
            "Chromium's client messages did not come compressed: deflate not negotiated?"
        );
    }

    let bytes = std::fs::read(&png).unwrap_or_default();
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "no screenshot at {} ({} bytes)",
        png.display(),
        bytes.len()
    );
    png
}

/// The console's rooms keep history, as in the shipped config.
const ROOMS: &str = "[history]\ngroups = [{ prefix = \"room\", size = 50, ttl = \"10m\" }]\n";

#[test]
fn two_browsers_chat_through_the_console() {
    let config = format!("[console]\nenabled = true\n{ROOMS}");
    let png = chat_in_the_browser(&config, "http", "console.png");
    if std::env::var("SHARDCAST_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let dest = console_dir().join("screenshot.png");
        std::fs::copy(&png, &dest).expect("copy the screenshot");
        eprintln!("updated {}", dest.display());
    }
}

#[test]
fn two_browsers_chat_with_client_messages() {
    chat_in_the_browser(
        &format!("[console]\nenabled = true\n[ws]\nclient_send = \"group\"\n{ROOMS}"),
        "ws",
        "console-ws.png",
    );
}
