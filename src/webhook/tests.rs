//! End-to-end tests against a tiny real HTTP/1.1 receiver on 127.0.0.1.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// One request as the receiver read it.
#[derive(Debug, Clone)]
struct Seen {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Seen {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
}

type Answer = dyn Fn(usize) -> Option<u16> + Send + Sync;

struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl Receiver {
    /// `answer(n)`: the status for the n-th request (from 0); None = read
    /// it and never answer.
    fn start(answer: impl Fn(usize) -> Option<u16> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Answer> = Arc::new(answer);
        let connections = Arc::new(AtomicUsize::new(0));
        let (log, accepted) = (Arc::clone(&seen), Arc::clone(&connections));
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                accepted.fetch_add(1, Relaxed);
                let (log, answer) = (Arc::clone(&log), Arc::clone(&answer));
                thread::spawn(move || serve(stream, &log, &*answer));
            }
        });
        Self {
            url,
            seen,
            connections,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn endpoint(&self, secret: Option<&str>) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            url: self.url.clone(),
            secret: secret.map(str::to_owned),
        })
    }
}

/// One keep-alive connection of the receiver.
fn serve(stream: TcpStream, log: &Mutex<Vec<Seen>>, answer: &Answer) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    while let Some(seen) = read_request(&mut reader) {
        let n = {
            let mut log = log.lock().expect("lock");
            log.push(seen);
            log.len() - 1
        };
        let Some(status) = answer(n) else {
            loop {
                thread::park(); // hang: keep the connection open, say nothing
            }
        };
        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<Seen> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
    }
    let length = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen { headers, body })
}

fn config(retries: u32, queue: usize, timeout: Duration) -> WebhookConfig {
    WebhookConfig {
        retries,
        queue,
        timeout,
        ..WebhookConfig::default()
    }
}

fn event(endpoint: &Arc<Endpoint>, client: &str, kind: EventKind) -> Event {
    Event {
        endpoint: Arc::clone(endpoint),
        kind,
        system_id: "demo".into(),
        client_id: client.into(),
        user_id: "u1".into(),
        groups: vec!["g1".into(), "g\"2".into()],
        time_ms: 1_700_000_000_123,
    }
}

/// Polls `done` for up to `limit`.
fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    done()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn bodies_keep_field_order_and_are_signed() {
    let receiver = Receiver::start(|_| Some(200));
    let (hooks, thread) = start(&config(0, 10, Duration::from_secs(5))).expect("start");
    let endpoint = receiver.endpoint(Some(SECRET));
    let data = r#"{"type":"send_to_group","groupName":"g1","data":[1,{"a":"é"}]}"#;
    for kind in [
        EventKind::Connect,
        EventKind::Disconnect { reason: "shutdown" },
        EventKind::Message { data: data.into() },
    ] {
        hooks.submit(event(&endpoint, "c1", kind)).expect("submit");
    }
    thread.finish(Duration::from_secs(5));
    let head = r#"{"event":"EV","eventId":"ID","systemId":"demo","clientId":"c1","userId":"u1","groups":["g1","g\"2"],"time":1700000000123"#;
    let expected = [
        format!("{}}}", head.replace("EV", "connect")),
        format!(
            r#"{},"reason":"shutdown"}}"#,
            head.replace("EV", "disconnect")
        ),
        format!(r#"{},"data":{data}}}"#, head.replace("EV", "message")),
    ];
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    let mut ids = std::collections::HashSet::new();
    for (seen, expected) in seen.iter().zip(expected) {
        let id = seen.json()["eventId"].as_str().expect("eventId").to_owned();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(ids.insert(id.clone()), "eventId {id} given twice");
        let expected = expected.replace(r#""eventId":"ID""#, &format!(r#""eventId":"{id}""#));
        assert_eq!(String::from_utf8_lossy(&seen.body), expected);
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
        mac.update(&seen.body);
        let want = format!("sha256={}", hex(&mac.finalize().into_bytes()));
        assert_eq!(seen.headers["x-shardcast-signature"], want);
        assert_eq!(seen.headers["content-type"], "application/json");
        assert_eq!(seen.headers["user-agent"], USER_AGENT_FOR_TESTS);
    }
    assert_eq!(hooks.stats().delivered(), 3);
}

const USER_AGENT_FOR_TESTS: &str = concat!("shardcast/", env!("CARGO_PKG_VERSION"));

#[test]
fn open_mode_sends_no_signature() {
    let receiver = Receiver::start(|_| Some(204));
    let (hooks, thread) = start(&config(0, 10, Duration::from_secs(5))).expect("start");
    let endpoint = receiver.endpoint(None);
    hooks
        .submit(event(&endpoint, "c1", EventKind::Connect))
        .expect("submit");
    thread.finish(Duration::from_secs(5));
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].headers.contains_key("x-shardcast-signature"));
    assert_eq!(seen[0].json()["event"], "connect");
    assert_eq!(hooks.stats().delivered(), 1);
}

#[test]
fn a_500_is_retried_and_then_delivered() {
    let receiver = Receiver::start(|n| Some(if n == 0 { 500 } else { 200 }));
    let (hooks, thread) = start(&config(3, 10, Duration::from_secs(5))).expect("start");
    let endpoint = receiver.endpoint(Some(SECRET));
    hooks
        .submit(event(&endpoint, "c1", EventKind::Connect))
        .expect("submit");
    assert!(wait_until(Duration::from_secs(5), || hooks
        .stats()
        .delivered()
        == 1));
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2);
    // The retry is the same request: the same body, the same eventId.
    assert_eq!(seen[0].body, seen[1].body);
    assert!(seen[1].json()["eventId"].is_string());
    let mut text = String::new();
    hooks.stats().render(&mut text);
    assert!(
        text.contains("\nshardcast_webhook_retries_total 1\n"),
        "{text}"
    );
    assert_eq!(hooks.stats().dropped(), 0);
    assert_eq!(hooks.stats().queued(), 0);
    thread.finish(Duration::from_secs(1));
}

#[test]
fn each_connection_keeps_its_order() {
    // Every 7th request fails, so retries interleave with other deliveries.
    let receiver = Receiver::start(|n| Some(if n % 7 == 3 { 503 } else { 200 }));
    let (hooks, thread) = start(&config(10, 1000, Duration::from_secs(5))).expect("start");
    let endpoint = receiver.endpoint(None);
    for i in 0..200 {
        let client = if i % 2 == 0 { "alpha" } else { "beta" };
        let mut e = event(&endpoint, client, EventKind::Connect);
        e.user_id = (i / 2).to_string();
        hooks.submit(e).expect("submit");
    }
    thread.finish(Duration::from_secs(20));
    assert_eq!(hooks.stats().delivered(), 200);
    // Keep-alive: at most two lanes at work, each reusing its connection.
    assert!(receiver.connections.load(Relaxed) <= 2);
    for client in ["alpha", "beta"] {
        let mut order: Vec<u64> = receiver
            .seen()
            .iter()
            .map(Seen::json)
            .filter(|j| j["clientId"] == client)
            .filter_map(|j| j["userId"].as_str()?.parse().ok())
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "{client}: {order:?}"
        );
        order.dedup();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
    }
}

#[test]
fn the_queue_bound_refuses_and_the_system_share_drops_and_counts() {
    // Queue 5: a system may hold 3 (half, rounded up).
    let receiver = Receiver::start(|_| None);
    let (hooks, thread) = start(&config(0, 5, Duration::from_secs(30))).expect("start");
    let endpoint = receiver.endpoint(None);
    let of = |system: &str, i: usize| {
        let mut e = event(&endpoint, &format!("{system}{i}"), EventKind::Connect);
        e.system_id = system.into();
        e
    };
    for i in 0..3 {
        assert_eq!(hooks.submit(of("a", i)), Ok(()));
    }
    // Accepted by submit (only the global bound is checked there), dropped
    // by the webhook thread, and its place given back.
    assert_eq!(hooks.submit(of("a", 3)), Ok(()));
    assert!(wait_until(Duration::from_secs(5), || hooks
        .stats()
        .dropped_for(DropReason::SystemShare)
        == 1));
    assert!(wait_until(Duration::from_secs(5), || hooks
        .stats()
        .queued()
        == 3));
    for i in 0..2 {
        assert_eq!(hooks.submit(of("b", i)), Ok(()));
    }
    assert_eq!(hooks.submit(of("b", 2)), Err(Refused::QueueFull));
    assert_eq!(hooks.stats().dropped_for(DropReason::QueueFull), 1);
    assert_eq!(hooks.stats().queued(), 5);
    assert!(wait_until(Duration::from_secs(5), || hooks
        .lanes_and_systems()
        .1
        == 2));
    assert_eq!(hooks.stats().dropped_for(DropReason::SystemShare), 1);
    thread.finish(Duration::from_millis(100));
    assert_eq!(hooks.stats().queued(), 0);
    assert_eq!(hooks.stats().dropped_for(DropReason::Shutdown), 5);
    assert_eq!(hooks.stats().dropped(), 7);
}

#[test]
fn a_hung_receiver_costs_only_webhook_delivery() {
    let receiver = Receiver::start(|_| None);
    let (hooks, thread) = start(&config(1, 20, Duration::from_millis(200))).expect("start");
    let endpoint = receiver.endpoint(None);
    let started = Instant::now();
    for i in 0..10_000 {
        let e = event(&endpoint, &format!("c{i}"), EventKind::Connect);
        let _ = hooks.submit(e);
    }
    assert!(started.elapsed() < Duration::from_secs(1), "submit blocked");
    assert!(wait_until(Duration::from_secs(10), || hooks
        .stats()
        .dropped()
        == 10_000));
    let stats = hooks.stats();
    assert_eq!(stats.delivered(), 0);
    assert_eq!(stats.queued(), 0);
    // One system: half of the queue went to its lanes; the rest was refused
    // by submit (queue full) or dropped by the thread (over the share).
    let ended = stats.dropped_for(DropReason::Failed) + stats.dropped_for(DropReason::CircuitOpen);
    assert_eq!(ended, 10);
    let over =
        stats.dropped_for(DropReason::QueueFull) + stats.dropped_for(DropReason::SystemShare);
    assert_eq!(over, 9_990);
    assert!(stats.dropped_for(DropReason::SystemShare) >= 10);
    thread.finish(Duration::from_secs(1));
}

#[test]
fn one_hung_system_does_not_hold_up_another() {
    let hung = Receiver::start(|_| None);
    let fine = Receiver::start(|_| Some(200));
    let (hooks, thread) = start(&config(3, 1000, Duration::from_secs(30))).expect("start");
    let (to_hung, to_fine) = (hung.endpoint(None), fine.endpoint(None));
    // Connections of "a" on every one of its lanes, and then some.
    let mut lanes = std::collections::HashSet::new();
    let mut held = 0;
    while lanes.len() < LANES || held < 100 {
        let client = format!("a{held}");
        lanes.insert(lane_of(&client));
        let mut e = event(&to_hung, &client, EventKind::Connect);
        e.system_id = "a".into();
        hooks.submit(e).expect("submit a");
        held += 1;
    }
    assert!(wait_until(Duration::from_secs(5), || hung.seen().len() == LANES));
    for i in 0..20 {
        let client = format!("b{i}");
        for kind in [
            EventKind::Connect,
            EventKind::Disconnect {
                reason: "client_closed",
            },
        ] {
            let mut e = event(&to_fine, &client, kind);
            e.system_id = "b".into();
            hooks.submit(e).expect("submit b");
        }
    }
    assert!(
        wait_until(Duration::from_secs(2), || fine.seen().len() == 40),
        "b got {} of 40",
        fine.seen().len()
    );
    let seen: Vec<_> = fine.seen().iter().map(Seen::json).collect();
    for i in 0..20 {
        let kinds: Vec<_> = seen
            .iter()
            .filter(|j| j["clientId"] == format!("b{i}").as_str())
            .map(|j| j["event"].clone())
            .collect();
        assert_eq!(kinds, ["connect", "disconnect"]);
    }
    assert_eq!(hooks.stats().queued(), held);
    thread.finish(Duration::from_millis(100));
}

#[test]
fn lanes_and_system_counts_are_reclaimed_when_idle() {
    let receiver = Receiver::start(|_| Some(200));
    let (hooks, thread) = start(&config(0, 1000, Duration::from_secs(5))).expect("start");
    let endpoint = receiver.endpoint(None);
    for i in 0..200 {
        let mut e = event(&endpoint, &format!("c{i}"), EventKind::Connect);
        e.system_id = format!("s{}", i % 10);
        hooks.submit(e).expect("submit");
    }
    // Lanes are made on the webhook thread: wait for the deliveries first.
    assert!(wait_until(Duration::from_secs(10), || {
        hooks.stats().delivered() == 200 && hooks.lanes_and_systems() == (0, 0)
    }));
    assert_eq!(hooks.stats().queued(), 0);
    thread.finish(Duration::from_secs(1));
}

#[test]
fn five_failures_in_a_row_open_the_circuit() {
    let receiver = Receiver::start(|_| Some(500));
    let (hooks, thread) = start(&config(0, 100, Duration::from_secs(5))).expect("start");
    let endpoint = receiver.endpoint(None);
    // One connection, one lane: the events go one after the other.
    for _ in 0..8 {
        hooks
            .submit(event(&endpoint, "c1", EventKind::Connect))
            .expect("submit");
    }
    assert!(wait_until(Duration::from_secs(5), || hooks
        .stats()
        .dropped()
        == 8));
    let stats = hooks.stats();
    assert_eq!(stats.dropped_for(DropReason::Failed), 5);
    assert_eq!(stats.dropped_for(DropReason::CircuitOpen), 3);
    assert_eq!(receiver.seen().len(), 5);
    let mut text = String::new();
    stats.render(&mut text);
    assert!(
        text.contains("\nshardcast_webhook_dropped_total{reason=\"circuit_open\"} 3\n"),
        "{text}"
    );
    thread.finish(Duration::from_secs(1));
}

#[test]
fn a_breaker_opens_for_10s_then_one_success_closes_it() {
    let breakers = breaker::Breakers::default();
    let t0 = tokio::time::Instant::now();
    for _ in 1..breaker::FAILURES {
        assert!(!breakers.failure("s", "u", t0));
    }
    assert!(!breakers.is_open("s", "u", t0));
    assert!(breakers.failure("s", "u", t0), "the 5th failure opens it");
    assert!(breakers.is_open("s", "u", t0 + Duration::from_millis(9_999)));
    assert!(!breakers.is_open("s", "other", t0));
    let later = t0 + breaker::OPEN_FOR;
    assert!(!breakers.is_open("s", "u", later), "tried again after 10 s");
    assert!(
        breakers.failure("s", "u", later),
        "one more failure reopens it"
    );
    assert!(breakers.is_open("s", "u", later));
    breakers.success("s", "u");
    assert!(!breakers.is_open("s", "u", later));
    assert_eq!(breakers.tracked(), 0, "a closed breaker is forgotten");
}

#[test]
fn systems_sharing_a_url_have_a_breaker_each() {
    let breakers = breaker::Breakers::default();
    let now = tokio::time::Instant::now();
    for _ in 0..breaker::FAILURES {
        breakers.failure("refused", "u", now);
    }
    assert!(breakers.is_open("refused", "u", now));
    assert!(
        !breakers.is_open("fine", "u", now),
        "another system's breaker"
    );
    // Another system's failures and successes leave it as it is.
    breakers.failure("fine", "u", now);
    breakers.success("fine", "u");
    assert!(breakers.is_open("refused", "u", now));
    assert!(!breakers.is_open("fine", "u", now));
    // The fields are kept apart: ("ab", "c") is not ("a", "bc").
    for _ in 0..breaker::FAILURES {
        breakers.failure("ab", "c", now);
    }
    assert!(breakers.is_open("ab", "c", now));
    assert!(!breakers.is_open("a", "bc", now));
}

#[test]
fn breakers_forget_closed_pairs_past_their_bound() {
    let breakers = breaker::Breakers::default();
    let now = tokio::time::Instant::now();
    for _ in 0..breaker::FAILURES {
        breakers.failure("s", "open", now);
    }
    for i in 0..5000 {
        breakers.failure(&format!("s{i}"), "u", now);
        breakers.failure("s", &format!("u{i}"), now);
    }
    assert!(breakers.tracked() <= 1024, "{}", breakers.tracked());
    assert!(breakers.is_open("s", "open", now));
}

#[test]
fn a_system_may_hold_half_the_queue_rounded_up() {
    assert_eq!(share(1), 1);
    assert_eq!(share(5), 3);
    assert_eq!(share(10_000), 5_000);
}

#[test]
fn connection_errors_are_retried_then_dropped() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", closed.local_addr().expect("addr"));
    drop(closed);
    let (hooks, thread) = start(&config(2, 10, Duration::from_secs(1))).expect("start");
    let endpoint = Arc::new(Endpoint { url, secret: None });
    hooks
        .submit(event(&endpoint, "c1", EventKind::Connect))
        .expect("submit");
    assert!(wait_until(Duration::from_secs(5), || hooks
        .stats()
        .dropped()
        == 1));
    let mut text = String::new();
    hooks.stats().render(&mut text);
    assert!(
        text.contains("\nshardcast_webhook_retries_total 2\n"),
        "{text}"
    );
    thread.finish(Duration::from_secs(1));
}

#[test]
fn https_goes_through_tls() {
    // A plain-HTTP receiver cannot complete a TLS handshake: the attempt
    // fails (and is retried), nothing panics.
    let receiver = Receiver::start(|_| Some(200));
    let url = receiver.url.replace("http://", "https://");
    let (hooks, thread) = start(&config(1, 10, Duration::from_secs(2))).expect("start");
    let endpoint = Arc::new(Endpoint { url, secret: None });
    hooks
        .submit(event(&endpoint, "c1", EventKind::Connect))
        .expect("submit");
    thread.finish(Duration::from_secs(10));
    assert_eq!(hooks.stats().dropped(), 1);
    assert!(receiver.seen().is_empty());
    assert_eq!(receiver.connections.load(Relaxed), 2);
}

#[test]
fn malformed_events_and_urls_are_dropped_without_retry() {
    let (hooks, thread) = start(&config(5, 10, Duration::from_secs(1))).expect("start");
    let receiver = Receiver::start(|_| Some(200));
    let bad_data = EventKind::Message {
        data: "{not json".into(),
    };
    hooks
        .submit(event(&receiver.endpoint(None), "c1", bad_data))
        .expect("submit");
    let bad_url = Arc::new(Endpoint {
        url: "not a url".into(),
        secret: None,
    });
    hooks
        .submit(event(&bad_url, "c2", EventKind::Connect))
        .expect("submit");
    thread.finish(Duration::from_secs(5));
    assert_eq!(hooks.stats().dropped(), 2);
    assert!(receiver.seen().is_empty());
    let mut text = String::new();
    hooks.stats().render(&mut text);
    assert!(
        text.contains("\nshardcast_webhook_retries_total 0\n"),
        "{text}"
    );
}

#[test]
fn finish_delivers_what_was_submitted_and_returns_when_done() {
    let receiver = Receiver::start(|_| Some(200));
    let (hooks, thread) = start(&config(3, 1000, Duration::from_secs(5))).expect("start");
    let endpoint = receiver.endpoint(Some(SECRET));
    for i in 0..100 {
        let kind = EventKind::Disconnect { reason: "shutdown" };
        hooks
            .submit(event(&endpoint, &format!("c{i}"), kind))
            .expect("submit");
    }
    let started = Instant::now();
    thread.finish(Duration::from_secs(30));
    assert!(started.elapsed() < Duration::from_secs(5), "finish waited");
    assert_eq!(hooks.stats().delivered(), 100);
    assert_eq!(receiver.seen().len(), 100);
    let late = event(&endpoint, "late", EventKind::Connect);
    assert_eq!(hooks.submit(late), Err(Refused::Stopped));
    assert_eq!(hooks.stats().dropped_for(DropReason::Shutdown), 1);
    assert_eq!(hooks.stats().queued(), 0);
}

#[test]
fn finish_stops_at_the_deadline_when_the_receiver_hangs() {
    let receiver = Receiver::start(|_| None);
    let (hooks, thread) = start(&config(3, 100, Duration::from_secs(5))).expect("start");
    let endpoint = receiver.endpoint(None);
    for i in 0..10 {
        let e = event(&endpoint, &format!("c{i}"), EventKind::Connect);
        hooks.submit(e).expect("submit");
    }
    let started = Instant::now();
    thread.finish(Duration::from_millis(300));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(hooks.stats().queued(), 0);
    assert_eq!(hooks.stats().dropped_for(DropReason::Shutdown), 10);
    assert_eq!(hooks.stats().delivered(), 0);
}

#[test]
fn render_writes_the_four_series_with_a_dropped_sample_per_reason() {
    let stats = WebhookStats::default();
    stats.drop_some(DropReason::CircuitOpen, 2);
    let mut out = String::from("x 1\n");
    stats.render(&mut out);
    assert!(out.starts_with("x 1\n# HELP shardcast_webhook_queued "));
    for (name, kind) in [
        ("shardcast_webhook_queued", "gauge"),
        ("shardcast_webhook_delivered_total", "counter"),
        ("shardcast_webhook_retries_total", "counter"),
    ] {
        assert!(
            out.contains(&format!("# TYPE {name} {kind}\n{name} 0\n")),
            "{out}"
        );
    }
    let dropped = "shardcast_webhook_dropped_total";
    assert!(
        out.contains(&format!("# TYPE {dropped} counter\n")),
        "{out}"
    );
    for (reason, n) in [
        ("queue_full", 0),
        ("system_share", 0),
        ("circuit_open", 2),
        ("failed", 0),
        ("shutdown", 0),
    ] {
        let line = format!("\n{dropped}{{reason=\"{reason}\"}} {n}\n");
        assert!(out.contains(&line), "{out}");
    }
    assert_eq!(stats.dropped(), 2);
}

#[test]
fn a_connection_always_uses_the_same_lane() {
    assert_eq!(
        lane_of("AbCdEfGhIjKlMnOpQrStUv"),
        lane_of("AbCdEfGhIjKlMnOpQrStUv")
    );
    let lanes: std::collections::HashSet<_> =
        (0..1000).map(|i| lane_of(&format!("c{i}"))).collect();
    assert_eq!(lanes.len(), LANES);
}

#[test]
fn debug_output_hides_the_secret() {
    let endpoint = Endpoint {
        url: "http://h/x".into(),
        secret: Some(SECRET.into()),
    };
    assert!(!format!("{endpoint:?}").contains(SECRET));
}

#[test]
fn every_event_is_counted_once_when_the_thread_stops_under_submits() {
    let receiver = Receiver::start(|n| Some(if n % 3 == 0 { 500 } else { 200 }));
    let (hooks, thread) = start(&config(1, 50, Duration::from_secs(5))).expect("start");
    let endpoint = receiver.endpoint(None);
    let submitters: Vec<_> = (0..4)
        .map(|t| {
            let (hooks, endpoint) = (hooks.clone(), Arc::clone(&endpoint));
            thread::spawn(move || {
                let mut submitted = 0u64;
                let started = Instant::now();
                while started.elapsed() < Duration::from_millis(600) {
                    let mut e = event(&endpoint, &format!("c{t}-{submitted}"), EventKind::Connect);
                    e.system_id = format!("s{}", submitted % 3);
                    let _ = hooks.submit(e);
                    submitted += 1;
                }
                submitted
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    thread.finish(Duration::from_millis(100));
    let submitted: u64 = submitters
        .into_iter()
        .map(|s| s.join().expect("submitter"))
        .sum();
    let stats = hooks.stats();
    assert_eq!(stats.queued(), 0);
    assert_eq!(stats.delivered() + stats.dropped(), submitted);
    assert!(stats.dropped_for(DropReason::Shutdown) > 0);
}
