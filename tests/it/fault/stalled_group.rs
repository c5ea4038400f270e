//! A crowd of stalled members of one group, cut in one burst (docs/api.md §6
//! `ws.send_queue_bytes`; docs/architecture.md, slow consumers): each cut sends an
//! offline notice to the group, which overflows the next stalled member, whose cut
//! sends another notice, and so on — a network partition of a big room does exactly
//! this. The node must cut them one after another: done by recursion, a chain
//! thousands deep once overflowed the stack of a core and took the node down. The
//! members still reading get one offline notice per cut member, exactly once, and the
//! node goes on serving.

use crate::support::{
    api::expect_ok,
    node::Node,
    raw_frames::raw_client,
    ws::{offline_notice_of, Client, WsEvent},
    StopOnDrop, SYS_A,
};
use serde_json::json;
use std::collections::HashMap;
use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const STALLED: usize = 1000;
const READERS: usize = 3;
const GROUP: &str = "partitioned";
/// Small, so that a stalled member's queue overflows with a frame and a notice.
const QUEUE_BYTES: usize = 4096;
const STORM_MSG_BYTES: usize = 8192;
const STORM_MAX: Duration = Duration::from_secs(40);

/// Reads (and discards) whatever the socket holds now, without waiting.
fn drain_now(s: &mut TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            return;
        }
    }
}

/// What a reader saw: offline notices by clientId, why it stopped early (if it did),
/// and its connection (kept open until every reader has stopped).
type Seen = (HashMap<String, usize>, Option<String>, Client);

/// Counts the offline notices a reader gets, by clientId, until `done`; `total`
/// follows how many it has seen.
fn count_offline(mut c: Client, done: &AtomicBool, total: &AtomicUsize) -> Seen {
    let mut seen: HashMap<String, usize> = HashMap::new();
    while !done.load(Ordering::SeqCst) {
        match c.next_event(Duration::from_millis(200)) {
            WsEvent::Text(t) => {
                if let Some(id) = offline_notice_of(&t) {
                    *seen.entry(id).or_default() += 1;
                    total.fetch_add(1, Ordering::SeqCst);
                }
            }
            WsEvent::Timeout | WsEvent::Ping | WsEvent::Pong => {}
            other => {
                let why = format!("{}: {other:?}", c.client_id);
                return (seen, Some(why), c);
            }
        }
    }
    (seen, None, c)
}

#[test]
fn a_crowd_of_stalled_members_is_cut_one_by_one_and_the_node_keeps_serving() {
    // One core: the whole cascade runs on the core that owns the group.
    let node = Node::start(&format!(
        "[server]\nworkers = 1\n[ws]\nsend_queue_bytes = {QUEUE_BYTES}\n"
    ));
    let mut http = node.http();
    let bind = |http: &mut crate::support::http::HttpConn, id: &str| {
        let body = json!({ "clientId": id, "groupName": GROUP }).to_string();
        expect_ok(http.api("/api/bind_to_group", Some(SYS_A), &body));
    };
    let readers: Vec<Client> = (0..READERS).map(|_| node.ws(SYS_A)).collect();
    for r in &readers {
        bind(&mut http, &r.client_id);
    }
    let mut stalled: Vec<(TcpStream, String)> = Vec::with_capacity(STALLED);
    let done = AtomicBool::new(false);
    let data = "x".repeat(STORM_MSG_BYTES);
    let totals: Vec<AtomicUsize> = (0..READERS).map(|_| AtomicUsize::new(0)).collect();
    let results = std::thread::scope(|scope| {
        let _stop = StopOnDrop(&done);
        // The readers read from the start: thousands of online notices come first.
        let counters: Vec<_> = readers
            .into_iter()
            .zip(&totals)
            .map(|(c, total)| {
                let done = &done;
                scope.spawn(move || count_offline(c, done, total))
            })
            .collect();
        // The stalled members read the online notices of the others while they
        // join (so that joining does not cut them), then stop reading for good.
        for i in 0..STALLED {
            let (s, id) = raw_client(&node, SYS_A, Some(4096));
            s.set_nonblocking(true).expect("nonblocking");
            bind(&mut http, &id);
            stalled.push((s, id));
            if i % 50 == 49 {
                stalled.iter_mut().for_each(|(s, _)| drain_now(s));
            }
        }
        stalled.iter_mut().for_each(|(s, _)| drain_now(s));
        // Group messages until only the readers are left in the group.
        let start = Instant::now();
        loop {
            let body = json!({ "groupName": GROUP, "data": data }).to_string();
            expect_ok(http.api("/api/send_to_group", Some(SYS_A), &body));
            let list = expect_ok(http.api(
                "/api/get_online_list",
                Some(SYS_A),
                &json!({ "groupName": GROUP }).to_string(),
            ));
            if list["count"] == json!(READERS) {
                break;
            }
            assert!(
                start.elapsed() < STORM_MAX,
                "stalled members still online after {STORM_MAX:?}: {}",
                list["count"]
            );
        }
        // Every notice written by now reaches the readers: wait until each has one
        // per cut member (or the deadline; the assertions below then say what is
        // missing).
        let deadline = Instant::now() + STORM_MAX;
        while totals.iter().any(|t| t.load(Ordering::SeqCst) < STALLED) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        done.store(true, Ordering::SeqCst);
        counters
            .into_iter()
            .map(|h| h.join().expect("reader thread"))
            .collect::<Vec<_>>()
    });

    assert!(node.alive(), "the node died:\n{}", node.log());
    let slow = node.metric("shardcast_slow_consumers_closed_total");
    assert_eq!(slow as usize, STALLED, "slow consumers cut");
    for (seen, error, _) in &results {
        assert_eq!(*error, None, "a reader lost its connection");
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
        assert!(twice.is_empty(), "notices not exactly once: {twice:?}");
        let missing = stalled.iter().filter(|(_, id)| !seen.contains_key(id));
        assert_eq!(missing.count(), 0, "offline notices missing");
        assert_eq!(seen.len(), STALLED, "offline notices of other clients");
    }
    // Still serving: a new client connects and gets a push.
    let mut fresh = node.ws(SYS_A);
    node.send_to_client(SYS_A, &fresh.client_id, "after", json!("still here"));
    let v = fresh.expect_json(Duration::from_secs(5));
    assert_eq!(
        v["data"],
        json!("still here"),
        "push after the cascade: {v}"
    );
}
