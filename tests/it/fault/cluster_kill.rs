//! A node dies under load (docs/api.md §4 "Cluster rules": answers never hang;
//! docs/cluster.md: a dead peer's links).
//!
//! Three nodes, one client on each. Two pushers — one through node 1, one through node 2
//! — call `send_to_client` continuously, round-robin to the clients on nodes 1, 2 and 3,
//! and record every push acknowledged with `online: true` and its messageId. Node 3 is
//! SIGKILLed mid-stream. No API call to node 1 or 2 may take longer than
//! `request_timeout` + 0.5 s (no stall), and every acknowledged push to a live client
//! (nodes 1 and 2) must arrive exactly once — none missing, no duplicates, nothing
//! unacknowledged. Node 3 is then restarted with the same config, and a new client on it
//! must receive pushes from node 1 (and reach node 1's client) within a few seconds.

use crate::support::{
    api::{api_timed, message_id_of, try_api, HANG},
    cluster::{start_cluster, CALL_LIMIT},
    node::Node,
    ws::{expect_message, Client, WsEvent},
    StopOnDrop, SYS_A, WAIT,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Pushes go on this long before the kill …
const BEFORE_KILL: Duration = Duration::from_millis(1500);
/// … and this long after it (past the dead node's lease expiry, so its removal from the
/// peers' view happens under load too).
const AFTER_KILL: Duration = Duration::from_millis(4000);
/// Pause between two pushes of one pusher.
const PUSH_PAUSE: Duration = Duration::from_millis(5);
/// How long a restarted node may take to be reachable again.
const REJOIN_LIMIT: Duration = Duration::from_secs(5);

/// One API call of a pusher.
struct Call {
    target: usize,
    sent_at: Instant,
    took: Duration,
    /// Some(messageId) when acknowledged with online: true.
    acked: Option<String>,
    /// The answer, or why there was none.
    outcome: Result<Value, String>,
}

/// Reads a client's frames until `stop`, then until it has been quiet for a while.
fn read_all(c: &mut Client, stop: &AtomicBool) -> Vec<Value> {
    let mut frames = Vec::new();
    let mut quiet_since: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            let q = *quiet_since.get_or_insert_with(Instant::now);
            if q.elapsed() >= Duration::from_millis(1500) {
                return frames;
            }
        }
        match c.next_event(Duration::from_millis(100)) {
            WsEvent::Text(t) => {
                frames.push(serde_json::from_str(t.trim_end()).unwrap());
                if stop.load(Ordering::SeqCst) {
                    quiet_since = Some(Instant::now());
                }
            }
            WsEvent::Timeout | WsEvent::Ping | WsEvent::Pong => {}
            other => panic!("client {}: connection ended: {other:?}", c.client_id),
        }
    }
}

fn pusher(node: &Node, targets: &[String], tag: &str, stop: &AtomicBool) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut seq = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let target = seq % targets.len();
        let body = json!({"clientId": targets[target], "msg": tag, "sendUserId": seq.to_string()});
        let sent_at = Instant::now();
        let r = try_api(node, "/api/send_to_client", Some(SYS_A), &body, HANG);
        let took = sent_at.elapsed();
        let (acked, outcome) = match r {
            Ok(a) => {
                let acked = (a.is_ok() && a.body["data"]["online"] == json!(true))
                    .then(|| a.body["data"]["messageId"].as_str().unwrap().to_string());
                let mut v = a.body.clone();
                v["httpStatus"] = json!(a.status);
                (acked, Ok(v))
            }
            Err(e) => (None, Err(e)),
        };
        calls.push(Call {
            target,
            sent_at,
            took,
            acked,
            outcome,
        });
        seq += 1;
        std::thread::sleep(PUSH_PAUSE);
    }
    calls
}

#[test]
fn killing_a_node_under_load_stalls_nothing_and_loses_no_acknowledged_push() {
    let mut c = start_cluster(3);
    let mut clients = [c[0].ws(SYS_A), c[1].ws(SYS_A)];
    let x = c[2].ws(SYS_A);
    let targets = [
        clients[0].client_id.clone(),
        clients[1].client_id.clone(),
        x.client_id.clone(),
    ];
    let stop = AtomicBool::new(false);

    let mut killed_at = Instant::now();
    let (calls, frames) = std::thread::scope(|s| {
        let _stop_on_panic = StopOnDrop(&stop);
        let readers: Vec<_> = clients
            .iter_mut()
            .map(|cl| {
                let stop = &stop;
                s.spawn(move || read_all(cl, stop))
            })
            .collect();
        let (n1, n2) = (&c[0].node, &c[1].node);
        let (t, st) = (&targets, &stop);
        let p1 = s.spawn(move || pusher(n1, t, "via-1", st));
        let p2 = s.spawn(move || pusher(n2, t, "via-2", st));

        std::thread::sleep(BEFORE_KILL);
        c[2].kill9();
        killed_at = Instant::now();
        std::thread::sleep(AFTER_KILL);
        stop.store(true, Ordering::SeqCst);
        let calls = [
            p1.join().expect("pusher via node 1"),
            p2.join().expect("pusher via node 2"),
        ];
        let frames: Vec<Vec<Value>> = readers
            .into_iter()
            .map(|r| r.join().expect("reader"))
            .collect();
        (calls, frames)
    });
    drop(x);

    // ---- figures ----
    let mut failures: Vec<String> = Vec::new();
    for (p, calls) in calls.iter().enumerate() {
        let via = p + 1;
        let slowest = calls.iter().map(|c| c.took).max().unwrap_or_default();
        let after_kill: Vec<&Call> = calls.iter().filter(|c| c.sent_at >= killed_at).collect();
        let slowest_after = after_kill.iter().map(|c| c.took).max().unwrap_or_default();
        let to_dead: Vec<&&Call> = after_kill.iter().filter(|c| c.target == 2).collect();
        let answer_of = |c: &Call| c.outcome.as_ref().ok().map(|v| v["data"].clone());
        let partial_answers = to_dead
            .iter()
            .filter(|c| answer_of(c).is_some_and(|d| d["partial"] == json!(true)))
            .count();
        let slow_answers = to_dead
            .iter()
            .filter(|c| c.took > Duration::from_millis(500))
            .count();
        // The first "offline" without `partial`: node 3 has left node `via`'s view.
        let left_view = to_dead
            .iter()
            .find(|c| {
                answer_of(c)
                    .is_some_and(|d| d["online"] == json!(false) && d.get("partial").is_none())
            })
            .map(|c| c.sent_at - killed_at);
        let acked_dead = to_dead.iter().filter(|c| c.acked.is_some()).count();
        let mut dead_answers: BTreeMap<String, usize> = BTreeMap::new();
        for c in &to_dead {
            let k = match &c.outcome {
                Ok(v) => format!(
                    "HTTP {} code {} online {} partial {}",
                    v["httpStatus"], v["code"], v["data"]["online"], v["data"]["partial"]
                ),
                Err(e) => format!("no answer: {e}"),
            };
            *dead_answers.entry(k).or_default() += 1;
        }
        let acked_live = calls
            .iter()
            .filter(|c| c.target < 2 && c.acked.is_some())
            .count();
        eprintln!(
            "[cluster-kill] via node {via}: {} calls ({} after the kill); slowest {:.1} ms \
             (after the kill {:.1} ms, limit {:.0} ms); {acked_live} acknowledged to live \
             clients",
            calls.len(),
            after_kill.len(),
            slowest.as_secs_f64() * 1e3,
            slowest_after.as_secs_f64() * 1e3,
            CALL_LIMIT.as_secs_f64() * 1e3,
        );
        eprintln!(
            "[cluster-kill] via node {via}: {} pushes to the dead node's client after the \
             kill: {partial_answers} answered offline+partial, {slow_answers} took > 500 ms \
             (waiting request_timeout for the dead link), {acked_dead} acknowledged online; \
             plain offline (node 3 out of the view) from {} after the kill; {dead_answers:?}",
            to_dead.len(),
            left_view
                .map(|d| format!("{:.3}s", d.as_secs_f64()))
                .unwrap_or_else(|| "never".into())
        );
        if acked_dead > 0 {
            failures.push(format!(
                "via node {via}: {acked_dead} pushes sent after node 3 died were acknowledged \
                 online: true"
            ));
        }
        for (i, call) in calls.iter().enumerate() {
            if call.took > CALL_LIMIT {
                failures.push(format!(
                    "via node {via}: call {i} to client {} took {:.3}s (sent {:+.3}s from the \
                     kill): {:?}",
                    call.target + 1,
                    call.took.as_secs_f64(),
                    call.sent_at.duration_since(killed_at).as_secs_f64()
                        - killed_at.duration_since(call.sent_at).as_secs_f64(),
                    call.outcome
                ));
            }
            if call.target < 2 && call.acked.is_none() {
                failures.push(format!(
                    "via node {via}: push {i} to the live client on node {} not acknowledged \
                     online: {:?}",
                    call.target + 1,
                    call.outcome
                ));
            }
            if call.target == 2 {
                let ok = match &call.outcome {
                    Ok(v) => {
                        (v["httpStatus"] == json!(200) && v["code"] == json!(0))
                            || (v["httpStatus"] == json!(503) && v["msg"] == json!("服务繁忙"))
                    }
                    Err(_) => false,
                };
                if !ok {
                    failures.push(format!(
                        "via node {via}: push {i} to the dead node's client: {:?}",
                        call.outcome
                    ));
                }
            }
        }
    }
    for (k, got) in frames.iter().enumerate() {
        let mut expected: HashMap<&str, &str> = HashMap::new();
        for (p, calls) in calls.iter().enumerate() {
            for call in calls.iter().filter(|c| c.target == k) {
                if let Some(mid) = &call.acked {
                    expected.insert(mid.as_str(), if p == 0 { "via-1" } else { "via-2" });
                }
            }
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut unexpected = Vec::new();
        for f in got {
            let mid = f["messageId"].as_str().unwrap_or("");
            *seen.entry(mid).or_default() += 1;
            if !expected.contains_key(mid) {
                unexpected.push(f.to_string());
            }
        }
        let missing: Vec<&&str> = expected
            .keys()
            .filter(|m| !seen.contains_key(**m))
            .collect();
        let dups: Vec<(&&str, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
        eprintln!(
            "[cluster-kill] client on node {}: {} acknowledged pushes, {} frames received, \
             {} missing, {} duplicated, {} unexpected",
            k + 1,
            expected.len(),
            got.len(),
            missing.len(),
            dups.len(),
            unexpected.len()
        );
        if !missing.is_empty() {
            failures.push(format!(
                "client on node {}: {} acknowledged pushes never arrived, e.g. {:?}",
                k + 1,
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>()
            ));
        }
        if !dups.is_empty() {
            failures.push(format!(
                "client on node {}: pushes delivered more than once: {:?}",
                k + 1,
                dups.iter().take(5).collect::<Vec<_>>()
            ));
        }
        if !unexpected.is_empty() {
            failures.push(format!(
                "client on node {}: frames that no acknowledged push explains: {:?}",
                k + 1,
                unexpected.iter().take(5).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(c[0].alive() && c[1].alive(), "a survivor died");

    // ---- node 3 comes back ----
    let restart_at = Instant::now();
    c[2].restart();
    let ready_after = restart_at.elapsed();
    let mut y = c[2].ws(SYS_A);
    let start = Instant::now();
    let mut attempts = 0;
    let reached_after = loop {
        attempts += 1;
        let body = json!({"clientId": y.client_id, "msg": "welcome back"});
        let ans = api_timed(&c[0], "/api/send_to_client", Some(SYS_A), &body);
        ans.within(
            CALL_LIMIT,
            "send_to_client from node 1 to the restarted node",
        );
        if ans.is_ok() && ans.body["data"]["online"] == json!(true) {
            let mid = message_id_of(&ans.body["data"]);
            expect_message(&mut y, &mid, WAIT);
            break start.elapsed();
        }
        assert!(
            start.elapsed() < REJOIN_LIMIT,
            "node 1 still cannot reach a client of the restarted node 3 after {:?} \
             ({attempts} attempts; last answer {})",
            REJOIN_LIMIT,
            ans.body
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // And the other way: the restarted node reaches node 1's client.
    let d = c[2].send_to_client(SYS_A, &clients[0].client_id, "from the restarted", json!(3));
    assert_eq!(d["online"], json!(true), "{d}");
    expect_message(&mut clients[0], &message_id_of(&d), WAIT);
    eprintln!(
        "[cluster-kill] node 3 restarted: ready after {:.2}s; a new client on it got a push \
         from node 1 {:.3}s after it connected ({attempts} attempts), and node 3 reaches node \
         1's client",
        ready_after.as_secs_f64(),
        reached_after.as_secs_f64()
    );
}
