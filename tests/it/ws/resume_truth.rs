//! Session resume (docs/api.md §8, §8.1), as a property: a welcome that says
//! `"recovered":true` is never a lie — every push and notice addressed to the
//! connection after the client's `last` follows it, in order, once, and nothing else.
//!
//! Each test runs one node and many seeded random rounds against it. A round opens a
//! raw client A (and mostly a second client B), binds them to the round's groups, sends
//! a first batch, lets A read a random prefix of what it was sent and process a prefix
//! of that (what A processed is always a prefix of its stream), then drops A in a
//! random way — a TCP reset; a FIN without a close frame, reading on until the node
//! closes; a reset after A stopped reading while pushes piled up; or a socket simply
//! abandoned, which the resume takes over after `ws.takeover_probe` — while another
//! HTTP keep-alive connection sends a random mix, in pipelined batches, of pushes to A
//! (`send_to_client`, `send_to_clients` naming it once or twice), its groups, a group
//! it is not in, its userId, other userIds, its system and another system, binds and
//! unbinds A and B, changes A's userId and closes B. Sometimes a core of the node is
//! stopped (ptrace) for a while in the gap, or while the resume comes in; sometimes A
//! resumes before the node has seen the drop, or before the gap's requests are all
//! answered; sometimes it drops again after reading part of the replay — or as if that
//! resume's welcome was lost, resuming again with the token it had — and resumes a
//! second time. The `last` it names is mostly the last frame it processed, sometimes
//! an earlier one (it lost its newest state), sometimes one it was never sent (a
//! random messageId, or a push addressed elsewhere: then only false is right). At the
//! end a sentinel push is sent to A, and what A gets after the welcome is read up to
//! it, then a short quiet.
//!
//! The expected stream comes from the API's answers alone: every push answered with a
//! messageId whose audience held A when the request was made (a round's requests go
//! through one HTTP connection, pipelined or not, so they reach A's core in their
//! order: docs/api.md §4 "Order"), and the online/offline notices of the round's binds,
//! unbinds and closes that reach A's groups. Then:
//!
//! - `recovered:true`: what A processed before the resume, then what came after the
//!   welcome up to the sentinel, is exactly the expected stream — each push and notice
//!   once, in its place — with nothing addressed elsewhere (another group, a group A had
//!   left, another userId or system) and nothing after the sentinel.
//! - `recovered:false`: after the welcome, no messageId twice, pushes in their order,
//!   nothing addressed elsewhere.
//! - `resumed:false` only when the session really ended (a slow consumer was closed in
//!   the round), or when an abandoned socket whose client answers pings may have
//!   answered the probe.
//!
//! Notices carry messageIds that no API answer gives, so a notice is recognised by its
//! code (1001/1002) and the clientId in its `data`. A notice of A's own binds is fanned
//! out by A's core in the order of the requests, and so is one of B's when B lives on
//! A's core (found with the per-core `shardcast_connections` gauge): those have exact
//! places. A notice of B's from another core is fanned out to A's core in that core's
//! own time — after A joined or left the group, maybe — so it may or may not be
//! addressed to A; such notices are only checked to come at most once each (their
//! exact places are checked in the rounds where B is on A's core). One test turns
//! notices off (`ws.notices = false`).
//!
//! The three tests differ in their node: two cores with notices, where nothing can lose
//! a frame (no pongs, large bounds), so `recovered:false` fails the round too unless
//! `last` was never sent to A; one core whose client mostly answers pings — pongs move
//! its place in the replay log, so frames it read but did not process may be pruned
//! and its `last` is then older than what it acknowledged — with `ws.send_queue_bytes
//! = 200`, a small `ws.resume_buffer_bytes`, and some clients with a small receive
//! buffer that get a burst of big pushes in each gap (their own frames overflow the
//! buffer); two cores with notices and a small `ws.resume_max_bytes` (the log's bound
//! drops entries). Each prints how many rounds ended `recovered:true` and
//! `recovered:false`, and asserts that at least half of those that could recover did,
//! so that a node saying false every time cannot pass. Not covered here: the idle
//! timeout as the drop (its detach is the FIN case's, found by the heartbeat).
//!
//! A failing round panics with the seed, the round and its recipe (every request with
//! its answer, the drop, the frames read). `RESUME_TRUTH_SEED=<n>` fixes the seed (the
//! node's state from earlier rounds makes a repeated round close to, not exactly, what
//! failed); `RESUME_TRUTH_ROUNDS=<n>` sets the number of rounds of each test.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use shardcast::ws::frame;

use crate::support::{
    api::is_message_id,
    http::HttpConn,
    metrics::Metrics,
    node::Node,
    raw_frames::{connect_small_rcvbuf, raw_ws_handshake, read_raw_frame},
    raw_ws::Raw,
    stall::CoreStop,
    SYS_A, SYS_B, WAIT,
};

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[test]
fn recovered_true_is_never_a_lie() {
    run(&Setup {
        name: "two cores, notices, lossless",
        config: "[ws]\nresume_window = \"20s\"\nping_interval = \"1s\"\n\
                 takeover_probe = \"200ms\"\n",
        workers: 2,
        notices: true,
        pongs: 0,
        small_rcvbuf: 0,
        big: 10,
        lossless: true,
        rounds: 100,
    });
}

#[test]
fn recovered_true_is_never_a_lie_with_pongs_and_small_queues_on_one_core() {
    run(&Setup {
        name: "one core, pongs, small queues",
        config: "[server]\nworkers = 1\n[ws]\nresume_window = \"20s\"\n\
                 ping_interval = \"25ms\"\ntakeover_probe = \"150ms\"\n\
                 send_queue_bytes = 200\nresume_buffer_bytes = 4000\nnotices = false\n",
        workers: 1,
        notices: false,
        pongs: 70,
        small_rcvbuf: 10,
        big: 25,
        lossless: false,
        rounds: 80,
    });
}

#[test]
fn recovered_true_is_never_a_lie_with_a_bounded_log() {
    run(&Setup {
        name: "two cores, bounded log",
        config: "[ws]\nresume_window = \"20s\"\nping_interval = \"300ms\"\n\
                 takeover_probe = \"150ms\"\nresume_max_bytes = 12000\n",
        workers: 2,
        notices: true,
        pongs: 50,
        small_rcvbuf: 0,
        big: 25,
        lossless: false,
        rounds: 80,
    });
}

// ---------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------

/// One test's node and what its rounds may do.
struct Setup {
    name: &'static str,
    config: &'static str,
    /// `server.workers` of `config` (the harness's 2 unless it says otherwise).
    workers: u64,
    /// `ws.notices` of `config`.
    notices: bool,
    /// Percent of rounds whose client answers the node's pings.
    pongs: u64,
    /// Percent of rounds whose client has a small receive buffer.
    small_rcvbuf: u64,
    /// Percent of pushes with 800 to 1600 bytes of data (the others have up to 300).
    big: u64,
    /// Nothing in this setup can lose a frame: `recovered:false` fails the round too.
    lossless: bool,
    rounds: usize,
}

#[derive(Default)]
struct Counts {
    rounds: usize,
    recovered: usize,
    not_recovered: usize,
    not_resumed: usize,
    /// Rounds whose last resume named a `last` A was never sent (bogus, or a push
    /// addressed elsewhere): recovered:false is the only answer.
    foreign: usize,
    resumes: usize,
    second_drops: usize,
    stalls: usize,
    b_same_core: usize,
}

fn run(setup: &Setup) {
    let started = Instant::now();
    let base = match std::env::var("RESUME_TRUTH_SEED") {
        Ok(s) => parse_seed(&s),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    let seed = base ^ hash(setup.name);
    let rounds = std::env::var("RESUME_TRUTH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(setup.rounds);
    let node = Node::start(setup.config);
    let mut counts = Counts::default();
    for n in 0..rounds {
        let recipe = Recipe::new();
        let round_seed = seed.wrapping_add((n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let result = catch_unwind(AssertUnwindSafe(|| {
            round(&node, setup, round_seed, &recipe, &mut counts)
        }));
        let fail = |what: &str| {
            format!(
                "[{}] round {n} failed: {what}\n  RESUME_TRUTH_SEED={base:#x} (test seed \
                 {seed:#x}, round seed {round_seed:#x})\n  recipe:\n{}",
                setup.name,
                recipe.text()
            )
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!("{}", fail(&why)),
            Err(panic) => {
                eprintln!("{}", fail("panicked (message below)"));
                resume_unwind(panic);
            }
        }
    }
    let c = &counts;
    println!(
        "resume_truth [{}]: {} rounds in {:.1} s (RESUME_TRUTH_SEED={base:#x}): {} ended \
         recovered:true, {} recovered:false, {} not resumed (session ended), {} with a \
         foreign last (false, as they must); {} resumes in all, {} rounds dropped twice, {} \
         core stalls, {} rounds with B on A's core",
        setup.name,
        c.rounds,
        started.elapsed().as_secs_f64(),
        c.recovered,
        c.not_recovered,
        c.not_resumed,
        c.foreign,
        c.resumes,
        c.second_drops,
        c.stalls,
        c.b_same_core,
    );
    let could = c.rounds - c.foreign;
    assert!(
        c.recovered * 2 >= could,
        "[{}] only {} of {could} rounds recovered: the node says false too easily",
        setup.name,
        c.recovered,
    );
}

fn parse_seed(s: &str) -> u64 {
    let s = s.trim();
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("RESUME_TRUTH_SEED={s:?} is not a number"))
}

/// FNV-1a: each test's seed differs from the others' for one base seed.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// xorshift64* seeded through splitmix64: reproducible, no crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// 0 to n-1 (0 when n is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// 0 to n.
    fn upto(&mut self, n: usize) -> usize {
        self.below(n as u64 + 1) as usize
    }

    /// lo to hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }
}

/// What a round did, for the report of a failure (the sender thread writes too).
struct Recipe {
    start: Instant,
    lines: Mutex<Vec<String>>,
}

impl Recipe {
    fn new() -> Recipe {
        Recipe {
            start: Instant::now(),
            lines: Mutex::new(Vec::new()),
        }
    }

    fn note(&self, line: impl Into<String>) {
        let ms = self.start.elapsed().as_millis();
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.push(format!("    {ms:>5} ms  {}", line.into()));
    }

    fn text(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.join("\n")
    }
}

// ---------------------------------------------------------------------------
// The model: what was addressed to A
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    A,
    B,
}

#[derive(Clone, Debug)]
enum Op {
    ToClient(Who),
    /// send_to_clients to A (and B while it is there).
    ToClients,
    ToGroup(String),
    ToUser(String),
    ToSystem(&'static str),
    Bind {
        who: Who,
        group: String,
        user: String,
    },
    Unbind {
        who: Who,
        group: String,
    },
    CloseB,
}

impl Op {
    fn is_send(&self) -> bool {
        matches!(
            self,
            Op::ToClient(_) | Op::ToClients | Op::ToGroup(_) | Op::ToUser(_) | Op::ToSystem(_)
        )
    }

    fn on_b(&self) -> bool {
        matches!(
            self,
            Op::Bind { who: Who::B, .. } | Op::Unbind { who: Who::B, .. } | Op::CloseB
        )
    }
}

/// A frame addressed to A: a push by its messageId, a notice by (code, whom it is about).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Item {
    Push(String),
    Notice(i64, String),
}

/// The round's names: the groups A may be in (`ga`, `gb`), one it never joins (`gx`),
/// its two userIds and B's.
struct Names {
    ga: String,
    gb: String,
    gx: String,
    u1: String,
    u2: String,
    ub: String,
}

impl Names {
    fn new(seed: u64) -> Names {
        let p = format!("t{seed:016x}");
        Names {
            ga: format!("{p}-ga"),
            gb: format!("{p}-gb"),
            gx: format!("{p}-gx"),
            u1: format!("{p}-u1"),
            u2: format!("{p}-u2"),
            ub: format!("{p}-ub"),
        }
    }
}

struct Model {
    a: String,
    b: Option<String>,
    a_groups: Vec<String>,
    a_user: String,
    b_groups: Vec<String>,
    b_alive: bool,
    /// A's session ended (an answer said it is offline).
    a_gone: bool,
    notices: bool,
    /// B lives on A's core: its notices reach A in the order of the requests.
    b_same_core: bool,
    /// B on another core: how many notices of each code B's binds, unbinds and close
    /// sent to groups (each may or may not reach A).
    maybe_b: HashMap<i64, usize>,
    /// Percent of pushes with big data.
    big: u64,
    /// A has a small receive buffer: each gap also sends it a burst.
    burst: bool,
    /// Everything addressed to A, in the order of the requests.
    expected: Vec<Item>,
    /// messageIds of pushes not addressed to A.
    elsewhere: HashSet<String>,
    sent: usize,
}

impl Model {
    /// `n` random ops: mostly pushes, some audience changes.
    fn ops(&self, names: &Names, rng: &mut Rng, n: usize) -> Vec<Op> {
        let mut b_alive = self.b_alive && self.b.is_some();
        let a_groups = [&names.ga, &names.gb];
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let op = match rng.below(100) {
                0..=19 => Op::ToClient(Who::A),
                20..=24 if b_alive => Op::ToClient(Who::B),
                25..=29 => Op::ToClients,
                30..=41 => Op::ToGroup(names.ga.clone()),
                42..=49 => Op::ToGroup(names.gb.clone()),
                50..=54 => Op::ToGroup(names.gx.clone()),
                55..=61 => Op::ToUser(names.u1.clone()),
                62..=65 => Op::ToUser(names.u2.clone()),
                66..=68 => Op::ToUser(names.ub.clone()),
                69..=74 => Op::ToSystem(SYS_A),
                75..=77 => Op::ToSystem(SYS_B),
                78..=85 => Op::Bind {
                    who: Who::A,
                    group: a_groups[rng.below(2) as usize].clone(),
                    user: match rng.below(3) {
                        0 => String::new(),
                        1 => names.u1.clone(),
                        _ => names.u2.clone(),
                    },
                },
                86..=91 => Op::Unbind {
                    who: Who::A,
                    group: a_groups[rng.below(2) as usize].clone(),
                },
                92..=95 if b_alive => Op::Bind {
                    who: Who::B,
                    group: [&names.ga, &names.gb, &names.gx][rng.below(3) as usize].clone(),
                    user: names.ub.clone(),
                },
                96..=98 if b_alive => Op::Unbind {
                    who: Who::B,
                    group: a_groups[rng.below(2) as usize].clone(),
                },
                99 if b_alive => {
                    b_alive = false;
                    Op::CloseB
                }
                _ => continue,
            };
            out.push(op);
        }
        out
    }

    fn id(&self, who: Who) -> &str {
        match who {
            Who::A => &self.a,
            Who::B => self.b.as_deref().expect("B"),
        }
    }

    /// (path, systemId, body) of `op`; pushes carry `data` of random size.
    fn request(&mut self, op: &Op, rng: &mut Rng) -> (&'static str, &'static str, Value) {
        self.sent += 1;
        let msg = format!("m{}", self.sent);
        let data = if rng.chance(self.big) {
            json!({ "blob": "y".repeat(rng.range(800, 1600) as usize) })
        } else if rng.chance(25) {
            json!("x".repeat(rng.range(100, 300) as usize))
        } else {
            json!("")
        };
        let push = |key: &str, v: Value| {
            let mut body = json!({"msg": msg, "data": data});
            if !key.is_empty() {
                body[key] = v;
            }
            body
        };
        match op {
            Op::ToClient(who) => (
                "/api/send_to_client",
                SYS_A,
                push("clientId", json!(self.id(*who))),
            ),
            Op::ToClients => {
                let mut ids = vec![self.a.clone()];
                if rng.chance(30) {
                    ids.push(self.a.clone()); // delivered once all the same
                }
                if let (Some(b), true) = (&self.b, self.b_alive) {
                    ids.push(b.clone());
                }
                ("/api/send_to_clients", SYS_A, push("clientIds", json!(ids)))
            }
            Op::ToGroup(g) => ("/api/send_to_group", SYS_A, push("groupName", json!(g))),
            Op::ToUser(u) => ("/api/send_to_user", SYS_A, push("userId", json!(u))),
            Op::ToSystem(system) => ("/api/send_to_system", system, push("", Value::Null)),
            Op::Bind { who, group, user } => (
                "/api/bind_to_group",
                SYS_A,
                json!({"clientId": self.id(*who), "groupName": group, "userId": user, "extend": ""}),
            ),
            Op::Unbind { who, group } => (
                "/api/unbind_from_group",
                SYS_A,
                json!({"clientId": self.id(*who), "groupName": group}),
            ),
            Op::CloseB => (
                "/api/close_client",
                SYS_A,
                json!({"clientId": self.id(Who::B)}),
            ),
        }
    }

    /// Takes the answer to `op` into the model.
    fn apply(&mut self, op: &Op, status: u16, v: &Value, recipe: &Recipe) -> Result<(), String> {
        if op.is_send() && status == 503 {
            recipe.note(format!("{op:?} -> 503, nothing sent: {v}"));
            return Ok(());
        }
        if status != 200 || v["code"] != json!(0) {
            if v["msg"] == json!("客户端不在线") && !op.on_b() {
                self.a_gone = true;
                recipe.note(format!("{op:?} -> A is offline: {v}"));
                return Ok(());
            }
            return Err(format!("{op:?} answered HTTP {status}: {v}"));
        }
        let data = &v["data"];
        if op.is_send() {
            let id = data["messageId"].as_str().unwrap_or("");
            if !is_message_id(id) {
                return Err(format!("{op:?}: no messageId in {v}"));
            }
            let to_a = match op {
                Op::ToClient(who) => *who == Who::A,
                Op::ToClients => true,
                Op::ToGroup(g) => self.a_groups.contains(g),
                Op::ToUser(u) => *u == self.a_user,
                Op::ToSystem(system) => *system == SYS_A,
                _ => unreachable!(),
            };
            let online = &data["online"];
            let reached_a = match op {
                Op::ToClient(Who::A) => *online == json!(true),
                Op::ToClients => online.as_u64().unwrap_or(0) >= 1,
                Op::ToUser(_) if to_a => online.as_u64().unwrap_or(0) >= 1,
                _ => true,
            };
            if !reached_a && !self.a_gone {
                self.a_gone = true;
                recipe.note(format!("{op:?} did not reach A: its session ended: {v}"));
            }
            let to = if to_a { "  (to A)" } else { "" };
            recipe.note(format!("{op:?} -> {id}{to}"));
            if to_a {
                self.expected.push(Item::Push(id.to_string()));
            } else {
                self.elsewhere.insert(id.to_string());
            }
            return Ok(());
        }
        match op {
            Op::Bind {
                who: Who::A,
                group,
                user,
            } => {
                if !user.is_empty() {
                    self.a_user = user.clone();
                }
                if !self.a_groups.contains(group) {
                    self.a_groups.push(group.clone());
                    if self.notices {
                        self.expected.push(Item::Notice(1001, self.a.clone()));
                    }
                }
            }
            Op::Unbind { who: Who::A, group } => self.a_groups.retain(|g| g != group),
            Op::Bind {
                who: Who::B, group, ..
            } => {
                if !self.b_groups.contains(group) {
                    self.b_groups.push(group.clone());
                    self.b_notice(1001, group);
                }
            }
            Op::Unbind { who: Who::B, group } => {
                if self.b_groups.contains(group) {
                    self.b_groups.retain(|g| g != group);
                    self.b_notice(1002, group);
                }
            }
            Op::CloseB => {
                self.b_alive = false;
                for g in std::mem::take(&mut self.b_groups) {
                    self.b_notice(1002, &g);
                }
            }
            _ => unreachable!(),
        }
        recipe.note(format!(
            "{op:?} -> ok; A in {:?} as {:?}, B in {:?}",
            self.a_groups, self.a_user, self.b_groups
        ));
        Ok(())
    }

    /// B joined (1001) or left (1002) `group`.
    fn b_notice(&mut self, code: i64, group: &str) {
        if !self.notices {
            return;
        }
        if !self.b_same_core {
            *self.maybe_b.entry(code).or_default() += 1;
        } else if self.a_groups.iter().any(|g| g == group) {
            let b = self.id(Who::B).to_string();
            self.expected.push(Item::Notice(code, b));
        }
    }

    /// Whether `f` has a known place in A's stream: everything but a notice of B's
    /// from another core.
    fn placed(&self, f: &Frame) -> bool {
        match &f.notice {
            Some((_, about)) => self.b_same_core || Some(about) != self.b.as_ref(),
            None => true,
        }
    }

    /// A notice of B's from another core, `f`, is one B may have sent A, and the
    /// `count`th of its code.
    fn maybe(&self, f: &Frame, count: usize) -> Result<(), String> {
        let (code, _) = f.notice.as_ref().expect("a notice");
        if count > self.maybe_b.get(code).copied().unwrap_or(0) {
            return Err(format!(
                "more notices {code} of B than B caused: {}",
                f.show()
            ));
        }
        Ok(())
    }
}

/// Runs `ops` on `conn` in pipelined batches of 1 to 5 requests (written at once, their
/// answers read after), with a short random pause between batches when `pause`.
fn run_ops(
    conn: &mut HttpConn,
    model: &mut Model,
    ops: &[Op],
    rng: &mut Rng,
    recipe: &Recipe,
    pause: bool,
) -> Result<(), String> {
    let mut rest = ops;
    while !rest.is_empty() {
        let n = (rng.range(1, 5) as usize).min(rest.len());
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        let mut bytes = Vec::new();
        for op in batch {
            let (path, system, body) = model.request(op, rng);
            let headers = [("SystemId", system)];
            let body = body.to_string();
            bytes.extend(conn.format_request("POST", path, &headers, body.as_bytes()));
        }
        conn.try_send_raw(&bytes)
            .map_err(|e| format!("writing {n} requests: {e}"))?;
        for op in batch {
            let resp = conn
                .read_response(Duration::from_secs(15))
                .map_err(|e| format!("the answer to {op:?}: {e}"))?;
            let v: Value = serde_json::from_slice(&resp.body)
                .map_err(|e| format!("{op:?}: answer not JSON ({e}): {}", resp.text()))?;
            model.apply(op, resp.status, &v, recipe)?;
        }
        if pause && !rest.is_empty() && rng.chance(50) {
            std::thread::sleep(rng.ms(0, 8));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Frames as the client sees them
// ---------------------------------------------------------------------------

/// A push or notice as A read it.
#[derive(Clone, Debug)]
struct Frame {
    id: String,
    /// A notice: (code, the clientId it is about).
    notice: Option<(i64, String)>,
}

impl Frame {
    fn parse(bytes: &[u8]) -> Result<Frame, String> {
        let text = String::from_utf8_lossy(bytes);
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("a frame not JSON ({e}): {text}"))?;
        let id = v["messageId"].as_str().unwrap_or("");
        if !is_message_id(id) {
            return Err(format!("a frame without a messageId: {text}"));
        }
        let code = v["code"].as_i64().unwrap_or(0);
        let notice = if code == 1001 || code == 1002 {
            let data: Value = serde_json::from_str(v["data"].as_str().unwrap_or(""))
                .map_err(|e| format!("a notice whose data is not JSON text ({e}): {text}"))?;
            let about = data["clientId"].as_str().unwrap_or("").to_string();
            Some((code, about))
        } else {
            None
        };
        Ok(Frame {
            id: id.to_string(),
            notice,
        })
    }

    fn item(&self) -> Item {
        match &self.notice {
            Some((code, about)) => Item::Notice(*code, about.clone()),
            None => Item::Push(self.id.clone()),
        }
    }

    fn show(&self) -> String {
        match &self.notice {
            Some((code, about)) => format!("{}({code} of {about})", self.id),
            None => self.id.clone(),
        }
    }
}

fn show(frames: &[Frame]) -> String {
    let ids: Vec<String> = frames.iter().map(Frame::show).collect();
    format!("[{}]", ids.join(", "))
}

fn show_items(items: &[&Item]) -> String {
    let ids: Vec<String> = items
        .iter()
        .map(|i| match i {
            Item::Push(id) => id.clone(),
            Item::Notice(code, about) => format!("({code} of {about})"),
        })
        .collect();
    format!("[{}]", ids.join(", "))
}

/// The next text frame of `stream` within `timeout`; pings are answered with their
/// pong when `pong` (a write error is ignored: the socket may be gone), pongs skipped.
/// None on timeout, end, error or a close frame.
fn next_frame(stream: &mut TcpStream, timeout: Duration, pong: bool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let (op, payload) = read_raw_frame(stream, left.max(Duration::from_millis(1)))?;
        match op {
            1 => return Some(payload),
            9 if pong => {
                let mut f = Vec::with_capacity(payload.len() + 6);
                frame::client_frame(&mut f, 10, &payload, [7, 1, 8, 2]);
                let _ = stream.write_all(&f);
            }
            9 | 10 => {}
            8 => return None,
            other => panic!("unexpected opcode {other}"),
        }
    }
}

/// `k` frames of `stream`, each within WAIT; Err(the ones read) when one does not come.
fn read_frames(stream: &mut TcpStream, k: usize, pong: bool) -> Result<Vec<Frame>, Vec<Frame>> {
    let mut read = Vec::with_capacity(k);
    while read.len() < k {
        match next_frame(stream, WAIT, pong).map(|b| Frame::parse(&b)) {
            Some(Ok(f)) => read.push(f),
            Some(Err(e)) => panic!("{e}"),
            None => return Err(read),
        }
    }
    Ok(read)
}

/// Reads on, answering pings, until nothing came for `quiet`: A has read everything
/// and acknowledged it through the pings after it (its `last` is then the newest
/// messageId it acknowledged).
fn linger(stream: &mut TcpStream, read: &mut Vec<Frame>, quiet: Duration) {
    while let Some(bytes) = next_frame(stream, quiet, true) {
        read.push(Frame::parse(&bytes).unwrap_or_else(|e| panic!("{e}")));
    }
}

/// A new client of `SYS_A`, with a 4 KiB receive buffer when `small`.
fn open_client(node: &Node, small: bool) -> Raw {
    if !small {
        return Raw::open(node, &format!("systemId={SYS_A}"));
    }
    let mut stream = connect_small_rcvbuf(node.socket_addr(), 4096);
    let path = format!("/ws?systemId={SYS_A}");
    let (status, head) = raw_ws_handshake(&mut stream, node.addr(), &path, "");
    assert_eq!(status, 101, "upgrade: {head}");
    let (op, welcome) = read_raw_frame(&mut stream, WAIT).expect("a welcome");
    assert_eq!(op, 1, "the welcome is a text frame");
    let welcome: Value = serde_json::from_slice(&welcome).expect("a JSON welcome");
    Raw { stream, welcome }
}

/// `shardcast_connections` of each core.
fn per_core(m: &Metrics, workers: u64) -> Vec<f64> {
    (0..workers)
        .map(|k| {
            let k = k.to_string();
            let labels = [("worker", k.as_str())];
            m.try_sum_where("shardcast_connections", &labels)
                .unwrap_or(0.0)
        })
        .collect()
}

/// The one core whose connections grew from `before` to `after`.
fn grew(before: &[f64], after: &[f64]) -> Option<usize> {
    let grown: Vec<usize> = (0..before.len())
        .filter(|&k| after[k] > before[k])
        .collect();
    (grown.len() == 1).then(|| grown[0])
}

fn slow_consumers(m: &Metrics) -> f64 {
    m.try_sum("shardcast_slow_consumers_closed_total")
        .unwrap_or(0.0)
}

/// Whether the node has A attached now (false: detached, or gone).
fn attached(node: &Node, id: &str) -> bool {
    let body = json!({ "clientId": id }).to_string();
    let (status, v) = node.api("/api/get_client_info", Some(SYS_A), &body);
    status == 200 && v["code"] == json!(0) && v["data"]["detached"] != json!(true)
}

/// How A drops.
#[derive(Clone, Copy, Debug, PartialEq)]
enum DropMode {
    /// A TCP reset.
    Reset,
    /// shutdown(SHUT_WR) without a close frame, then reading on until the node closes.
    Fin,
    /// Stopped reading while the gap's pushes came, then a reset.
    StallThenReset,
    /// Left open and unread: the resume finds it attached and takes it over.
    Abandon,
}

/// The `last` a resume names.
#[derive(Clone, Debug, PartialEq)]
enum LastKind {
    /// The last frame A processed.
    Honest,
    /// A lost its newest state: it names an earlier frame it processed (the one at
    /// this fraction, in thousandths, of what it processed), or none.
    Rewind(u64),
    /// A messageId never sent to anybody.
    Bogus(String),
    /// The messageId of a push addressed elsewhere.
    Elsewhere(String),
}

impl LastKind {
    /// A `last` A was never sent: it cannot be placed, so nothing is recovered.
    fn foreign(&self) -> bool {
        matches!(self, LastKind::Bogus(_) | LastKind::Elsewhere(_))
    }
}

// ---------------------------------------------------------------------------
// One round
// ---------------------------------------------------------------------------

fn round(
    node: &Node,
    setup: &Setup,
    seed: u64,
    recipe: &Recipe,
    counts: &mut Counts,
) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let names = Names::new(seed);
    let pong = rng.chance(setup.pongs);
    let small = rng.chance(setup.small_rcvbuf);
    let m0 = node.metrics();
    let slow_before = slow_consumers(&m0);
    let a = open_client(node, small);
    let m1 = node.metrics();
    let a_core = grew(&per_core(&m0, setup.workers), &per_core(&m1, setup.workers));
    let b = rng
        .chance(75)
        .then(|| Raw::open(node, &format!("systemId={SYS_A}")));
    let b_core = match b {
        Some(_) if setup.workers == 1 => Some(0),
        Some(_) if setup.notices => {
            let m2 = node.metrics();
            grew(&per_core(&m1, setup.workers), &per_core(&m2, setup.workers))
        }
        _ => None,
    };
    let b_same_core = a_core.is_some() && a_core == b_core;
    counts.b_same_core += usize::from(b_same_core);
    let mut model = Model {
        a: a.client_id(),
        b: b.as_ref().map(Raw::client_id),
        a_groups: Vec::new(),
        a_user: String::new(),
        b_groups: Vec::new(),
        b_alive: b.is_some(),
        a_gone: false,
        notices: setup.notices,
        b_same_core,
        maybe_b: HashMap::new(),
        // A small receive buffer, big pushes and a burst in each gap: A's own frames
        // overflow `ws.resume_buffer_bytes` (and, should the node's writes fill the
        // socket, its queue past `ws.send_queue_bytes` makes it a slow consumer).
        big: if small { 80 } else { setup.big },
        burst: small,
        expected: Vec::new(),
        elsewhere: HashSet::new(),
        sent: 0,
    };
    recipe.note(format!(
        "A {} on core {a_core:?} (pongs {pong}, small receive buffer {small}), B {:?} on \
         core {b_core:?}",
        model.a, model.b
    ));
    let mut http = HttpConn::connect(node.addr());
    let mut live = vec![Some(a), b];
    let result = play(
        node, setup, &mut rng, &names, &mut model, &mut http, &mut live, pong, recipe, counts,
    );
    let ended = match result {
        Ok(outcome) => outcome,
        Err(Fault::Lie(why)) => return Err(why),
        Err(Fault::Ended(what)) => {
            let slow = slow_consumers(&node.metrics()) - slow_before;
            if slow <= 0.0 {
                return Err(format!("{what}, and no slow consumer was closed"));
            }
            recipe.note(format!(
                "{what}: a slow consumer was closed, the session ended"
            ));
            None
        }
    };
    counts.rounds += 1;
    match ended {
        Some(Outcome::Recovered) => counts.recovered += 1,
        Some(Outcome::NotRecovered) => counts.not_recovered += 1,
        Some(Outcome::Foreign) => counts.foreign += 1,
        None => counts.not_resumed += 1,
    }
    // Goodbyes: no detached session of the round is left behind.
    for id in std::iter::once(&model.a).chain(model.b.as_ref()) {
        let body = json!({ "clientId": id }).to_string();
        let _ = http.api("/api/close_client", Some(SYS_A), &body);
    }
    for raw in live.into_iter().flatten() {
        raw.reset();
    }
    Ok(())
}

/// How a round ended, when A resumed.
enum Outcome {
    Recovered,
    NotRecovered,
    /// The resume named a `last` A was never sent (and was not recovered).
    Foreign,
}

/// Why a round stops early.
enum Fault {
    /// The node broke the contract.
    Lie(String),
    /// A's connection ended (no resume, or the stream stopped): fine only if a slow
    /// consumer was closed in the round.
    Ended(String),
}

impl From<String> for Fault {
    fn from(why: String) -> Fault {
        Fault::Lie(why)
    }
}

/// The round after its clients are open: how its last resume went, or None when the
/// session ended and was not resumed. `live` holds the round's sockets (A's
/// first, B's second; A's replaced by each resume).
#[allow(clippy::too_many_arguments)]
fn play(
    node: &Node,
    setup: &Setup,
    rng: &mut Rng,
    names: &Names,
    model: &mut Model,
    http: &mut HttpConn,
    live: &mut [Option<Raw>],
    pong: bool,
    recipe: &Recipe,
    counts: &mut Counts,
) -> Result<Option<Outcome>, Fault> {
    // Setup: A in ga (maybe also gb), maybe as u1; B maybe in ga and gx; then a batch.
    let mut ops = vec![Op::Bind {
        who: Who::A,
        group: names.ga.clone(),
        user: if rng.chance(60) {
            names.u1.clone()
        } else {
            String::new()
        },
    }];
    if rng.chance(40) {
        ops.push(Op::Bind {
            who: Who::A,
            group: names.gb.clone(),
            user: String::new(),
        });
    }
    if model.b.is_some() {
        for (p, g) in [(60, &names.ga), (50, &names.gx)] {
            if rng.chance(p) {
                let at = rng.upto(ops.len());
                let (group, user) = (g.clone(), names.ub.clone());
                ops.insert(
                    at,
                    Op::Bind {
                        who: Who::B,
                        group,
                        user,
                    },
                );
            }
        }
    }
    run_ops(http, model, &ops, rng, recipe, false)?;
    if rng.chance(40) {
        // Pings come between the frames (and a client that answers them moves its place).
        std::thread::sleep(rng.ms(0, 60));
    }
    let first = rng.upto(10);
    let ops = model.ops(names, rng, first);
    run_ops(http, model, &ops, rng, recipe, false)?;
    if rng.chance(40) {
        std::thread::sleep(rng.ms(0, 60));
    }

    // A reads a prefix of what it was sent and processes a prefix of that. What it
    // processed is always a prefix of its stream: once it skipped a frame of a socket
    // it processes nothing more of that socket.
    let mut processed: Vec<Frame> = Vec::new();
    let mut skipped = false;
    // The token of a resume whose welcome A "lost": the next resume uses it again.
    let mut lost_welcome: Option<String> = None;
    if !model.a_gone {
        let k = rng.upto(model.expected.len());
        let a = live[0].as_mut().expect("A");
        let mut read = read_frames(&mut a.stream, k, pong).map_err(|read| {
            Fault::Ended(format!(
                "A's stream stopped after {} before the drop",
                show(&read)
            ))
        })?;
        if pong && rng.chance(40) {
            linger(&mut a.stream, &mut read, rng.ms(20, 60));
        }
        let k = read.len();
        let j = if rng.chance(20) { rng.upto(k) } else { k };
        recipe.note(format!("A read {} and processed {j}", show(&read)));
        skipped = j < k;
        processed.extend(read.into_iter().take(j));
    }

    for cycle in 1.. {
        let last_kind = match rng.below(100) {
            0..=3 => LastKind::Bogus(format!("{:016x}", rng.next())),
            4..=7 if !model.elsewhere.is_empty() => {
                let mut ids: Vec<&String> = model.elsewhere.iter().collect();
                ids.sort();
                LastKind::Elsewhere(ids[rng.below(ids.len() as u64) as usize].clone())
            }
            8..=17 => LastKind::Rewind(rng.below(1000)),
            _ => LastKind::Honest,
        };
        let last_cycle = cycle >= 2 || last_kind.foreign() || !rng.chance(25);
        let old = live[0].take().expect("A's socket");
        let token = lost_welcome.take().unwrap_or_else(|| old.token());
        let drop = match rng.below(100) {
            0..=34 => DropMode::Reset,
            35..=54 => DropMode::Fin,
            55..=79 => DropMode::StallThenReset,
            _ => DropMode::Abandon,
        };
        let gap_len = rng.range(1, 14) as usize;
        let mut gap = model.ops(names, rng, gap_len);
        if model.burst {
            let at = rng.upto(gap.len());
            let burst = rng.range(10, 30) as usize;
            gap.splice(at..at, std::iter::repeat_n(Op::ToClient(Who::A), burst));
        }
        let mut sender_rng = rng.fork();
        let stall = rng
            .chance(25)
            .then(|| (rng.below(setup.workers) as usize, rng.ms(10, 150)));
        let wait_detached = drop != DropMode::Abandon && rng.chance(70);
        let stall_over_resume = rng.chance(40);
        let gap_first = !last_cycle || rng.chance(50);
        let fin_cap = rng.chance(30).then(|| rng.upto(4));
        let pause = rng.ms(0, 15);
        let unread_for = rng.ms(20, 120);
        recipe.note(format!(
            "cycle {cycle}: drop {drop:?}; stall (core, for) {stall:?} over the resume \
             {stall_over_resume}; wait until detached {wait_detached}; gap answered before the resume {gap_first}; last \
             {last_kind:?}"
        ));
        counts.stalls += usize::from(stall.is_some());
        let a_id = model.a.clone();
        let mut abandoned = None;
        let (resumed, gap_result) = std::thread::scope(|s| {
            let sender = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(sender_rng.below(4)));
                run_ops(http, model, &gap, &mut sender_rng, recipe, true)
            });
            let mut old = old;
            match drop {
                DropMode::Reset => {
                    std::thread::sleep(pause);
                    old.reset();
                }
                DropMode::StallThenReset => {
                    std::thread::sleep(unread_for);
                    old.reset();
                }
                DropMode::Abandon => {
                    std::thread::sleep(pause);
                    abandoned = Some(old);
                }
                DropMode::Fin => {
                    std::thread::sleep(pause);
                    let _ = old.stream.shutdown(Shutdown::Write);
                    let mut after = Vec::new();
                    while fin_cap.is_none_or(|cap| after.len() < cap) {
                        match next_frame(&mut old.stream, WAIT, false) {
                            Some(bytes) => after.push(bytes),
                            None => break,
                        }
                    }
                    let what = if skipped { " (not processed)" } else { "" };
                    recipe.note(format!("after its FIN A read {} frames{what}", after.len()));
                    if !skipped {
                        for bytes in after {
                            match Frame::parse(&bytes) {
                                Ok(f) => processed.push(f),
                                Err(e) => return (Err(e), Ok(())),
                            }
                        }
                    }
                    old.reset();
                }
            }
            if let (Some((core, d)), false) = (stall, stall_over_resume) {
                let mut stop = CoreStop::new(node.pid(), core);
                std::thread::sleep(d);
                stop.resume();
            }
            if wait_detached {
                let deadline = Instant::now() + WAIT;
                while attached(node, &a_id) {
                    if Instant::now() > deadline {
                        return (Err("A still attached 5 s after its drop".into()), Ok(()));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let mut sender = Some(sender);
            let mut gap_done = None;
            if gap_first {
                gap_done = sender.take().map(|h| h.join().expect("the sender thread"));
            }
            let last = match &last_kind {
                LastKind::Honest => processed.last().map(|f| f.id.clone()),
                LastKind::Rewind(at) => {
                    processed.truncate(processed.len() * *at as usize / 1000);
                    processed.last().map(|f| f.id.clone())
                }
                LastKind::Bogus(id) | LastKind::Elsewhere(id) => Some(id.clone()),
            };
            let last = last.unwrap_or_default();
            recipe.note(format!("resuming with last {last:?}"));
            let query = format!("systemId={SYS_A}&resume={token}&last={last}");
            let open =
                move || Raw::try_open(node, &query).map_err(|v| format!("resume refused: {v}"));
            let back = match (stall, stall_over_resume) {
                (Some((core, d)), true) => {
                    // The resume comes while a core (maybe the session's) is stopped.
                    let mut stop = CoreStop::new(node.pid(), core);
                    let resuming = s.spawn(open);
                    std::thread::sleep(d);
                    stop.resume();
                    resuming.join().expect("the resume thread")
                }
                _ => open(),
            };
            let gap_done = match (gap_done, sender) {
                (Some(done), _) => done,
                (None, Some(h)) => h.join().expect("the sender thread"),
                (None, None) => unreachable!(),
            };
            (back, gap_done)
        });
        gap_result?;
        let mut back = resumed?;
        if let Some(old) = abandoned {
            old.reset();
        }
        counts.resumes += 1;
        let w = back.welcome["data"].clone();
        recipe.note(format!("resume welcome {w}"));
        if w["resumed"] != json!(true) {
            live[0] = Some(back);
            if drop == DropMode::Abandon && pong {
                // The abandoned socket's last pongs may reach the node during the
                // probe: a socket that speaks keeps its session.
                recipe.note("not resumed: the abandoned socket may have answered the probe");
                return Ok(None);
            }
            return Err(Fault::Ended(format!("resumed:false: {w}")));
        }
        if w["clientId"] != json!(model.a) {
            return Err(Fault::Lie(format!("resumed as another connection: {w}")));
        }
        let Some(recovered) = w["recovered"].as_bool() else {
            return Err(Fault::Lie(format!(
                "a resumed welcome without recovered: {w}"
            )));
        };
        if recovered && last_kind.foreign() {
            return Err(Fault::Lie(format!(
                "recovered:true for a last A was never sent ({last_kind:?})"
            )));
        }
        if !recovered && setup.lossless && !last_kind.foreign() {
            let m = node.metrics();
            return Err(Fault::Lie(format!(
                "recovered:false though nothing can be lost in this setup \
                 (resume_frames_dropped {:?}, resume_bound_dropped {:?})",
                m.try_sum("shardcast_resume_frames_dropped_total"),
                m.try_sum("shardcast_resume_bound_dropped_total")
            )));
        }
        if !last_cycle && recovered {
            // Read part of the replay, process part of that, drop again.
            counts.second_drops += 1;
            let avail = model.expected.len().saturating_sub(processed.len());
            let mut k = rng.upto(avail);
            if rng.chance(30) {
                // As if the welcome never reached A: it reads nothing, sends nothing,
                // and resumes again with the token it had (docs/api.md §8: it stands
                // until the client shows it got the new one).
                recipe.note("A lost that welcome");
                lost_welcome = Some(token.clone());
                k = 0;
            }
            let mut read = read_frames(&mut back.stream, k, pong).map_err(|read| {
                Fault::Ended(format!(
                    "recovered:true, yet the stream stopped after {} of the {avail} frames \
                     addressed to A after last",
                    show(&read)
                ))
            })?;
            if pong && lost_welcome.is_none() && rng.chance(40) {
                linger(&mut back.stream, &mut read, rng.ms(20, 60));
            }
            let k = read.len();
            let j = if rng.chance(20) { rng.upto(k) } else { k };
            recipe.note(format!("A read {} and processed {j}", show(&read)));
            skipped = j < k;
            processed.extend(read.into_iter().take(j));
            live[0] = Some(back);
            continue;
        }

        // The end: a sentinel push after everything, read up to it, then a short quiet.
        let body = json!({"clientId": model.a, "msg": "sentinel"}).to_string();
        let (status, v) = http.api("/api/send_to_client", Some(SYS_A), &body);
        if status != 200 || v["data"]["online"] != json!(true) {
            live[0] = Some(back);
            return Err(Fault::Ended(format!(
                "the sentinel push: HTTP {status} {v}"
            )));
        }
        let sentinel = v["data"]["messageId"].as_str().unwrap_or("").to_string();
        let mut after = Vec::new();
        loop {
            let Some(bytes) = next_frame(&mut back.stream, WAIT, pong) else {
                live[0] = Some(back);
                return Err(Fault::Ended(format!(
                    "the sentinel {sentinel} did not come after the resume; got {}",
                    show(&after)
                )));
            };
            let f = Frame::parse(&bytes)?;
            if f.id == sentinel {
                break;
            }
            after.push(f);
        }
        let quiet = Duration::from_millis(if setup.notices { 60 } else { 25 });
        let mut late = Vec::new();
        while let Some(bytes) = next_frame(&mut back.stream, quiet, pong) {
            late.push(Frame::parse(&bytes)?);
        }
        live[0] = Some(back);
        recipe.note(format!(
            "after the welcome: {} | sentinel {sentinel} | {}",
            show(&after),
            show(&late)
        ));
        if recovered {
            check_recovered(model, &processed, &after, &late)?;
        } else {
            check_not_recovered(model, &after, &late)?;
        }
        return Ok(Some(match (recovered, last_kind.foreign()) {
            (_, true) => Outcome::Foreign,
            (true, false) => Outcome::Recovered,
            (false, false) => Outcome::NotRecovered,
        }));
    }
    unreachable!()
}

/// `recovered:true`: what A processed, then what came after the welcome, is exactly
/// the expected stream; nothing placed comes after the sentinel.
fn check_recovered(
    model: &Model,
    processed: &[Frame],
    after: &[Frame],
    late: &[Frame],
) -> Result<(), String> {
    let all: Vec<&Frame> = processed.iter().chain(after).chain(late).collect();
    let mut ids = HashSet::new();
    let mut maybe: HashMap<i64, usize> = HashMap::new();
    for f in &all {
        if !ids.insert(&f.id) {
            return Err(format!("recovered:true, yet {} came twice", f.show()));
        }
        if model.elsewhere.contains(&f.id) {
            return Err(format!(
                "recovered:true, yet {} was not addressed to A",
                f.show()
            ));
        }
        if !model.placed(f) {
            let (code, _) = f.notice.as_ref().expect("a notice");
            let n = maybe.entry(*code).or_default();
            *n += 1;
            model.maybe(f, *n)?;
        }
    }
    if let Some(f) = late.iter().find(|f| model.placed(f)) {
        return Err(format!(
            "recovered:true, yet {} came after the sentinel",
            f.show()
        ));
    }
    let got: Vec<Item> = processed
        .iter()
        .chain(after)
        .filter(|f| model.placed(f))
        .map(Frame::item)
        .collect();
    if got != model.expected {
        let got: Vec<&Item> = got.iter().collect();
        let want: Vec<&Item> = model.expected.iter().collect();
        let same = got.iter().zip(&want).take_while(|(g, w)| g == w).count();
        return Err(format!(
            "recovered:true, yet the stream differs from item {same} on:\n  expected \
             {}\n  processed {}\n  after the welcome {}",
            show_items(&want),
            show(processed),
            show(after)
        ));
    }
    Ok(())
}

/// `recovered:false`: no frame twice, what is placed in its order, nothing addressed
/// elsewhere.
fn check_not_recovered(model: &Model, after: &[Frame], late: &[Frame]) -> Result<(), String> {
    let place: HashMap<&Item, usize> = model
        .expected
        .iter()
        .enumerate()
        .map(|(i, item)| (item, i))
        .collect();
    let mut ids = HashSet::new();
    let mut maybe: HashMap<i64, usize> = HashMap::new();
    let mut at = None;
    for f in after.iter().chain(late) {
        if !ids.insert(&f.id) {
            return Err(format!("recovered:false, and {} came twice", f.show()));
        }
        if !model.placed(f) {
            let (code, _) = f.notice.as_ref().expect("a notice");
            let n = maybe.entry(*code).or_default();
            *n += 1;
            model.maybe(f, *n)?;
            continue;
        }
        let item = f.item();
        let Some(&i) = place.get(&item) else {
            let whose = if model.elsewhere.contains(&f.id) {
                "addressed elsewhere"
            } else {
                "not addressed to A"
            };
            return Err(format!("recovered:false, and {} is {whose}", f.show()));
        };
        // A notice (code, about) may stand for several expected ones: order by pushes.
        if matches!(item, Item::Push(_)) {
            if at.is_some_and(|prev| prev > i) {
                return Err(format!(
                    "recovered:false, and {} is out of order in {}",
                    f.show(),
                    show(after)
                ));
            }
            at = Some(i);
        }
    }
    Ok(())
}
