//! The harness of the black-box tests, one file per kind of thing:
//!
//! - `node`: one shardcast process — the binary, free ports, the config file,
//!   start / signals / restart / exit, the node's log.
//! - `http`: a small HTTP/1.1 client (keep-alive, pipelining, raw requests).
//! - `api`: the push API on a `Node` — calls, the envelope checks, timed calls.
//! - `ws`: the WebSocket client (tungstenite) — frames, closes, silences, notices.
//! - `raw_frames`: raw sockets and hand-made bytes — upgrades and WebSocket frames
//!   written and read by hand, sockets with odd options, garbage.
//! - `raw_ws`: a raw WebSocket client that can be reset and resumed.
//! - `deflate`: permessage-deflate by hand — a raw client that offers it, messages
//!   deflated and inflated with flate2, decompression bombs.
//! - `metrics`: `/metrics` parsed, metric names matched exactly.
//! - `cluster`: a private etcd and several nodes in cluster mode.
//! - `crowd`: thousands of WebSocket clients held by a child process, reading or not.
//! - `cut_proxy`: a TCP relay in front of a node that a test cuts (the network failing).
//! - `receiver`: a webhook receiver.
//! - `stall`: one core of a node stopped (ptrace) while the others run.
//! - `process`: programs with children of their own, killed as a process group.
//! - `docs`: code blocks read from the documents, to run as they are written.

pub mod api;
pub mod cluster;
pub mod crowd;
pub mod cut_proxy;
pub mod deflate;
pub mod docs;
pub mod http;
pub mod link_proxy;
pub mod metrics;
pub mod node;
pub mod process;
pub mod raw_frames;
pub mod raw_ws;
pub mod receiver;
pub mod stall;
pub mod ws;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The two systems every test node registers at startup (`api.systems`).
pub const SYS_A: &str = "sys-a";
pub const SYS_B: &str = "sys-b";

/// Default wait for something that should happen "at once".
pub const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing more arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(400);

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

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

/// Sets its flag when dropped: made at the top of a `std::thread::scope` whose threads
/// run until the flag is set, it stops them when the test panics, so the scope ends and
/// the panic is reported (and the test's processes are stopped) instead of a hang.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
