//! Slow consumers under fan-out (docs/api.md §6 `ws.send_queue_bytes`;
//! docs/architecture.md, the data path: "a slow consumer never slows anyone else").
//!
//! `ws.send_queue_bytes = 65536`; 100 clients in one group, 20 of which stop reading (raw
//! WebSocket sockets with a 4 KiB receive buffer that never read after the welcome). A
//! storm of at least 3000 `send_to_group` messages of 8 KiB (about 24 MiB) goes to the
//! group through one keep-alive API connection. The 20 must be closed (offline, counted
//! in `shardcast_slow_consumers_closed_total`), the 80 healthy clients must receive every
//! message in order, and the node's resident memory may grow by no more than every
//! member's full send queue (100 x `ws.send_queue_bytes`) plus a fixed allowance. The
//! storm is made large enough that queues without that bound — which would keep every
//! frame the slow consumers' sockets did not take — break the memory limit by itself.
//!
//! A second test checks the converse: a burst of group sends that reaches a core all at
//! once must not cut members whose sockets can take it (they take the same messages
//! sent one after another without trouble).

use crate::support::{
    api::expect_ok,
    http::wait_eof,
    node::{proc_status_kib, rss_kib, shipped_resume, Node},
    raw_frames::{raw_client, read_raw_frame},
    ws::{is_notice, Client, WsEvent},
    StopOnDrop, SYS_A, WAIT,
};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CLIENTS: usize = 100;
const SLOW: usize = 20;
const QUEUE_BYTES: usize = 65536;
const GROUP: &str = "storm";

/// The storm: at least this many group messages (more when the kernel's socket buffers
/// could hide more, see `storm_messages`) …
const MESSAGES: usize = 3000;
/// … with this many bytes of `data` each (the push frame is about 80 bytes longer).
const STORM_MSG_BYTES: usize = 8192;
/// The messages of the burst test.
const MSG_BYTES: usize = 1024;

/// The fixed part of what the node's VmRSS may grow by during the storm: everything a
/// busy node allocates besides queued frames (HTTP buffers, write state, allocator
/// slack). Measured here: well under 1 MiB.
const RSS_ALLOWANCE_BYTES: usize = 6 << 20;
/// What the node's VmRSS may grow by during the storm: every member's send queue full
/// (`ws.send_queue_bytes` each, a frame shared by several queues counted in each), plus
/// the allowance.
const RSS_GROWTH_LIMIT_BYTES: usize = CLIENTS * QUEUE_BYTES + RSS_ALLOWANCE_BYTES;

/// The storm goes on past its size until every slow consumer is cut, at most this long.
const STORM_MAX: Duration = Duration::from_secs(30);

/// The largest send buffer the kernel gives a TCP socket (`net.ipv4.tcp_wmem` max):
/// how much of a slow consumer's backlog can leave the node without being read.
fn kernel_send_buffer_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(4 << 20)
}

/// How many storm messages to send at least: `MESSAGES`, or more, so that the frames a
/// slow consumer's socket cannot take (the storm minus one kernel send buffer) are 1.5
/// times the RSS limit — what unbounded queues would keep alive is then over it.
fn storm_messages(frame_bytes: usize) -> usize {
    let must_stay_queued = kernel_send_buffer_max() + RSS_GROWTH_LIMIT_BYTES * 3 / 2;
    MESSAGES.max(must_stay_queued.div_ceil(frame_bytes))
}

/// The sequence number (`sendUserId`) of a storm frame, read from its raw text without
/// parsing 8 KiB of JSON; None for other frames (notices, whose `sendUserId` is "").
fn storm_seq(text: &str) -> Option<usize> {
    let key = "\"sendUserId\":\"";
    let start = text.find(key)? + key.len();
    let len = text[start..].find('"')?;
    text[start..start + len].parse().ok()
}

fn all_slow_closed(at: &Mutex<Vec<Option<(Duration, usize)>>>) -> bool {
    at.lock().unwrap().iter().all(|t| t.is_some())
}

/// A raw WebSocket connection with a 4 KiB receive buffer that reads its welcome and
/// then never reads again.
fn slow_client(node: &Node) -> (TcpStream, String) {
    raw_client(node, SYS_A, Some(4096))
}

#[test]
fn slow_consumers_are_cut_while_healthy_members_get_the_whole_storm() {
    storm_with("", 0);
}

/// The same storm with resume on, as the shipped config runs it (pings every second, so
/// that healthy members acknowledge as they go): the replay log may hold the storm up to
/// `ws.resume_max_bytes`, and gives it back once every member has answered a ping.
#[test]
fn with_the_shipped_config_the_storm_kept_for_resumes_is_bounded_and_given_back() {
    let bound = 64 << 20;
    let extra = format!(
        "{}resume_max_bytes = {bound}\nping_interval = \"1s\"\n",
        shipped_resume()
    );
    storm_with(&extra, bound);
}

/// The storm on a node with `extra` under `[ws]`, whose replay log may keep up to
/// `kept_bound` bytes (and must give them back once the members answered pings).
fn storm_with(extra: &str, kept_bound: usize) {
    let node = Node::start(&format!("[ws]\nsend_queue_bytes = {QUEUE_BYTES}\n{extra}"));
    let pid = node.pid();

    let mut healthy: Vec<Client> = (0..CLIENTS - SLOW).map(|_| node.ws(SYS_A)).collect();
    for c in &healthy {
        node.bind(SYS_A, &c.client_id, GROUP, "", "");
    }
    let mut slow: Vec<(TcpStream, String)> = (0..SLOW).map(|_| slow_client(&node)).collect();
    for (_, id) in &slow {
        node.bind(SYS_A, id, GROUP, "slow", "");
    }
    let list = node.call(SYS_A, "/api/get_online_list", json!({ "groupName": GROUP }));
    assert_eq!(list["count"], json!(CLIENTS), "group members: {list}");

    let total = AtomicUsize::new(0); // 0 = not known yet
    let done = AtomicBool::new(false);
    let rss_before = rss_kib(pid);
    let rss_peak = AtomicUsize::new(rss_before as usize);
    // (time since the storm's start, messages sent by then) when each slow one was seen offline.
    let slow_closed_at: Mutex<Vec<Option<(Duration, usize)>>> = Mutex::new(vec![None; SLOW]);
    let sent_so_far = AtomicUsize::new(0);
    let slow_ids: Vec<String> = slow.iter().map(|(_, id)| id.clone()).collect();
    let data = "x".repeat(STORM_MSG_BYTES);
    let frame_bytes = {
        let probe = json!({"messageId": "0123456789abcdef", "sendUserId": "000000",
                           "code": 0, "msg": "storm", "data": data});
        probe.to_string().len() + 1 + 4
    };
    let min_messages = storm_messages(frame_bytes);

    let storm_start = Instant::now();
    let (sent, storm_took, results) = std::thread::scope(|s| {
        let _stop_on_panic = StopOnDrop(&done);
        // Healthy readers: every storm message in order (notices skipped).
        let readers: Vec<_> = healthy
            .drain(..)
            .map(|mut c| {
                let (total, done) = (&total, &done);
                s.spawn(move || -> (usize, Option<String>, Client) {
                    let deadline = Instant::now() + STORM_MAX + Duration::from_secs(10);
                    let mut next = 0usize;
                    loop {
                        let t = total.load(Ordering::SeqCst);
                        if t != 0 && next >= t {
                            return (next, None, c);
                        }
                        if Instant::now() >= deadline || (done.load(Ordering::SeqCst) && t == 0) {
                            let e = format!("timed out after {next} messages");
                            return (next, Some(e), c);
                        }
                        let v = match c.next_event(Duration::from_millis(200)) {
                            WsEvent::Text(t) => t,
                            WsEvent::Timeout | WsEvent::Ping | WsEvent::Pong => continue,
                            other => {
                                let e = format!(
                                    "{}: connection ended after {next} messages: {other:?}",
                                    c.client_id
                                );
                                return (next, Some(e), c);
                            }
                        };
                        let Some(seq) = storm_seq(&v) else {
                            let v: Value = serde_json::from_str(v.trim_end()).unwrap();
                            if is_notice(&v) {
                                continue;
                            }
                            let e = format!("{}: unexpected frame {v}", c.client_id);
                            return (next, Some(e), c);
                        };
                        if seq != next {
                            let e = format!("{}: expected message {next}, got {seq}", c.client_id);
                            return (next, Some(e), c);
                        }
                        next += 1;
                    }
                })
            })
            .collect();

        // Memory sampler.
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                rss_peak.fetch_max(rss_kib(pid) as usize, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        });

        // When does each slow client go offline?
        s.spawn(|| {
            let mut http = node.http();
            loop {
                let open: Vec<usize> = {
                    let at = slow_closed_at.lock().unwrap();
                    (0..SLOW).filter(|i| at[*i].is_none()).collect()
                };
                if open.is_empty() || done.load(Ordering::SeqCst) {
                    return;
                }
                for i in open {
                    let body = json!({ "clientId": slow_ids[i] }).to_string();
                    let d = expect_ok(http.api("/api/is_online", Some(SYS_A), &body));
                    if d["online"] == json!(false) {
                        let at = (storm_start.elapsed(), sent_so_far.load(Ordering::SeqCst));
                        slow_closed_at.lock().unwrap()[i] = Some(at);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });

        // The storm, through one keep-alive connection: `min_messages`, and on until
        // every slow consumer is cut (the kernel's socket buffers take a few MiB first).
        let mut http = node.http();
        let mut sent = 0usize;
        loop {
            if sent >= min_messages
                && (all_slow_closed(&slow_closed_at) || storm_start.elapsed() > STORM_MAX)
            {
                break;
            }
            let body = json!({"groupName": GROUP, "msg": "storm",
                              "sendUserId": sent.to_string(), "data": data});
            expect_ok(http.api("/api/send_to_group", Some(SYS_A), &body.to_string()));
            sent += 1;
            sent_so_far.store(sent, Ordering::SeqCst);
            assert!(
                storm_start.elapsed() < STORM_MAX + Duration::from_secs(5),
                "the storm is too slow: {sent} messages in {:?}",
                storm_start.elapsed()
            );
        }
        let storm_took = storm_start.elapsed();
        total.store(sent, Ordering::SeqCst);
        let results: Vec<(usize, Option<String>, Client)> = readers
            .into_iter()
            .map(|r| r.join().expect("reader thread"))
            .collect();
        // Give the monitor a last chance to see the slow ones go.
        let until = Instant::now() + Duration::from_secs(5);
        while !all_slow_closed(&slow_closed_at) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        done.store(true, Ordering::SeqCst);
        (sent, storm_took, results)
    });
    let delivered_in = storm_start.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_kib(pid);
    // The kernel's high-water mark catches a peak between two samples.
    let hwm = proc_status_kib(pid, "VmHWM:");
    let rss_peak = (rss_peak.load(Ordering::SeqCst) as u64).max(hwm);

    // ---- figures ----
    let closed_at = slow_closed_at.into_inner().unwrap();
    let closed: Vec<Duration> = closed_at.iter().flatten().map(|c| c.0).collect();
    let closed_after_msgs: Vec<usize> = closed_at.iter().flatten().map(|c| c.1).collect();
    let still_online: Vec<&String> = slow_ids
        .iter()
        .zip(&closed_at)
        .filter(|(_, t)| t.is_none())
        .map(|(id, _)| id)
        .collect();
    let lost: usize = results.iter().map(|(n, _, _)| sent - (*n).min(sent)).sum();
    let errors: Vec<&String> = results.iter().filter_map(|(_, e, _)| e.as_ref()).collect();
    let metrics = node.metrics();
    let slow_metric = metrics.sum("shardcast_slow_consumers_closed_total");
    let dropped_metric = metrics.sum("shardcast_messages_dropped_total");
    let mib = |k: u64| k as f64 / 1024.0;
    let rss_limit_kib = (RSS_GROWTH_LIMIT_BYTES + kept_bound) as u64 / 1024;
    eprintln!(
        "[slow-consumer] {CLIENTS} clients in one group, {SLOW} never read; \
         send_queue_bytes = {QUEUE_BYTES}; {sent} messages of {STORM_MSG_BYTES} B ({:.1} MiB, \
         at least {min_messages} messages) sent in {:.2}s, all delivered after {:.2}s",
        (sent * frame_bytes) as f64 / 1048576.0,
        storm_took.as_secs_f64(),
        delivered_in.as_secs_f64()
    );
    eprintln!(
        "[slow-consumer] slow clients closed: {}/{SLOW}, offline after {:.3}s..{:.3}s of the \
         storm's start (after {}..{} messages = {:.1}..{:.1} MiB each); \
         shardcast_slow_consumers_closed_total {}, shardcast_messages_dropped_total {}",
        closed.len(),
        closed
            .iter()
            .min()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
        closed
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
        closed_after_msgs.iter().min().copied().unwrap_or_default(),
        closed_after_msgs.iter().max().copied().unwrap_or_default(),
        closed_after_msgs.iter().min().copied().unwrap_or_default() as f64 * frame_bytes as f64
            / 1048576.0,
        closed_after_msgs.iter().max().copied().unwrap_or_default() as f64 * frame_bytes as f64
            / 1048576.0,
        slow_metric,
        dropped_metric
    );
    eprintln!(
        "[slow-consumer] healthy clients: {} x {sent} messages, {lost} lost, {} errors",
        results.len(),
        errors.len()
    );
    eprintln!(
        "[slow-consumer] node VmRSS before {:.1} MiB, peak {:.1} MiB (+{:.1}, limit +{:.1} = \
         {CLIENTS} x send_queue_bytes + {:.1} MiB + {:.1} MiB kept for resumes), after {:.1} MiB",
        mib(rss_before),
        mib(rss_peak),
        mib(rss_peak.saturating_sub(rss_before)),
        mib(rss_limit_kib),
        mib(RSS_ALLOWANCE_BYTES as u64 / 1024),
        mib(kept_bound as u64 / 1024),
        mib(rss_after)
    );

    // ---- assertions ----
    assert!(
        errors.is_empty(),
        "healthy clients did not get the storm in order: {errors:?}"
    );
    assert_eq!(lost, 0, "messages lost to healthy clients");
    assert!(
        rss_peak.saturating_sub(rss_before) <= rss_limit_kib,
        "VmRSS grew by {:.1} MiB during the storm, more than {CLIENTS} full send queues of \
         {QUEUE_BYTES} B plus {:.1} MiB: are the send queues bounded?",
        mib(rss_peak - rss_before),
        mib(RSS_ALLOWANCE_BYTES as u64 / 1024)
    );
    assert!(
        still_online.is_empty(),
        "slow consumers never closed: {still_online:?}"
    );
    for id in &slow_ids {
        assert!(!node.is_online(SYS_A, id), "{id} still online");
    }
    assert!(
        slow_metric >= SLOW as f64,
        "shardcast_slow_consumers_closed_total = {slow_metric}, expected >= {SLOW}"
    );
    for (i, (s, id)) in slow.iter_mut().enumerate() {
        assert!(
            wait_eof(s, Duration::from_secs(5)).is_some(),
            "slow client {i} ({id}): socket not closed by the server"
        );
    }
    let list = node.call(SYS_A, "/api/get_online_list", json!({ "groupName": GROUP }));
    assert_eq!(
        list["count"],
        json!(CLIENTS - SLOW),
        "healthy members left: {list}"
    );
    if kept_bound > 0 {
        let clients = results.into_iter().map(|(_, _, c)| c).collect();
        members_acknowledge_the_storm(&node, clients);
    }
}

/// Healthy members read on (answering the node's pings): the replay log gives the
/// storm back within a few ping intervals.
fn members_acknowledge_the_storm(node: &Node, mut clients: Vec<Client>) {
    let kept = || node.metrics().sum("shardcast_resume_kept_bytes");
    let deadline = Instant::now() + 2 * WAIT;
    while kept() > 64.0 * 1024.0 {
        assert!(
            Instant::now() < deadline,
            "the replay log still holds {} B after the members answered pings",
            kept()
        );
        for c in &mut clients {
            let _ = c.next_event(Duration::from_millis(2));
        }
    }
}

/// A member with a 4 MiB receive buffer that does not read for now (it could take
/// megabytes before its socket pushes back).
fn roomy_member(node: &Node, group: &str) -> (TcpStream, String) {
    let (s, id) = raw_client(node, SYS_A, Some(4 << 20));
    node.bind(SYS_A, &id, group, "", "");
    (s, id)
}

/// Reads a raw member's frames until `n` frames with `msg` arrived; how many did.
fn count_raw(s: &mut TcpStream, msg: &str, n: usize) -> usize {
    let mut got = 0;
    while got < n {
        let Some((_, payload)) = read_raw_frame(s, Duration::from_secs(2)) else {
            break;
        };
        let v: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        if v["msg"] == json!(msg) {
            got += 1;
        }
    }
    got
}

/// A burst is not a slow consumer: members whose sockets can take far more than the
/// burst must not be cut because the burst reached their core all at once.
///
/// The same 480 group messages of 1 KiB (515 KiB per member; a member with a 4 MiB
/// receive buffer took about 10 MiB before it was cut when nothing read it, measured
/// here with steady sends) are sent
/// to 20 such members once one after another (the control) and then, to fresh groups,
/// as bursts: 8 keep-alive connections each pipelining 60 requests at the same moment.
/// Every member must stay online and then receive all 480 messages.
#[test]
fn a_burst_of_group_sends_does_not_cut_members_that_can_take_it() {
    const MEMBERS: usize = 20;
    const CONNS: usize = 8;
    const PER_CONN: usize = 60;
    const ROUNDS: usize = 3;
    let total = CONNS * PER_CONN;
    let node = Node::start(&format!("[ws]\nsend_queue_bytes = {QUEUE_BYTES}\n"));
    let data = "x".repeat(MSG_BYTES);

    // Control: one after another.
    let mut control: Vec<(TcpStream, String)> = (0..MEMBERS)
        .map(|_| roomy_member(&node, "control"))
        .collect();
    let start = Instant::now();
    let mut http = node.http();
    for i in 0..total {
        let body = json!({"groupName": "control", "msg": "control", "sendUserId": i.to_string(),
                          "data": data});
        expect_ok(http.api("/api/send_to_group", Some(SYS_A), &body.to_string()));
    }
    let control_took = start.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let control_cut = control
        .iter()
        .filter(|(_, id)| !node.is_online(SYS_A, id))
        .count();
    let control_got: Vec<usize> = control
        .iter_mut()
        .map(|(s, _)| count_raw(s, "control", total))
        .collect();

    // Bursts.
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let group = format!("burst-{round}");
        let mut members: Vec<(TcpStream, String)> =
            (0..MEMBERS).map(|_| roomy_member(&node, &group)).collect();
        let requests: Vec<Vec<u8>> = (0..CONNS)
            .map(|t| {
                let h = node.http();
                let mut bytes = Vec::new();
                for i in 0..PER_CONN {
                    let body = json!({"groupName": group, "msg": "burst",
                                      "sendUserId": format!("{t}-{i}"), "data": data})
                    .to_string();
                    bytes.extend(h.format_request(
                        "POST",
                        "/api/send_to_group",
                        &[("SystemId", SYS_A)],
                        body.as_bytes(),
                    ));
                }
                bytes
            })
            .collect();
        let start = Instant::now();
        std::thread::scope(|s| {
            for bytes in &requests {
                let node = &node;
                s.spawn(move || {
                    let mut h = node.http();
                    h.send_raw(bytes);
                    for _ in 0..PER_CONN {
                        let r = h.read_response(WAIT).expect("pipelined answer");
                        expect_ok((r.status, r.json()));
                    }
                });
            }
        });
        let took = start.elapsed();
        std::thread::sleep(Duration::from_millis(300));
        let cut = members
            .iter()
            .filter(|(_, id)| !node.is_online(SYS_A, id))
            .count();
        let got: Vec<usize> = members
            .iter_mut()
            .map(|(s, _)| count_raw(s, "burst", total))
            .collect();
        rounds.push((took, cut, got));
    }

    // ---- figures ----
    let kib = total * (MSG_BYTES + 80) / 1024;
    eprintln!(
        "[burst] control: {total} group messages ({kib} KiB per member) one after another in \
         {:.3}s: {control_cut}/{MEMBERS} members cut, received min {} of {total}",
        control_took.as_secs_f64(),
        control_got.iter().min().unwrap()
    );
    for (i, (took, cut, got)) in rounds.iter().enumerate() {
        eprintln!(
            "[burst] round {i}: the same {total} messages as a burst ({CONNS} connections x \
             {PER_CONN} pipelined) in {:.3}s: {cut}/{MEMBERS} members cut as slow consumers, \
             received min {} of {total}",
            took.as_secs_f64(),
            got.iter().min().unwrap()
        );
    }
    let slow = node.metric("shardcast_slow_consumers_closed_total");
    eprintln!("[burst] shardcast_slow_consumers_closed_total {slow}");

    // ---- assertions ----
    assert_eq!(control_cut, 0, "members cut by the control run");
    assert!(control_got.iter().all(|n| *n == total), "{control_got:?}");
    for (i, (_, cut, got)) in rounds.iter().enumerate() {
        assert_eq!(
            *cut, 0,
            "round {i}: a burst of {kib} KiB per member cut {cut} of {MEMBERS} members that \
             took the same messages sent one after another: a burst reaching a core at once is \
             counted as a slow consumer"
        );
        assert!(
            got.iter().all(|n| *n == total),
            "round {i}: messages received per member {got:?} of {total}"
        );
    }
}
