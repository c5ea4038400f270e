//! A cascade of cuts never cuts a member that reads (issue 22; docs/architecture.md,
//! "A `send_to_group`", step 5; docs/api.md §2, "Slow consumers").
//!
//! Ten thousand members of one group stop reading: a partitioned room. One push to
//! the group overflows the `ws.send_queue_bytes` of half of them, which are cut as
//! slow consumers; each cut sends the group an offline notice of over 1 kB (their
//! `extend`), a few of which overflow each member of the other half, cut in turn:
//! ten thousand cuts and notices in one loop of the core (`Core::reap`), in which
//! none of its other tasks runs — not the writer task of a reader whose socket was
//! full. The members that read — three raw sockets, each read by a thread that does
//! nothing else, and one tungstenite client that parses every frame — must never be
//! cut, and each gets exactly one offline notice per cut member. The node goes on
//! serving.
//!
//! During that loop a reader's queue is written as it grows (`WRITE_STEP` in
//! `core/write.rs`) and at the bound. Written only at the bound, as it was, it stayed
//! there for the rest of the loop, each write only what the reader's socket took at
//! that moment, and the reader was cut the first time it had not read that burst
//! before the next one: in every run of this test. The 10,000 notices make about
//! 11.7 MB for each reader, eleven times the bound (1 MiB, the default).
//!
//! The readers' sockets are a client's across a network: a 64 KiB receive buffer and
//! 1460-byte segments (`connect_sized`), not loopback's megabytes of buffers that
//! would hold the whole cascade in the kernel.
//!
//! Setting up ten thousand members costs what filling a room costs: N²/2 online
//! notices. The crowd (`support::crowd`, a child process) therefore joins while
//! detached (session resume on): what is sent to a detached connection does not go
//! through its socket, and with `ws.resume_max_bytes` small the node keeps little of
//! it. It then resumes on sockets it never reads, with a small receive buffer and
//! segment size, so that the kernel holds some 80 kB for each, 0.8 GB in all (with
//! loopback's defaults, megabytes each: the machine's TCP memory would be used up).

use crate::support::{
    api::{expect_ok, message_id_of, pipelined},
    crowd::Crowd,
    http::HttpConn,
    node::Node,
    raw_frames::{connect_sized, raw_client_on},
    ws::{offline_notice_of, ws_handshake, Client, WsEvent},
    StopOnDrop, QUIET, SYS_A, WAIT,
};
use serde_json::{json, Value};
use shardcast::ws::frame::parse_head;
use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const STALLED: usize = 10_000;
/// Readers on raw sockets, as fast as a thread reads.
const FAST_READERS: usize = 3;
/// Every reader: the fast ones and one tungstenite client.
const READERS: usize = FAST_READERS + 1;
const GROUP: &str = "partitioned";
/// The stalled members' receive buffer and segment size, set before they connect: with
/// these the kernel holds some 80 kB for each (`support::crowd`), less than a fill.
const STALLED_RCVBUF: usize = 2048;
const STALLED_MSS: usize = 256;
/// The readers' receive buffer and segment size (a network's), set before they
/// connect.
const READER_RCVBUF: i32 = 64 * 1024;
const READER_MSS: i32 = 1460;
/// `ws.send_queue_bytes` (its default).
const QUEUE_BYTES: usize = 1 << 20;
/// Each stalled member's `extend`: its offline notice carries it.
const EXTEND_BYTES: usize = 1024;
/// The pushes that fill the stalled members' queues: more than the kernel holds of a
/// stalled member's. `QUEUE_BYTES - PUSH_BYTES` is a multiple of it.
const FILL_BYTES: usize = 256 * 1024;
/// The group push that cuts.
const PUSH_BYTES: usize = 256 * 1024;
/// API calls written at once on the API connection.
const ROUND: usize = 500;
/// How long the readers may take to get every notice once the group is down to them.
const NOTICES_MAX: Duration = Duration::from_secs(30);

/// What a reader saw: offline notices by clientId, and how its connection ended if it
/// did.
struct Seen {
    who: String,
    offline: HashMap<String, usize>,
    ended: Option<String>,
}

/// Reads a raw WebSocket as fast as it can until `done`, counting offline notices by
/// clientId (their number also in `count`).
fn read_fast(mut s: TcpStream, who: String, done: &AtomicBool, count: &AtomicUsize) -> Seen {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let mut seen = Seen {
        who,
        offline: HashMap::new(),
        ended: None,
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut pending: Vec<u8> = Vec::new();
    while !done.load(Ordering::SeqCst) {
        let n = match s.read(&mut buf) {
            Ok(0) => {
                seen.ended = Some("the node closed the connection".into());
                return seen;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => {
                seen.ended = Some(format!("read error: {e}"));
                return seen;
            }
        };
        pending.extend_from_slice(&buf[..n]);
        let mut at = 0;
        while let Some(head) = parse_head(&pending[at..]) {
            let end = at + head.frame_len() as usize;
            if end > pending.len() {
                break;
            }
            let payload = &pending[at + head.header_len..end];
            match head.opcode {
                1 => {
                    if let Some(id) = offline_in(payload) {
                        *seen.offline.entry(id).or_default() += 1;
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
                8 => {
                    seen.ended = Some(format!("close frame {payload:?}"));
                    return seen;
                }
                _ => {}
            }
            at = end;
        }
        pending.drain(..at);
    }
    seen
}

/// The clientId of an offline notice's payload, found without parsing the JSON (a
/// fast reader must not fall behind on it; the tungstenite reader parses it).
fn offline_in(payload: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    if !text.contains("\"code\":1002,") {
        return None;
    }
    let key = r#"{\"clientId\":\""#;
    let start = text.find(key)? + key.len();
    let len = text[start..].find('\\')?;
    Some(text[start..start + len].to_string())
}

/// Reads with the tungstenite client, every frame parsed as JSON, until `done`.
fn read_parsing(mut c: Client, done: &AtomicBool, count: &AtomicUsize) -> Seen {
    let mut seen = Seen {
        who: format!("the tungstenite reader {}", c.client_id),
        offline: HashMap::new(),
        ended: None,
    };
    while !done.load(Ordering::SeqCst) {
        match c.next_event(Duration::from_millis(100)) {
            WsEvent::Text(t) => {
                if let Some(id) = offline_notice_of(&t) {
                    *seen.offline.entry(id).or_default() += 1;
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
            WsEvent::Timeout | WsEvent::Ping | WsEvent::Pong => {}
            other => {
                seen.ended = Some(format!("{other:?}"));
                return seen;
            }
        }
    }
    seen
}

/// The members of `GROUP` now.
fn group_count(http: &mut HttpConn) -> u64 {
    let list = expect_ok(http.api("/api/get_group_list", Some(SYS_A), "{}"));
    list["list"]
        .as_array()
        .and_then(|l| l.iter().find(|g| g["groupName"] == json!(GROUP)))
        .and_then(|g| g["count"].as_u64())
        .unwrap_or(0)
}

/// Makes every call of `calls`, `ROUND` at a time on one connection; each must succeed.
fn call_all(http: &mut HttpConn, calls: Vec<(&str, Value)>) {
    let mut calls = calls.into_iter().peekable();
    while calls.peek().is_some() {
        for answer in pipelined(http, SYS_A, calls.by_ref().take(ROUND)) {
            expect_ok(answer);
        }
    }
}

#[test]
fn a_cascade_of_ten_thousand_cuts_never_cuts_a_member_that_reads() {
    // One core: the whole cascade runs on the core that owns the group.
    let node = Node::start(&format!(
        "[server]\nworkers = 1\n[ws]\nsend_queue_bytes = {QUEUE_BYTES}\n\
         resume_window = \"10m\"\nresume_max_bytes = 65536\nidle_timeout = \"10m\"\n\
         [api]\nmax_message = {}\nmax_batch = {STALLED}\n",
        PUSH_BYTES + 1024
    ));
    let mut http = node.http();
    let reader_socket = || connect_sized(node.socket_addr(), READER_RCVBUF, Some(READER_MSS));
    let fast: Vec<(TcpStream, String)> = (0..FAST_READERS)
        .map(|_| raw_client_on(reader_socket(), &node, SYS_A))
        .collect();
    let socket = reader_socket();
    let parsing = Client::welcome(ws_handshake(
        socket,
        node.addr(),
        &format!("/ws?systemId={SYS_A}"),
    ));
    let mut reader_ids: Vec<String> = fast.iter().map(|(_, id)| id.clone()).collect();
    reader_ids.push(parsing.client_id.clone());
    let extend = "e".repeat(EXTEND_BYTES);
    let join = |id: &String| {
        let body = json!({ "clientId": id, "groupName": GROUP, "extend": extend });
        ("/api/bind_to_group", body)
    };
    call_all(&mut http, reader_ids.iter().map(join).collect());

    let done = AtomicBool::new(false);
    let counts: Vec<AtomicUsize> = (0..READERS).map(|_| AtomicUsize::new(0)).collect();
    let (stalled, seen) = std::thread::scope(|scope| {
        let _stop = StopOnDrop(&done);
        let done = &done;
        let mut readers = Vec::new();
        for ((s, id), count) in fast.into_iter().zip(&counts) {
            let who = format!("fast reader {id}");
            readers.push(scope.spawn(move || read_fast(s, who, done, count)));
        }
        let count = &counts[FAST_READERS];
        readers.push(scope.spawn(move || read_parsing(parsing, done, count)));

        // The crowd: connected, dropped (detached), joined, and resumed on sockets it
        // never reads; the marker is the newest frame each had, so nothing is replayed.
        let t = Instant::now();
        let mut crowd = Crowd::open(&node, SYS_A, STALLED, STALLED_RCVBUF, STALLED_MSS);
        crowd.drop_all();
        node.wait_metric(
            "shardcast_connections_detached",
            WAIT,
            "the whole crowd detached",
            |n| n == STALLED as f64,
        );
        call_all(&mut http, crowd.ids.iter().map(join).collect());
        let body = json!({ "groupName": GROUP, "data": "everyone is in" }).to_string();
        let marker = expect_ok(http.api("/api/send_to_group", Some(SYS_A), &body));
        crowd.resume_all(&message_id_of(&marker));
        node.wait_metric(
            "shardcast_connections_detached",
            WAIT,
            "the whole crowd resumed",
            |n| n == 0.0,
        );
        assert_eq!(
            group_count(&mut http),
            (STALLED + READERS) as u64,
            "members of the group before the storm"
        );
        let cut = node.metric("shardcast_slow_consumers_closed_total");
        assert_eq!(cut, 0.0, "members cut before the storm");
        let set_up = t.elapsed();

        // Every stalled member gets pushes of its own until its queue has room for the
        // group push that cuts and no more (`QUEUE_BYTES - PUSH_BYTES` sent, the kernel
        // holding some of it); the first half gets one push more. The group push then
        // cuts the first half, and the second half is cut by the offline notices of the
        // first: a few of them fill what room its queues have left.
        let (first, second) = crowd.ids.split_at(STALLED / 2);
        let fill = "f".repeat(FILL_BYTES);
        let to = |ids: &[String]| {
            let body = json!({ "clientIds": ids, "data": fill });
            ("/api/send_to_clients", body)
        };
        let fills: Vec<_> = (0..(QUEUE_BYTES - PUSH_BYTES) / FILL_BYTES)
            .map(|_| to(&crowd.ids))
            .chain([to(first)])
            .collect();
        call_all(&mut http, fills);
        let cut = node.metric("shardcast_slow_consumers_closed_total");
        assert_eq!(cut, 0.0, "members cut by the pushes that fill their queues");
        let body = json!({ "groupName": GROUP, "data": "x".repeat(PUSH_BYTES) });
        let pushed = Instant::now();
        // Answered once the cascade is over: the cuts are made before the pushes of a
        // batch of requests are written, and before the answers.
        for answer in pipelined(&mut http, SYS_A, [("/api/send_to_group", body)]) {
            expect_ok(answer);
        }
        let cascade = pushed.elapsed();
        // Each reader gets its notices, then nothing more for a moment.
        let deadline = Instant::now() + NOTICES_MAX;
        while counts.iter().any(|c| c.load(Ordering::SeqCst) < STALLED)
            && !readers.iter().any(|r| r.is_finished())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let read = pushed.elapsed();
        std::thread::sleep(QUIET);
        done.store(true, Ordering::SeqCst);
        let per_reader: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
        eprintln!(
            "[cascade] {STALLED} stalled members in the group after {:.1}s; the group push \
             that cut them was answered after {:.2}s (the cascade), every reader had every \
             notice {:.2}s after it was sent; offline notices per reader {per_reader:?}",
            set_up.as_secs_f64(),
            cascade.as_secs_f64(),
            read.as_secs_f64(),
        );
        let seen: Vec<Seen> = readers
            .into_iter()
            .map(|h| h.join().expect("reader thread"))
            .collect();
        for s in &seen {
            assert_eq!(s.ended, None, "{} was cut, though it read all along", s.who);
        }
        let left = group_count(&mut http);
        assert_eq!(
            left,
            READERS as u64,
            "members left in the group after the push: the {} that had room for it \
             must have been cut by the offline notices of the others",
            second.len()
        );
        (crowd.ids.clone(), seen)
    });

    assert!(node.alive(), "the node died:\n{}", node.log());
    let cut = node.metric("shardcast_slow_consumers_closed_total");
    eprintln!("[cascade] shardcast_slow_consumers_closed_total = {cut}");
    for id in &reader_ids {
        assert!(node.is_online(SYS_A, id), "reader {id} is no longer online");
    }
    assert_eq!(cut as usize, STALLED, "members cut as slow consumers");
    let stalled: HashSet<&String> = stalled.iter().collect();
    for s in &seen {
        let twice: Vec<_> = s.offline.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            twice.is_empty(),
            "{}: notices not exactly once: {twice:?}",
            s.who
        );
        let missing: Vec<_> = stalled
            .iter()
            .filter(|id| !s.offline.contains_key(**id))
            .collect();
        assert!(
            missing.is_empty(),
            "{}: no offline notice for {} cut members, e.g. {:?}",
            s.who,
            missing.len(),
            missing.first()
        );
        let others: Vec<_> = s
            .offline
            .keys()
            .filter(|id| !stalled.contains(id))
            .collect();
        assert!(
            others.is_empty(),
            "{}: offline notices of members never cut: {others:?}",
            s.who
        );
    }
    // Still serving: a new client connects and gets a push.
    let mut fresh = node.ws(SYS_A);
    node.send_to_client(SYS_A, &fresh.client_id, "after", json!("still here"));
    let v = fresh.expect_json(WAIT);
    assert_eq!(
        v["data"],
        json!("still here"),
        "push after the cascade: {v}"
    );
}
