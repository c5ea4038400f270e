//! A core draining a steady stream of mail from another core still reads, writes,
//! answers pings and accepts (issue 22; docs/architecture.md, "Shape": mailboxes are
//! drained in batches). monoio has no task budget: a task that always has work runs
//! until it has none, so the mailbox task takes a bounded batch, flushes, and lets the
//! core's other tasks and its I/O in before the next (`let_others_in`,
//! `server/core_thread.rs`). The bound counts the messages inside another core's
//! `CoreMsg::Batch` one by one: such a batch is all that core had for this one at a
//! flush — here the sends of a few hundred pipelined requests — and 256 of them taken
//! at once kept the probes below waiting for seconds.
//!
//! A two-core node. Core A holds a big group (members detached by a crowd, so that
//! each push costs A a walk over thousands of members and nothing on the wire);
//! publishers whose API connections core B serves send to that group without pause,
//! pipelined, so B hands A far more than it can take and A's mailbox stays at its
//! bound (sends answered 503 past it) for as long as the stream lasts. Meanwhile, on
//! A: a WebSocket client's ping must be answered, a new WebSocket connection welcomed
//! (new connections land on either core; a clientId names its core, `core_of`) and an
//! HTTP `/healthz` answered, each within `BOUND`, again and again.

use crate::support::{
    api::pipelined,
    crowd::Crowd,
    http::HttpConn,
    node::{core_of, Node, CRYPTO_KEY},
    stall::http_conns_on_core,
    ws::Client,
    StopOnDrop, SYS_A, WAIT,
};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The core that drains the stream, and the one whose API connections make it.
const A: usize = 0;
const B: usize = 1;
/// Connections the crowd opens; about half land on A and join the group there, enough
/// that each send costs A more than it costs B.
const CROWD: usize = 4000;
const GROUP: &str = "busy";
const PUBLISHERS: usize = 2;
/// Sends written at once by a publisher.
const ROUND: usize = 200;
/// How long the probes run once A's mailbox is at its bound.
const PROBING: Duration = Duration::from_secs(4);
/// New connections on A probed at least (a new connection lands on either core).
const WELCOMES_ON_A: usize = 3;
/// What each probe may take at most. A batch of mail takes some 100 ms here (a debug
/// build); the rest is room for a CPU shared with another test. A core that does not
/// let others in keeps the probes waiting for as long as the stream lasts.
const BOUND: Duration = Duration::from_secs(2);
/// How long a probe is waited for before it counts as unanswered.
const GIVE_UP: Duration = Duration::from_secs(5);

/// The slowest answer of each kind of probe, and how many probes there were.
#[derive(Default)]
struct Probes {
    pong: Duration,
    welcome: Duration,
    healthz: Duration,
    welcomes_on_a: usize,
    /// New connections that got no welcome within `GIVE_UP` (on which core, none can
    /// tell).
    unwelcomed: usize,
    rounds: usize,
}

/// A WebSocket client of `SYS_A` that core A owns (the kernel spreads connections
/// over both cores); the others opened on the way are closed (with a close frame: not
/// detached).
fn client_on_a(node: &Node) -> Client {
    for _ in 0..64 {
        let mut c = node.ws(SYS_A);
        if core_of(&c.client_id, SYS_A) == A {
            return c;
        }
        c.close_cleanly();
    }
    panic!("64 connections and none on core {A}");
}

/// `GET /healthz` on `conn`: how long it took (`GIVE_UP` when it did not come).
fn healthz(conn: &mut HttpConn) -> Duration {
    let sent = Instant::now();
    let probe = conn.format_request("GET", "/healthz", &[], b"");
    conn.send_raw(&probe);
    match conn.read_response(GIVE_UP) {
        Ok(r) => {
            assert_eq!(r.status, 200, "/healthz on core {A}: {}", r.text());
            sent.elapsed()
        }
        Err(_) => GIVE_UP,
    }
}

/// A new WebSocket connection: how long until its welcome, and its core (None when
/// no welcome came within `GIVE_UP`: the core that took it never answered).
fn connect(node: &Node) -> (Duration, Option<usize>) {
    let started = Instant::now();
    let Some(c) = Client::try_open(node, SYS_A, GIVE_UP) else {
        return (GIVE_UP, None);
    };
    let took = started.elapsed();
    let core = core_of(&c.client_id, SYS_A);
    c.drop_abruptly();
    (took, Some(core))
}

/// Sends to `GROUP` on `conn`, `ROUND` at a time, until `done`; counts those refused
/// because a mailbox was full (503) in `busy`.
fn publish(mut conn: HttpConn, done: &AtomicBool, busy: &AtomicUsize) {
    let send = || {
        (
            "/api/send_to_group",
            json!({ "groupName": GROUP, "data": "tick" }),
        )
    };
    while !done.load(Ordering::SeqCst) {
        for (status, body) in pipelined(&mut conn, SYS_A, (0..ROUND).map(|_| send())) {
            match status {
                200 => {}
                503 => {
                    busy.fetch_add(1, Ordering::SeqCst);
                }
                _ => panic!("a send answered {status}: {body}"),
            }
        }
    }
}

#[test]
fn a_core_draining_a_steady_stream_of_mail_still_reads_writes_and_accepts() {
    let node = Node::start(&format!(
        "[server]\ncrypto_key = \"{CRYPTO_KEY}\"\n\
         [ws]\nresume_window = \"10m\"\nresume_max_bytes = 65536\n"
    ));
    // Found with the other core stopped (ptrace), before anything else runs.
    let mut healthz_on_a = http_conns_on_core(&node, A, 1).remove(0);
    let publishers = http_conns_on_core(&node, B, PUBLISHERS);
    let mut pinger = client_on_a(&node);

    // The group on A: the crowd's connections there, dropped (detached) first so that
    // nobody gets the online notices.
    let mut crowd = Crowd::open(&node, SYS_A, CROWD, 65536, 1460);
    crowd.drop_all();
    node.wait_metric(
        "shardcast_connections_detached",
        WAIT,
        "the whole crowd detached",
        |n| n == CROWD as f64,
    );
    let members: Vec<&String> = crowd
        .ids
        .iter()
        .filter(|id| core_of(id, SYS_A) == A)
        .collect();
    let joins = members.iter().map(|id| {
        let body = json!({ "clientId": id, "groupName": GROUP });
        ("/api/bind_to_group", body)
    });
    for (status, body) in pipelined(&mut node.http(), SYS_A, joins) {
        assert_eq!(status, 200, "bind_to_group: {body}");
    }

    let done = AtomicBool::new(false);
    let busy = AtomicUsize::new(0);
    let probes = std::thread::scope(|s| {
        let _stop = StopOnDrop(&done);
        for conn in publishers {
            let (done, busy) = (&done, &busy);
            s.spawn(move || publish(conn, done, busy));
        }
        // A's mailbox at its bound: B's sends start being refused.
        let deadline = Instant::now() + Duration::from_secs(30);
        while busy.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "after 30 s of sends to {} members on core {A}, none refused: the stream \
                 does not keep core {A}'s mailbox full",
                members.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Probes for `PROBING`, and on until a few new connections landed on A (for
        // `5 * PROBING` at most).
        let mut p = Probes::default();
        let started = Instant::now();
        let more_on_a = |p: &Probes| p.welcomes_on_a < WELCOMES_ON_A;
        while started.elapsed() < PROBING || more_on_a(&p) && started.elapsed() < 5 * PROBING {
            p.rounds += 1;
            let pong = pinger.ping_pong(GIVE_UP).unwrap_or(GIVE_UP);
            p.pong = p.pong.max(pong);
            p.healthz = p.healthz.max(healthz(&mut healthz_on_a));
            match connect(&node) {
                (took, Some(A)) => {
                    p.welcomes_on_a += 1;
                    p.welcome = p.welcome.max(took);
                }
                (_, Some(_)) => {}
                (_, None) => p.unwelcomed += 1,
            }
        }
        done.store(true, Ordering::SeqCst);
        p
    });
    eprintln!(
        "[fair cores] {} members on core {A}, {} sends refused (mailbox full); over {} \
         probe rounds in {PROBING:?}, slowest: pong {:?}, welcome on core {A} {:?} ({} \
         welcomes there, {} connections never welcomed), /healthz {:?}",
        members.len(),
        busy.load(Ordering::SeqCst),
        probes.rounds,
        probes.pong,
        probes.welcome,
        probes.welcomes_on_a,
        probes.unwelcomed,
        probes.healthz,
    );
    // (A probe that got no answer counts as `GIVE_UP`.)
    assert!(
        probes.pong <= BOUND,
        "a ping to a client of core {A} waited {:?} for its pong (bound {BOUND:?}) while \
         the core drained its mailbox",
        probes.pong
    );
    assert!(
        probes.healthz <= BOUND,
        "/healthz on core {A} took {:?} (bound {BOUND:?}) while the core drained its mailbox",
        probes.healthz
    );
    assert_eq!(
        probes.unwelcomed, 0,
        "new connections got no welcome within {GIVE_UP:?} while core {A} drained its mailbox"
    );
    assert!(
        probes.welcomes_on_a >= WELCOMES_ON_A,
        "{} rounds of probes and only {} new connections landed on core {A}",
        probes.rounds,
        probes.welcomes_on_a
    );
    assert!(
        probes.welcome <= BOUND,
        "a new connection on core {A} waited {:?} for its welcome (bound {BOUND:?}) while \
         the core drained its mailbox",
        probes.welcome
    );
}
