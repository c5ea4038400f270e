//! Connection flood (docs/api.md §6 `server.max_connections`).
//!
//! `server.max_connections = 300`; 400 WebSocket upgrades arrive at once from eight
//! threads. Exactly 300 get the 101 and the welcome; the other 100 are refused cleanly:
//! HTTP 503 with the `服务繁忙` envelope on the upgrade request, no 101, no welcome,
//! and a closed connection. The 300 are unaffected (one `send_to_system` reaches every
//! one of them). Then, four times: 50 of them close and 100 newcomers arrive at once —
//! exactly 50 are accepted, the rest refused the same way. Full again, one more upgrade
//! is refused, and every admitted client still gets pushes.

use crate::support::{
    api::assert_message_id,
    node::Node,
    raw_frames::{head_header, raw_ws_handshake},
    ws::Client,
    SYS_A, WAIT,
};
use serde_json::{json, Value};
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::WebSocket;

const MAX: usize = 300;
const FLOOD: usize = 400;
const THREADS: usize = 8;
const CLOSE: usize = 50;
/// Rounds of "50 leave, 100 newcomers at once" after the first flood.
const ROUNDS: usize = 4;

/// A refused upgrade: its status, envelope, and whatever came after the body.
#[derive(Debug)]
struct Refusal {
    status: u16,
    body: Value,
    /// Bytes after the response body (a welcome frame would be here).
    trailing: Vec<u8>,
    /// The connection was closed by the node (EOF or reset) within 5 s.
    closed: bool,
}

/// One upgrade attempt with a hand-made handshake: Ok(client with its welcome read)
/// on a 101, Err(refusal) otherwise.
fn try_connect(node: &Node) -> Result<Client, Refusal> {
    let mut s = TcpStream::connect(node.addr()).unwrap_or_else(|e| panic!("connect: {e}"));
    s.set_nodelay(true).unwrap();
    let (status, head) =
        raw_ws_handshake(&mut s, node.addr(), &format!("/ws?systemId={SYS_A}"), "");
    if status == 101 {
        let cfg = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let socket = WebSocket::from_raw_socket(s, Role::Client, Some(cfg));
        return Ok(Client::welcome(socket));
    }
    let len: usize = head_header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.read_exact(&mut body)
        .unwrap_or_else(|e| panic!("reading the body of a {status}: {e}; head {head:?}"));
    let body: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{status} body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&body)
        )
    });
    // Everything after the body until the node closes the connection.
    let mut trailing = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut closed = false;
    let mut tmp = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match s.read(&mut tmp) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => trailing.extend_from_slice(&tmp[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    Err(Refusal {
        status,
        body,
        trailing,
        closed,
    })
}

fn connections(node: &Node) -> f64 {
    node.metric("shardcast_connections")
}

/// One `send_to_system`; asserts every client receives it (and nothing else).
fn system_push_reaches_all(node: &Node, clients: &mut [Client], what: &str) -> Duration {
    let start = Instant::now();
    let d = node.call(SYS_A, "/api/send_to_system", json!({ "msg": what }));
    let mid = assert_message_id(&d["messageId"]);
    for (i, c) in clients.iter_mut().enumerate() {
        let v = c
            .recv_json(WAIT)
            .unwrap_or_else(|| panic!("{what}: client {i} ({}) got nothing", c.client_id));
        assert_eq!(v["messageId"], json!(mid), "{what}: client {i}: {v}");
    }
    start.elapsed()
}

fn check_refusal(r: &Refusal, what: &str) {
    assert_eq!(
        r.status, 503,
        "{what}: refused with HTTP {}: {r:?}",
        r.status
    );
    assert_eq!(
        (r.body["code"].clone(), r.body["msg"].clone()),
        (json!(-1), json!("服务繁忙")),
        "{what}: 503 body {}",
        r.body
    );
    assert!(
        r.trailing.is_empty(),
        "{what}: bytes after the 503 (a welcome?): {:?}",
        String::from_utf8_lossy(&r.trailing)
    );
    assert!(r.closed, "{what}: the refused connection was left open");
}

/// `n` upgrades at once from `THREADS` threads: (welcomed, refused).
fn flood(node: &Node, n: usize) -> (Vec<Client>, Vec<Refusal>) {
    let outcomes: Vec<Result<Client, Refusal>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let count = n / THREADS + usize::from(t < n % THREADS);
                s.spawn(move || (0..count).map(|_| try_connect(node)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("flood thread"))
            .collect()
    });
    let (mut welcomed, mut refused) = (Vec::new(), Vec::new());
    for o in outcomes {
        match o {
            Ok(c) => welcomed.push(c),
            Err(r) => refused.push(r),
        }
    }
    (welcomed, refused)
}

#[test]
fn a_flood_over_max_connections_is_refused_cleanly_and_spares_the_admitted() {
    let node = Node::start(&format!("[server]\nmax_connections = {MAX}\n"));

    // The flood: 400 upgrades at once.
    let start = Instant::now();
    let (mut clients, refusals) = flood(&node, FLOOD);
    let flood_took = start.elapsed();
    let gauge = connections(&node);
    let refused_503 = refusals.iter().filter(|r| r.status == 503).count();
    eprintln!(
        "[flood] max_connections = {MAX}: {FLOOD} upgrades from {THREADS} threads in {:.2}s: \
         {} welcomed, {} refused ({refused_503} with 503, {} closed by the node); \
         shardcast_connections = {gauge}",
        flood_took.as_secs_f64(),
        clients.len(),
        refusals.len(),
        refusals.iter().filter(|r| r.closed).count()
    );
    for (i, r) in refusals.iter().enumerate() {
        check_refusal(r, &format!("refused connection {i}"));
    }

    // The admitted are unaffected.
    let took = system_push_reaches_all(&node, &mut clients, "after the flood");
    eprintln!(
        "[flood] send_to_system reached all {} admitted clients in {:.3}s",
        clients.len(),
        took.as_secs_f64()
    );

    // Rounds: 50 leave, then 100 newcomers arrive at once; the free places (and only
    // those) are given to newcomers.
    let mut rounds = vec![(FLOOD, MAX, clients.len())]; // (attempts, places, welcomed)
    for round in 1..=ROUNDS {
        let leaving = CLOSE.min(clients.len());
        for mut c in clients.drain(..leaving) {
            c.close_cleanly();
        }
        let start = Instant::now();
        let freed_after = loop {
            let n = connections(&node);
            if n <= clients.len() as f64 {
                break start.elapsed();
            }
            assert!(
                start.elapsed() < WAIT,
                "round {round}: shardcast_connections still {n} 5 s after {leaving} clients \
                 left ({} remain)",
                clients.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let places = MAX.saturating_sub(clients.len());
        let (welcomed, refused) = flood(&node, 2 * CLOSE);
        for (i, r) in refused.iter().enumerate() {
            check_refusal(r, &format!("round {round}: refused newcomer {i}"));
        }
        eprintln!(
            "[flood] round {round}: {leaving} closed (gauge down after {:.3}s), {} newcomers \
             at once for {places} free places: {} welcomed, {} refused with 503",
            freed_after.as_secs_f64(),
            2 * CLOSE,
            welcomed.len(),
            refused.len()
        );
        rounds.push((2 * CLOSE, places, welcomed.len()));
        clients.extend(welcomed);
    }
    // Full: one more is refused; everyone admitted still gets pushes.
    let again = match try_connect(&node) {
        Ok(c) => Err(c.client_id.clone()),
        Err(r) => Ok(r),
    };
    let gauge = connections(&node);
    let took = system_push_reaches_all(&node, &mut clients, "after the newcomers");
    eprintln!(
        "[flood] at the end: {} clients, shardcast_connections = {gauge}; one more upgrade: \
         {}; send_to_system reached all {} in {:.3}s",
        clients.len(),
        match &again {
            Ok(r) => format!("refused with {}", r.status),
            Err(id) => format!("ACCEPTED as {id}"),
        },
        clients.len(),
        took.as_secs_f64()
    );

    // ---- assertions ----
    for (i, (attempts, places, welcomed)) in rounds.iter().enumerate() {
        assert_eq!(
            welcomed,
            places,
            "{} ({attempts} upgrades at once): {welcomed} welcomed for {places} free places \
             under max_connections = {MAX}: over-admission",
            if i == 0 {
                "the first flood".to_string()
            } else {
                format!("round {i}")
            }
        );
    }
    match again {
        Ok(r) => check_refusal(&r, "an upgrade when full"),
        Err(id) => panic!("an upgrade over max_connections = {MAX} was accepted ({id})"),
    }
    assert_eq!(
        gauge,
        clients.len() as f64,
        "shardcast_connections at the end"
    );
    for c in clients.iter_mut().take(20) {
        c.expect_silence(Duration::from_millis(20));
    }
}
