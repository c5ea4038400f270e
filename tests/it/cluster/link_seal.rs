//! Sealed link frames (docs/cluster.md, "Sealed frames"): a byte relay on the path
//! between two real nodes — it knows no secret — alters, injects or replays bytes of an
//! established link. Node 2 must refuse what fails to open: close that link, count it in
//! `shardcast_link_open_failures_total`, deliver nothing of it, and keep serving; node 1
//! dials again and the link comes back.
//!
//! Setup: node 2 advertises the relay's address in etcd, so every link node 1 dials to
//! node 2 crosses the relay; pushes from node 1 to node 2's client travel on them.
//!
//! Assumptions where the contract is silent: the link is back (a push from node 1 reaches
//! node 2's client) within 5 s; a push in flight on the closed link may be answered
//! offline, `partial` or 503, and is not retried by the node.

use crate::support::{
    api::{message_id_of, try_api, HANG},
    cluster::{ClusterNode, Etcd},
    link_proxy::{LinkProxy, Tamper},
    raw_frames::push_ws_frame,
    ws::Client,
    SYS_A, WAIT,
};
use bytes::BytesMut;
use serde_json::{json, Value};
use shardcast::cluster::frame::{self, Frame};
use std::time::{Duration, Instant};

const OPEN_FAILURES: &str = "shardcast_link_open_failures_total";
const BACK_WITHIN: Duration = Duration::from_secs(5);

/// Node 1, and node 2 behind the relay.
struct Setup {
    _etcd: Etcd,
    n1: ClusterNode,
    n2: ClusterNode,
    proxy: LinkProxy,
    b: Client,
}

fn setup() -> Setup {
    let etcd = Etcd::start();
    let proxy = LinkProxy::start();
    let n1 = ClusterNode::start(&etcd, "");
    let n2 = ClusterNode::start(
        &etcd,
        &format!("[cluster]\nadvertise_addr = \"{}\"", proxy.addr()),
    );
    proxy.set_upstream(&n2.cluster_addr());
    let mut b = n2.ws(SYS_A);
    push_until_delivered(&n1, &mut b, "mesh", &mut Vec::new());
    Setup {
        _etcd: etcd,
        n1,
        n2,
        proxy,
        b,
    }
}

/// Waits for the message `mid` at `b`; every frame received meanwhile goes to `seen`.
fn receive(b: &mut Client, mid: &str, seen: &mut Vec<Value>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = b
            .recv_json(left)
            .unwrap_or_else(|| panic!("message {mid} not received within {WAIT:?}: {seen:?}"));
        let found = v["messageId"] == json!(mid);
        seen.push(v);
        if found {
            return;
        }
    }
}

/// Pushes from node 1 to `b` until one arrives (at most `BACK_WITHIN`); how long it took.
/// Every frame `b` receives meanwhile goes to `seen`.
fn push_until_delivered(
    n1: &ClusterNode,
    b: &mut Client,
    what: &str,
    seen: &mut Vec<Value>,
) -> Duration {
    let start = Instant::now();
    let mut i = 0;
    loop {
        i += 1;
        let body = json!({"clientId": b.client_id, "msg": format!("{what}-{i}")});
        if let Ok(a) = try_api(n1, "/api/send_to_client", Some(SYS_A), &body, HANG) {
            if a.is_ok() && a.body["data"]["online"] == json!(true) {
                receive(b, &message_id_of(&a.body["data"]), seen);
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < BACK_WITHIN,
            "{what}: no push from node 1 reached node 2's client within {BACK_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One push from node 1 to `b`, whatever its answer; its messageId when acknowledged.
fn push_once(n1: &ClusterNode, b: &Client, msg: &str) -> Option<String> {
    let body = json!({"clientId": b.client_id, "msg": msg});
    let a = try_api(n1, "/api/send_to_client", Some(SYS_A), &body, HANG).ok()?;
    (a.is_ok() && a.body["data"]["online"] == json!(true)).then(|| message_id_of(&a.body["data"]))
}

fn open_failures(n: &ClusterNode) -> f64 {
    n.metrics().try_sum(OPEN_FAILURES).unwrap_or(0.0)
}

/// Node 2 counted one more open failure than `before` (within `WAIT`); panics when
/// the metric does not exist.
fn wait_counted(n2: &ClusterNode, before: f64, what: &str) {
    n2.wait_metric(OPEN_FAILURES, WAIT, what, |v| v > before);
}

/// Node 2 still serves: `/healthz`, and a push of its own reaches its client.
fn still_serving(n2: &ClusterNode, b: &mut Client, seen: &mut Vec<Value>) {
    let h = n2.get("/healthz");
    assert_eq!((h.status, h.text().trim()), (200, "ok"), "node 2 /healthz");
    let d = n2.send_to_client(SYS_A, &b.client_id, "local", json!(0));
    receive(b, &message_id_of(&d), seen);
}

/// No message in `seen` says `msg`.
fn never_delivered(seen: &[Value], msg: &str) {
    assert!(
        seen.iter().all(|m| m["msg"] != json!(msg)),
        "the {msg:?} push was delivered: {seen:?}"
    );
}

#[test]
fn a_flipped_or_injected_byte_closes_the_link_and_it_comes_back() {
    let Setup {
        n1,
        n2,
        proxy,
        mut b,
        ..
    } = setup();
    let mut seen: Vec<Value> = Vec::new();

    // A whole frame injected, in the form links had before they were sealed.
    let before = open_failures(&n2);
    let mut injected = BytesMut::new();
    frame::encode(
        &Frame::System {
            req: 1,
            system: SYS_A.to_string(),
            frame: push_ws_frame("00000000badc0ffe", "injected"),
        },
        &mut injected,
    )
    .expect("encode");
    proxy.arm(Tamper::Inject(injected.to_vec()));
    assert!(
        proxy.wait_fired(1, WAIT),
        "the relay found no link to inject into"
    );
    // Node 2 reads the injected bytes as the start of a sealed frame; the next frame
    // node 1 sends on that link (one of its cores' links) completes it. Push until it
    // did (or the injected push arrived).
    let deadline = Instant::now() + BACK_WITHIN;
    let mut i = 0;
    while open_failures(&n2) <= before && seen.iter().all(|m| m["msg"] != json!("injected")) {
        assert!(
            Instant::now() < deadline,
            "the injected bytes were not refused within {BACK_WITHIN:?}"
        );
        i += 1;
        if let Some(mid) = push_once(&n1, &b, &format!("nudge-{i}")) {
            receive(&mut b, &mid, &mut seen);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    never_delivered(&seen, "injected");
    wait_counted(&n2, before, "the injected bytes counted as failing to open");
    let took = push_until_delivered(&n1, &mut b, "after-inject", &mut seen);
    eprintln!("[link-seal] pushes through after an injection within {took:?}");
    assert!(n2.alive() && n1.alive());
    still_serving(&n2, &mut b, &mut seen);

    // A bit flipped in a frame carrying a push.
    let before = open_failures(&n2);
    proxy.arm(Tamper::Flip);
    // A push goes out on the link of whichever core of node 1 took the request;
    // one whose link is still coming back after the injection sends nothing
    // through the relay: push until the relay has flipped a frame.
    let deadline = Instant::now() + BACK_WITHIN;
    let mut i = 0;
    loop {
        i += 1;
        let _ = push_once(&n1, &b, &format!("flipped-{i}"));
        if proxy.wait_fired(2, Duration::from_millis(200)) {
            break;
        }
        assert!(Instant::now() < deadline, "the relay saw no frame to flip");
    }
    let flips = i;
    wait_counted(&n2, before, "the flipped frame counted as failing to open");
    assert!(n2.alive() && n1.alive());
    still_serving(&n2, &mut b, &mut seen);
    let took = push_until_delivered(&n1, &mut b, "after-flip", &mut seen);
    eprintln!("[link-seal] link back after a flipped bit within {took:?}");
    assert!(
        n2.log().contains("dropped a link: bad frame"),
        "node 2 did not log the dropped link"
    );
    push_until_delivered(&n1, &mut b, "at-the-end", &mut seen);
    seen.extend(b.drain(Duration::from_millis(300)));
    for k in 1..=flips {
        never_delivered(&seen, &format!("flipped-{k}"));
    }
    never_delivered(&seen, "injected");
}

#[test]
fn a_replayed_frame_is_refused_not_delivered_twice() {
    let Setup {
        n1,
        n2,
        proxy,
        mut b,
        ..
    } = setup();
    let before = open_failures(&n2);
    proxy.arm(Tamper::Replay);
    let mid = push_once(&n1, &b, "replayed").expect("the push before the replay is acknowledged");
    assert!(proxy.wait_fired(1, WAIT), "the relay replayed nothing");
    let mut seen = Vec::new();
    receive(&mut b, &mid, &mut seen);
    seen.extend(b.drain(Duration::from_millis(500)));
    let times = seen.iter().filter(|m| m["messageId"] == json!(mid)).count();
    assert_eq!(times, 1, "the push was delivered {times} times: {seen:?}");
    wait_counted(&n2, before, "the replayed frame counted as failing to open");
    assert!(n2.alive() && n1.alive());
    still_serving(&n2, &mut b, &mut seen);
    let took = push_until_delivered(&n1, &mut b, "after-replay", &mut seen);
    eprintln!("[link-seal] link back after a replay within {took:?}");
}
