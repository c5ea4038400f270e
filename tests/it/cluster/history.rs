//! Group history across nodes (docs/api.md §9): one owner numbers a stream whichever
//! node each send entered; a rolling restart of every node under a steady stream of
//! sends hands the streams over (offsets and epoch go on, nothing lost); an owner killed
//! with SIGKILL takes its history with it and the next owner starts a new epoch.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    api::try_api,
    cluster::{Cluster, LEASE_TTL},
    node::Node,
    ws::Client,
    QUIET, SYS_A, WAIT,
};

fn rooms(size: usize) -> String {
    format!("[history]\ngroups = [{{ prefix = \"room:\", size = {size}, ttl = \"10m\" }}]")
}

/// The next push of `group`'s stream that `c` gets (notices skipped).
fn next_push(c: &mut Client, group: &str, wait: Duration) -> Option<Value> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = c.recv_json(left)?;
        if v["groupName"] == group && v.get("offset").is_some() {
            return Some(v);
        }
    }
}

fn send(node: &Node, group: &str, n: u64) -> Result<(), String> {
    let body = json!({"groupName": group, "data": {"n": n}});
    let answer = try_api(
        node,
        "/api/send_to_group",
        Some(SYS_A),
        &body,
        Duration::from_secs(5),
    )?;
    match answer.status {
        200 if answer.body["code"] == 0 => Ok(()),
        _ => Err(format!("{} {}", answer.status, answer.body)),
    }
}

/// One `send_to_group` on a connection of its own; the answer's body when it is 200,
/// None when the node is down, restarting or answers anything else.
fn post_once(addr: &str, body: &str) -> Option<Value> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "POST /api/send_to_group HTTP/1.1\r\nHost: t\r\nSystemId: {SYS_A}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| serde_json::from_str(body).ok())?
}

fn bind(node: &Node, c: &Client, group: &str, extra: Value) -> Value {
    let mut body = json!({"clientId": c.client_id, "groupName": group});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    node.call(SYS_A, "/api/bind_to_group", body)
}

#[test]
fn one_stream_in_offset_order_whichever_node_each_send_entered() {
    let c = Cluster::start_with(3, &rooms(1000));
    let mut members: Vec<Client> = Vec::new();
    for node in c.nodes.iter() {
        for _ in 0..2 {
            let m = node.ws(SYS_A);
            node.bind(SYS_A, &m.client_id, "room:x", "", "");
            members.push(m);
        }
    }
    for m in &mut members {
        m.drain(QUIET);
    }
    const EACH: u64 = 100;
    thread::scope(|s| {
        for (p, node) in c.nodes[..2].iter().enumerate() {
            s.spawn(move || {
                for n in 0..EACH {
                    send(node, "room:x", p as u64 * 1000 + n).expect("send");
                }
            });
        }
    });
    let mut epoch = None;
    for (i, m) in members.iter_mut().enumerate() {
        let mut offsets = Vec::new();
        let mut data = Vec::new();
        while let Some(p) = next_push(m, "room:x", WAIT) {
            offsets.push(p["offset"].as_u64().unwrap());
            data.push(p["data"]["n"].as_u64().unwrap());
            epoch.get_or_insert(p["epoch"].clone());
            assert_eq!(Some(&p["epoch"]), epoch.as_ref(), "one epoch");
            if offsets.len() as u64 == 2 * EACH {
                break;
            }
        }
        let expected: Vec<u64> = (1..=2 * EACH).collect();
        assert_eq!(
            offsets,
            expected,
            "member {i} (node {}) saw the stream out of order",
            i / 2 + 1
        );
        data.sort_unstable();
        let sent: Vec<u64> = (0..EACH).chain(1000..1000 + EACH).collect();
        assert_eq!(data, sent, "member {i}");
    }
}

/// SIGTERM and start again, node after node, while a publisher sends without pause
/// (through whichever node answers): afterwards a client that binds since the first
/// push gets `recovered:true` and every push that was answered 200.
#[test]
fn a_rolling_restart_of_every_node_loses_no_push() {
    let mut c = Cluster::start_with(3, &rooms(100_000));
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Vec::<u64>::new()));
    let addrs = Arc::new(Mutex::new(
        c.nodes
            .iter()
            .map(|n| n.addr().to_owned())
            .collect::<Vec<_>>(),
    ));
    let publisher = {
        let (stop, answered, addrs) = (stop.clone(), answered.clone(), addrs.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            let mut turn = 0usize;
            while !stop.load(Ordering::Acquire) {
                let addr = {
                    let a = addrs.lock().unwrap();
                    turn += 1;
                    a[turn % a.len()].clone()
                };
                let body = json!({"groupName": "room:roll", "data": {"n": n}}).to_string();
                if post_once(&addr, &body).is_some_and(|v| v["code"] == 0) {
                    answered.lock().unwrap().push(n);
                }
                n += 1;
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    thread::sleep(Duration::from_millis(500));
    let first = c[0].call(
        SYS_A,
        "/api/get_group_history",
        json!({"groupName": "room:roll", "limit": 1}),
    );
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    assert!(!epoch.is_empty(), "{first}");
    for i in 0..3 {
        c[i].restart();
        addrs.lock().unwrap()[i] = c[i].addr().to_owned();
        // Let the others see it back before the next one goes.
        thread::sleep(LEASE_TTL);
    }
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    publisher.join().unwrap();
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() > 200,
        "the publisher was answered only {} times",
        answered.len()
    );

    let mut reader = c[1].ws(SYS_A);
    let since = json!({"since": {"offset": 0, "epoch": epoch}});
    let at = bind(&c[1], &reader, "room:roll", since);
    assert_eq!(
        (at["recovered"].clone(), at["epoch"].clone()),
        (json!(true), json!(epoch)),
        "{at}"
    );
    let top = at["offset"].as_u64().unwrap();
    let mut got = Vec::new();
    let mut offsets = Vec::new();
    while (offsets.len() as u64) < top {
        let p = next_push(&mut reader, "room:roll", WAIT).expect("every kept push is replayed");
        offsets.push(p["offset"].as_u64().unwrap());
        got.push(p["data"]["n"].as_u64().unwrap());
    }
    assert_eq!(offsets, (1..=top).collect::<Vec<u64>>());
    let lost: Vec<u64> = answered
        .iter()
        .filter(|n| !got.contains(n))
        .copied()
        .collect();
    eprintln!(
        "[history] rolling restart: {} sends answered, {} pushes in the stream, {} lost",
        answered.len(),
        top,
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "answered 200 but not in the stream: {lost:?}"
    );
}

#[test]
fn a_killed_owner_takes_its_history_and_the_next_owner_starts_a_new_epoch() {
    let c = Cluster::start_with(3, &rooms(100));
    for n in 1..=5 {
        send(&c[0], "room:k", n).unwrap();
    }
    let page = c[0].call(
        SYS_A,
        "/api/get_group_history",
        json!({"groupName": "room:k"}),
    );
    let epoch = page["epoch"].as_str().unwrap().to_owned();
    let owner = (0..3)
        .find(|i| c[*i].metric("shardcast_history_streams") > 0.0)
        .expect("one node owns the stream");
    c[owner].kill9();
    let other = (owner + 1) % 3;
    // The owner's lease runs out; the others route to the next owner.
    thread::sleep(LEASE_TTL + Duration::from_secs(1));
    let mut reader = c[other].ws(SYS_A);
    let since = json!({"since": {"offset": 5, "epoch": epoch}});
    let at = bind(&c[other], &reader, "room:k", since);
    assert_eq!(at["recovered"], false, "{at}");
    assert_ne!(at["epoch"], epoch.as_str());
    assert_eq!(at["offset"], 0);
    send(&c[other], "room:k", 6).unwrap();
    let p = next_push(&mut reader, "room:k", WAIT).expect("the new stream's first push");
    assert_eq!(
        (p["offset"].clone(), p["epoch"].clone()),
        (json!(1), at["epoch"].clone())
    );
}
