//! permessage-deflate (docs/api.md §10) from real handshakes and clients: offers
//! answered or declined (never refused), compressed client messages delivered as chat
//! and echoed back compressed within the agreed window, a real deflate client (Node.js
//! `ws`), RSV bits against RFC 7692 closed with 1002, and decompression bombs of both
//! shapes closed with 1009 while another connection works on and the node's peak
//! memory stays flat.

use std::process::{Command, Stdio};

use serde_json::{json, Value};
use shardcast::ws::frame::{FIN, OP_BINARY, OP_CONT, OP_PING, OP_TEXT, RSV1};

use crate::support::deflate::{bomb, deflate, DeflateClient, ANSWER};
use crate::support::node::{proc_status_kib, Node};
use crate::support::{QUIET, SYS_A, WAIT};

const OFFER: &str = "permessage-deflate; client_max_window_bits";

fn with_window(bits: u8) -> String {
    format!("{ANSWER}; server_max_window_bits={bits}")
}

/// A JSON text of about `n` bytes that deflates well.
fn json_text(n: usize) -> String {
    let item = json!({"sku":"SKU-00042","name":"Widget","qty":3,"price":19.99});
    let items: Vec<Value> = (0..n / 60 + 1).map(|_| item.clone()).collect();
    json!({"type":"order.updated","items":items}).to_string()
}

#[test]
fn offers_are_answered_or_declined_and_the_upgrade_is_never_refused() {
    let safari_15_2 = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 \
                       (KHTML, like Gecko) Version/15.2 Safari/605.1.15";
    let node = Node::start("");
    let cases: [(String, Option<String>); 9] = [
        (format!("Sec-WebSocket-Extensions: {OFFER}\r\n"), Some(ANSWER.into())),
        (
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n".into(),
            Some(with_window(10)),
        ),
        // Window 8 cannot be honoured: declined, or the next offer taken.
        (
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n".into(),
            None,
        ),
        (
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, permessage-deflate\r\n"
                .into(),
            Some(ANSWER.into()),
        ),
        // Several header lines are one list, in order.
        (
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n"
                .into(),
            Some(with_window(12)),
        ),
        ("Sec-WebSocket-Extensions: permessage-deflate; bogus\r\n".into(), None),
        ("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=09\r\n".into(), None),
        // Safari 15.0–15.3 ignores client_no_context_takeover: no deflate for it.
        (
            format!("Sec-WebSocket-Extensions: {OFFER}\r\nUser-Agent: {safari_15_2}\r\n"),
            None,
        ),
        (String::new(), None),
    ];
    for (headers, expected) in cases {
        let mut c = DeflateClient::connect(&node, SYS_A, &headers);
        assert_eq!(c.agreed, expected, "{headers:?}");
        let (op, _, welcome) = c.next_message(WAIT).expect("the welcome");
        assert_eq!(op, OP_TEXT);
        let w: Value = serde_json::from_slice(&welcome).unwrap();
        assert_eq!(w["code"], json!(0), "admitted: {headers:?}");
    }
    let kept = DeflateClient::offering(&node, SYS_A, OFFER);
    assert_eq!(kept.agreed.as_deref(), Some(ANSWER));
    node.wait_metric(
        "shardcast_deflate_connections",
        WAIT,
        "1 (the one kept)",
        |v| v == 1.0,
    );
    let off = Node::start("[ws]\ncompression = false\n");
    assert_eq!(DeflateClient::offering(&off, SYS_A, OFFER).agreed, None);
}

#[test]
fn a_compressed_client_message_is_delivered_as_chat() {
    let node = Node::start("[ws]\nclient_send = \"all\"\n");
    let mut a = DeflateClient::offering(&node, SYS_A, OFFER);
    assert_eq!(a.agreed.as_deref(), Some(ANSWER));
    a.next_message(WAIT).expect("the welcome");
    let mut b = node.ws(SYS_A);
    let data = json_text(2000);
    let message = json!({"type":"send_to_client","clientId":b.client_id,"msg":"zipped","data":data,"reqId":"1"});
    let text = message.to_string();
    assert!(
        deflate(text.as_bytes()).len() * 4 < text.len(),
        "it compresses"
    );
    a.send_compressed(OP_TEXT, text.as_bytes());
    let push = b.expect_json_where(WAIT, |v| v["msg"] == "zipped");
    assert_eq!(push["data"], json!(data));
    let (_, _, ack) = a.next_message(WAIT).expect("the ack");
    let ack: Value = serde_json::from_slice(&ack).unwrap();
    assert_eq!(
        (ack["type"].clone(), ack["code"].clone()),
        (json!("ack"), json!(0))
    );
    // "ping" compressed is still answered.
    a.send_compressed(OP_TEXT, b"ping");
    assert_eq!(a.next_message(WAIT).map(|m| m.2), Some(b"pong".to_vec()));
    let m = node.metrics();
    assert_eq!(m.sum("shardcast_deflate_inbound_messages_total"), 2.0);
    let inflated = m.sum_where(
        "shardcast_deflate_inbound_bytes_total",
        &[("stage", "inflated")],
    );
    assert_eq!(inflated, (text.len() + 4) as f64);
}

#[test]
fn echoes_come_back_compressed_within_the_agreed_window() {
    let node = Node::start("[ws]\necho = true\nmax_client_message = 200000\n");
    let long = json_text(20_000);
    for (offer, bits) in [
        (OFFER.to_string(), 15),
        (
            "permessage-deflate; server_max_window_bits=9".to_string(),
            9,
        ),
    ] {
        let mut c = DeflateClient::offering(&node, SYS_A, &offer);
        assert_eq!(c.window_bits(), bits);
        c.send_compressed(OP_TEXT, long.as_bytes());
        // Inflated with a window of `bits` only: a frame that reached further back
        // would not inflate.
        let (op, compressed, echo) = c.next_message(WAIT).expect("the echo");
        assert_eq!((op, compressed), (OP_TEXT, true), "window {bits}");
        assert_eq!(echo, long.as_bytes());
        // A fragmented compressed binary message with a ping inside it.
        let z = deflate(long.as_bytes());
        let (x, rest) = z.split_at(100);
        let (y, w) = rest.split_at(rest.len() / 2);
        c.send_frame(RSV1 | OP_BINARY, x);
        c.send_frame(OP_CONT, y);
        c.send_frame(FIN | OP_PING, b"p");
        c.send_frame(FIN | OP_CONT, w);
        let (head, pong) = c.next_frame(WAIT).expect("the pong");
        assert_eq!((head.opcode, pong), (0xA, b"p".to_vec()));
        assert_eq!(
            c.next_message(WAIT),
            Some((OP_BINARY, true, long.clone().into_bytes()))
        );
        // Under ws.compression_min_size (256) an echo goes plain.
        c.send_compressed(OP_TEXT, b"short and plain");
        assert_eq!(
            c.next_message(WAIT),
            Some((OP_TEXT, false, b"short and plain".to_vec()))
        );
    }
    let m = node.metrics();
    let plain = m.sum_where(
        "shardcast_deflate_outbound_bytes_total",
        &[("stage", "plain")],
    );
    let after = m.sum_where(
        "shardcast_deflate_outbound_bytes_total",
        &[("stage", "compressed")],
    );
    assert_eq!(plain, (4 * long.len()) as f64);
    assert!(after * 10.0 < plain, "{after} of {plain}");
}

/// A frame to send: its first header byte and its payload.
type Frame = (u8, Vec<u8>);

/// RSV bits where RFC 7692 does not allow them close with 1002; data that does not
/// inflate with 1007.
#[test]
fn rsv_bits_against_rfc_7692_close_with_1002_and_bad_data_with_1007() {
    let node = Node::start("[ws]\necho = true\n");
    let z = deflate(b"hello hello hello");
    let cases: [(&str, Vec<Frame>, u16); 6] = [
        (
            "RSV1 without deflate",
            vec![(FIN | RSV1 | OP_TEXT, z.clone())],
            1002,
        ),
        (OFFER, vec![(FIN | RSV1 | OP_PING, vec![])], 1002),
        (
            OFFER,
            vec![
                (RSV1 | OP_TEXT, z[..3].to_vec()),
                (FIN | RSV1 | OP_CONT, z[3..].to_vec()),
            ],
            1002,
        ),
        (OFFER, vec![(FIN | 0x20 | OP_TEXT, b"x".to_vec())], 1002),
        (
            OFFER,
            vec![
                (OP_TEXT, b"x".to_vec()),
                (FIN | RSV1 | OP_CONT, b"y".to_vec()),
            ],
            1002,
        ),
        (
            OFFER,
            vec![(FIN | RSV1 | OP_TEXT, vec![0xff, 0xff, 0xff])],
            1007,
        ),
    ];
    for (offer, frames, code) in cases {
        let mut c = DeflateClient::offering(&node, SYS_A, offer);
        assert_eq!(c.agreed.is_some(), offer == OFFER);
        for (first, payload) in frames {
            c.send_frame(first, &payload);
        }
        assert_eq!(c.expect_close(WAIT), code, "{offer}: close code");
    }
    let m = node.metrics();
    let failed = |reason| {
        m.sum_where(
            "shardcast_deflate_inbound_failures_total",
            &[("reason", reason)],
        )
    };
    assert_eq!((failed("protocol"), failed("corrupt")), (1.0, 1.0));
}

/// The node's peak resident memory (VmHWM), KiB.
fn peak_kib(node: &Node) -> u64 {
    proc_status_kib(node.pid(), "VmHWM:")
}

/// Sends a 100 MiB bomb `rounds` times as one message of 64-byte frames, and as one
/// frame, each on a connection of its own: each closes with 1009, a plain client keeps
/// being answered, and the node's peak memory grows by far less than one bomb.
fn bombs_are_closed_alone(node: &Node, rounds: usize) {
    let z = bomb(100);
    assert!(z.len() < 150_000, "{} bytes of bomb", z.len());
    let mut other = node.ws(SYS_A);
    other.send_text("ping");
    assert_eq!(other.recv_text(WAIT).as_deref(), Some("pong"));
    let before = peak_kib(node);
    for round in 0..rounds {
        let mut small = DeflateClient::offering(node, SYS_A, OFFER);
        let mut chunks = z.chunks(64);
        small.send_frame(RSV1 | OP_TEXT, chunks.next().unwrap());
        for chunk in chunks {
            small.send_frame(OP_CONT, chunk);
        }
        small.send_frame(FIN | OP_CONT, &[]);
        assert_eq!(
            small.expect_close(WAIT),
            1009,
            "small frames, round {round}"
        );
        let mut large = DeflateClient::offering(node, SYS_A, OFFER);
        large.send_frame(FIN | RSV1 | OP_TEXT, &z);
        assert_eq!(large.expect_close(WAIT), 1009, "one frame, round {round}");
        other.send_text("ping");
        assert_eq!(
            other.recv_text(WAIT).as_deref(),
            Some("pong"),
            "round {round}"
        );
    }
    let after = peak_kib(node);
    let grown = after.saturating_sub(before);
    eprintln!("[bombs] {rounds} rounds: peak resident memory {before} KiB -> {after} KiB");
    assert!(
        grown < 24 * 1024,
        "peak memory grew by {grown} KiB for 100 MiB bombs"
    );
    let m = node.metrics();
    let too_large = m.sum_where(
        "shardcast_deflate_inbound_failures_total",
        &[("reason", "too_large")],
    );
    assert_eq!(too_large, (2 * rounds) as f64);
    other.expect_silence(QUIET);
}

#[test]
fn decompression_bombs_close_only_their_connection_with_1009_and_memory_stays_flat() {
    // The default ws.max_client_message (8192): refused on compressed size already.
    bombs_are_closed_alone(&Node::start(""), 3);
    // A raised one: inflated, and stopped one byte past it.
    bombs_are_closed_alone(&Node::start("[ws]\nmax_client_message = 1048576\n"), 3);
}

#[test]
fn a_real_deflate_client_gets_its_messages_echoed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    assert!(
        dir.join("node_modules/ws").is_dir(),
        "tests/console/node_modules/ws is missing: run npm ci --prefix tests/console (scripts/test.sh does)"
    );
    let node = Node::start("[ws]\necho = true\n");
    let url = format!("ws://{}/ws?systemId={SYS_A}", node.addr());
    let out = Command::new("node")
        .arg("deflate.mjs")
        .arg(&url)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [format!("OK {ANSWER}"), format!("OK {}", with_window(10))]
    );
    let m = node.metrics();
    assert_eq!(
        m.sum("shardcast_deflate_inbound_messages_total"),
        6.0,
        "ws compressed all six"
    );
    assert!(m.sum("shardcast_deflate_outbound_messages_total") >= 4.0);
}
