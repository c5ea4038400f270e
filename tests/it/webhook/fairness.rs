//! Webhook fairness (docs/api.md §2.2) against real receivers: one system's hung
//! receiver delays no other system's events and holds at most half of `webhook.queue`,
//! a receiver that fails 5 times in a row is skipped for 10 s (its events dropped
//! with reason `circuit_open`), then tried again, and that breaker is the failing
//! system's own: a receiver shared by two systems that refuses one still gets the
//! other's events.
//!
//! Two systems with receivers of their own need token mode (`webhookUrl` at register).

use crate::support::{node::Node, receiver::Receiver, ws::Client};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-secret-for-fairness-tests";
const DROPPED: &str = "shardcast_webhook_dropped_total";

/// A token-mode node with no global `webhook.url`; `webhook` holds `[webhook]` keys.
fn token_node(webhook: &str) -> Node {
    Node::start(&format!(
        "[api]\nauth = \"token\"\nadmin_token = \"{ADMIN}\"\nsystems = []\n[webhook]\n{webhook}"
    ))
}

/// Registers `system` with its own receiver.
fn register(node: &Node, system: &str, receiver: &Receiver) {
    let body = json!({"systemId": system, "webhookUrl": receiver.url("/hook")});
    let (status, v) =
        node.api_with_headers("/api/register", &[("AdminToken", ADMIN)], &body.to_string());
    assert_eq!(
        (status, v["code"].clone()),
        (200, json!(0)),
        "register: {v}"
    );
}

fn dropped(node: &Node, reason: &str) -> f64 {
    node.metrics().sum_where(DROPPED, &[("reason", reason)])
}

/// Polls `what` until `ok` holds or `limit` has passed; its last value.
fn poll<T: std::fmt::Debug>(
    limit: Duration,
    what: impl Fn() -> T,
    ok: impl Fn(&T) -> bool,
) -> (T, bool) {
    let deadline = Instant::now() + limit;
    loop {
        let v = what();
        if ok(&v) || Instant::now() >= deadline {
            let done = ok(&v);
            return (v, done);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The events of `clients` that `receiver` has now.
fn events_of(receiver: &Receiver, clients: &[String]) -> Vec<Value> {
    receiver
        .events()
        .into_iter()
        .filter(|e| clients.iter().any(|id| e["clientId"] == json!(id)))
        .collect()
}

#[test]
fn a_hung_receiver_of_one_system_delays_no_other_system() {
    let hung = Receiver::start(|_| None);
    let fine = Receiver::ok();
    let node = token_node("retries = 3\ntimeout = \"5s\"");
    register(&node, "hung", &hung);
    register(&node, "fine", &fine);
    // Enough connections of "hung" that its connect events occupy every lane (32 per
    // system now; 32 for the whole node before).
    let _stuck: Vec<Client> = (0..150).map(|_| node.ws("hung")).collect();
    hung.wait_for("the hung system's lanes at work", |ev| ev.len() >= 25);

    let started = Instant::now();
    let mut clients: Vec<Client> = (0..20).map(|_| node.ws("fine")).collect();
    let ids: Vec<String> = clients.iter().map(|c| c.client_id.clone()).collect();
    for c in clients.iter_mut().take(10) {
        c.close_cleanly();
    }
    let (events, all) = poll(
        Duration::from_secs(3),
        || events_of(&fine, &ids),
        |ev| ev.len() >= 30,
    );
    assert!(
        all,
        "the fine system got {} of its 30 events within 3 s: {events:#?}",
        events.len()
    );
    eprintln!("30 events of the fine system in {:?}", started.elapsed());
    for (i, id) in ids.iter().enumerate() {
        let kinds: Vec<&Value> = events
            .iter()
            .filter(|e| e["clientId"] == json!(id))
            .map(|e| &e["event"])
            .collect();
        let expected: &[&str] = if i < 10 {
            &["connect", "disconnect"]
        } else {
            &["connect"]
        };
        assert_eq!(kinds, expected, "{id}: {events:#?}");
    }
}

#[test]
fn a_hung_system_holds_at_most_half_the_queue() {
    let hung = Receiver::start(|_| None);
    let fine = Receiver::ok();
    // Queue 20: a system holds at most 10. The timeout keeps the breaker shut here.
    let node = token_node("retries = 0\ntimeout = \"30s\"\nqueue = 20");
    register(&node, "hung", &hung);
    register(&node, "fine", &fine);
    let _stuck: Vec<Client> = (0..30).map(|_| node.ws("hung")).collect();
    let (n, ok) = poll(
        Duration::from_secs(5),
        || node.metric(DROPPED),
        |&n| n >= 20.0,
    );
    assert!(
        ok,
        "drops: {n}, expected the 20 over the hung system's share of 10"
    );

    let clients: Vec<Client> = (0..10).map(|_| node.ws("fine")).collect();
    let ids: Vec<String> = clients.iter().map(|c| c.client_id.clone()).collect();
    let (events, all) = poll(
        Duration::from_secs(3),
        || events_of(&fine, &ids),
        |ev| ev.len() >= 10,
    );
    assert!(
        all,
        "the fine system got {} of 10: {events:#?}",
        events.len()
    );
    // Exactly the hung system's share is still held, nothing more was dropped.
    let (queued, ok) = poll(
        Duration::from_secs(3),
        || node.metric("shardcast_webhook_queued"),
        |&q| q == 10.0,
    );
    assert!(ok, "queued {queued}, expected the hung system's 10");
    // The 20 dropped are the hung system's: over its share when the webhook thread
    // took them, or refused at once while the channel still held 20 of its events
    // not yet taken (`queue_full`, at most 10 of them: the share holds the rest).
    let metrics = node.metrics();
    let share = metrics.sum_where(DROPPED, &[("reason", "system_share")]);
    let full = metrics.sum_where(DROPPED, &[("reason", "queue_full")]);
    assert_eq!(share + full, 20.0, "{metrics}");
    assert!(share >= 10.0, "{metrics}");
    assert!(hung.hooks().len() <= 10, "{} requests", hung.hooks().len());
}

#[test]
fn a_failing_receiver_is_skipped_for_10s_then_tried_again() {
    // Fails the first 5 requests, then recovers.
    let receiver = Receiver::start(|n| Some(if n < 5 { 500 } else { 200 }));
    let node = Node::start(&format!(
        "[webhook]\nurl = \"{}\"\nretries = 0\ntimeout = \"2s\"",
        receiver.url("/hook")
    ));
    let failing: Vec<Client> = (0..5).map(|_| node.ws(crate::support::SYS_A)).collect();
    let (n, ok) = poll(
        Duration::from_secs(5),
        || node.metric(DROPPED),
        |&n| n >= 5.0,
    );
    assert!(ok, "drops: {n}, expected the 5 failed connects");
    let opened = Instant::now();
    assert_eq!(receiver.hooks().len(), 5);

    // Open: the event is not sent, it is dropped and counted.
    let skipped = node.ws(crate::support::SYS_A);
    let (n, ok) = poll(
        Duration::from_secs(3),
        || node.metric(DROPPED),
        |&n| n >= 6.0,
    );
    let sent = receiver.hooks().len();
    assert!(ok, "drops: {n}, expected 6 (requests sent: {sent})");
    assert_eq!(dropped(&node, "circuit_open"), 1.0);
    assert!(
        opened.elapsed() < Duration::from_secs(9),
        "the test was too slow to see the breaker open"
    );
    assert_eq!(receiver.hooks().len(), 5, "nothing sent while open");

    // After the window, events flow again (one success closes the breaker).
    std::thread::sleep(Duration::from_millis(10_500).saturating_sub(opened.elapsed()));
    let back: Vec<Client> = (0..3).map(|_| node.ws(crate::support::SYS_A)).collect();
    let ids: Vec<String> = back.iter().map(|c| c.client_id.clone()).collect();
    receiver.wait_for_each("connect", &ids);
    node.wait_metric(
        "shardcast_webhook_delivered_total",
        Duration::from_secs(3),
        "the 3 connects after the window",
        |n| n >= 3.0,
    );
    assert_eq!(dropped(&node, "circuit_open"), 1.0);
    assert_eq!(dropped(&node, "failed"), 5.0);
    let events = receiver.events();
    assert!(
        events
            .iter()
            .all(|e| e["clientId"] != json!(skipped.client_id)),
        "the skipped connect never went out: {events:#?}"
    );
    drop(failing);
}

#[test]
fn a_receiver_refusing_one_system_opens_that_systems_breaker_only() {
    // One receiver, one URL, two systems: it answers 403 to the events of "refused"
    // (a tenant it does not know) and 200 to those of "fine".
    let receiver = Receiver::start_with(|_, hook| {
        Some(match hook.json()["systemId"] == json!("refused") {
            true => 403,
            false => 200,
        })
    });
    let node = token_node("retries = 0\ntimeout = \"2s\"");
    register(&node, "refused", &receiver);
    register(&node, "fine", &receiver);
    let refused_events = || {
        receiver
            .events()
            .into_iter()
            .filter(|e| e["systemId"] == json!("refused"))
            .count()
    };
    // Five refused connects open the breaker of ("refused", the URL)...
    let mut refused: Vec<Client> = (0..5).map(|_| node.ws("refused")).collect();
    let (n, ok) = poll(
        Duration::from_secs(5),
        || dropped(&node, "failed"),
        |&n| n >= 5.0,
    );
    assert!(ok, "failed drops: {n}, expected the 5 refused connects");
    let opened = Instant::now();
    // ... and the next one of that system is dropped unsent.
    refused.push(node.ws("refused"));
    let (n, ok) = poll(
        Duration::from_secs(3),
        || dropped(&node, "circuit_open"),
        |&n| n >= 1.0,
    );
    assert!(
        ok,
        "circuit_open drops: {n}, expected the 6th refused connect"
    );
    assert_eq!(
        refused_events(),
        5,
        "nothing of \"refused\" sent while open"
    );

    // Meanwhile every event of "fine" goes to the same URL and arrives: 6 connects
    // and 3 disconnects.
    let mut fine: Vec<Client> = (0..6).map(|_| node.ws("fine")).collect();
    let ids: Vec<String> = fine.iter().map(|c| c.client_id.clone()).collect();
    for c in fine.iter_mut().take(3) {
        c.close_cleanly();
    }
    let (events, all) = poll(
        Duration::from_secs(5),
        || events_of(&receiver, &ids),
        |ev| ev.len() >= 9,
    );
    let metrics = node.metrics();
    assert!(
        all,
        "\"fine\" got {} of its 9 events through the URL whose \"refused\" breaker \
         is open: {events:#?}\n{metrics}",
        events.len()
    );
    assert!(
        opened.elapsed() < Duration::from_secs(9),
        "the test was too slow: the breaker may have closed meanwhile"
    );
    assert_eq!(dropped(&node, "circuit_open"), 1.0, "{metrics}");
    assert_eq!(dropped(&node, "failed"), 5.0, "{metrics}");
    node.wait_metric(
        "shardcast_webhook_delivered_total",
        Duration::from_secs(3),
        "the 9 events of \"fine\"",
        |n| n >= 9.0,
    );
    // And "refused" is still skipped: "fine"'s successes did not close its breaker.
    refused.push(node.ws("refused"));
    let (n, ok) = poll(
        Duration::from_secs(3),
        || dropped(&node, "circuit_open"),
        |&n| n >= 2.0,
    );
    assert!(ok, "circuit_open drops: {n}, expected 2");
    assert_eq!(refused_events(), 5);
}
