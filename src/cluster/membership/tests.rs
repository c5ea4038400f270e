//! Membership against a real etcd: each test starts its own `etcd` on free
//! loopback ports with a temporary data dir and kills it when done. The
//! failure tests pause etcd with SIGSTOP, which is what makes calls hang
//! without erring.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::pin::pin;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

const TTL: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_millis(500);
const SECRET_A: &str = "0123456789abcdef0123456789abcdef";
const SECRET_B: &str = "fedcba9876543210fedcba9876543210";

/// An etcd of its own, killed on drop.
struct Etcd {
    child: Child,
    /// (client, peer)
    ports: (u16, u16),
    endpoint: String,
    dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = (free_port(), free_port());
        let child = spawn_etcd(dir.path(), ports);
        let mut etcd = Self {
            child,
            ports,
            endpoint: format!("http://127.0.0.1:{}", ports.0),
            dir,
        };
        etcd.wait_healthy();
        etcd
    }

    /// Kills etcd and starts it again on the same data and ports.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_etcd(self.dir.path(), self.ports);
        self.wait_healthy();
    }

    /// Waits for etcd to answer; fails at once, with its log, if it exited.
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "etcd exited ({status}) before it was healthy:\n{}",
                    self.log()
                );
            }
            if healthy(self.ports.0) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd did not become healthy:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Process::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    fn pause(&self) {
        self.signal("STOP");
    }

    fn resume(&self) {
        self.signal("CONT");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill(); // SIGKILL works on a stopped process too
        let _ = self.child.wait();
    }
}

fn spawn_etcd(dir: &Path, (client, peer): (u16, u16)) -> Child {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("etcd.log"))
        .expect("log file");
    Process::new("etcd")
        .arg("--name=t")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=t={peer_url}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("etcd starts")
}

/// A loopback port that was free a moment ago and that no other test of
/// this process has been given (the kernel may hand a just-closed port out
/// again, and etcd needs two distinct ones).
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

fn healthy(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let request = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    s.write_all(request.as_bytes()).is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.contains("\"health\":\"true\"")
}

/// A node's config for the cluster of `etcd`, named after that etcd so that
/// no two tests share a key prefix even if they shared an etcd.
fn config(etcd: &Etcd) -> ClusterConfig {
    ClusterConfig {
        enabled: true,
        name: format!("test-{}", etcd.ports.0),
        advertise_addr: "127.0.0.1:7901".into(),
        etcd_endpoints: vec![etcd.endpoint.clone()],
        secret: "cluster secret".into(),
        lease_ttl: TTL,
        request_timeout: TIMEOUT,
        ..ClusterConfig::default()
    }
}

/// Where the keys of `config(etcd)`'s cluster live.
fn prefix(etcd: &Etcd) -> String {
    format!("/shardcast/test-{}", etcd.ports.0)
}

fn me(addr: &str) -> NodeInfo {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    NodeInfo {
        addr: addr.into(),
        cores: 2,
        version: "0.1.0".into(),
        started,
    }
}

/// A joined node and what its sink received.
struct Node {
    joined: Joined,
    events: std::sync::mpsc::Receiver<ClusterEvent>,
}

impl Node {
    fn join(cfg: &ClusterConfig, addr: &str, systems: Vec<(String, SystemEntry)>) -> Self {
        Self::try_join(cfg, addr, systems).expect("join")
    }

    fn try_join(
        cfg: &ClusterConfig,
        addr: &str,
        systems: Vec<(String, SystemEntry)>,
    ) -> Result<Self, MembershipError> {
        let (tx, events) = std::sync::mpsc::channel();
        let sink = Box::new(move |e| {
            let _ = tx.send(e);
        });
        let joined = join(cfg, me(addr), systems, false, sink)?;
        Ok(Self { joined, events })
    }

    fn id(&self) -> u16 {
        self.joined.node_id
    }

    fn handle(&self) -> &MembershipHandle {
        &self.joined.handle
    }

    /// The first event within `within` that `pick` accepts.
    fn wait_for<T>(
        &self,
        within: Duration,
        pick: impl Fn(&ClusterEvent) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.events.recv_timeout(left).ok()?;
            if let Some(v) = pick(&event) {
                return Some(v);
            }
        }
    }

    fn wait_peers(&self, within: Duration, accept: impl Fn(&BTreeMap<u16, Peer>) -> bool) -> bool {
        self.wait_for(within, |e| match e {
            ClusterEvent::Peers(p) if accept(p) => Some(()),
            _ => None,
        })
        .is_some()
    }

    fn wait_ready(&self, within: Duration, ready: bool) -> bool {
        self.wait_for(within, |e| match e {
            ClusterEvent::Ready(r) if *r == ready => Some(()),
            _ => None,
        })
        .is_some()
    }

    fn wait_system(&self, within: Duration, id: &str) -> Option<SystemEntry> {
        self.wait_for(within, |e| match e {
            ClusterEvent::System { id: got, entry } if got == id => Some(entry.clone()),
            _ => None,
        })
    }

    fn register(&self, id: &str, entry: SystemEntry) -> Result<(), RegisterError> {
        block_on(self.handle().register(id, entry))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.joined.handle.shutdown();
    }
}

/// A minimal executor (no tokio): the handle must work from any runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

fn token(secret: &str) -> SystemEntry {
    SystemEntry {
        secret: Some(secret.into()),
        webhook_url: None,
    }
}

/// Reads a key with a client of its own: (value, lease, create revision).
fn raw_get(etcd: &Etcd, key: &str) -> Option<(Vec<u8>, i64, i64)> {
    raw(etcd, |mut client| async move {
        let resp = client.get(key, None).await.expect("get");
        resp.kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.lease(), kv.create_revision()))
    })
}

fn raw<T, F: Future<Output = T>>(etcd: &Etcd, f: impl FnOnce(etcd_client::Client) -> F) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = etcd_client::Client::connect([&etcd.endpoint], None)
            .await
            .expect("connect");
        f(client).await
    })
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn allocated_ids_are_distinct_and_a_configured_id_in_use_is_refused() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let a = Node::join(&cfg, "127.0.0.1:1", vec![]);
    let b = Node::join(&cfg, "127.0.0.1:2", vec![]);
    assert_eq!((a.id(), b.id()), (1, 2));
    let taken = ClusterConfig {
        node_id: 1,
        ..cfg.clone()
    };
    match Node::try_join(&taken, "127.0.0.1:3", vec![]) {
        Err(e @ MembershipError::NodeIdInUse(1)) => {
            assert_eq!(e.to_string(), "node id 1 is in use")
        }
        other => panic!("expected node id in use, got {:?}", other.map(|n| n.id())),
    }
    let free = ClusterConfig { node_id: 9, ..cfg };
    let c = Node::join(&free, "127.0.0.1:3", vec![]);
    assert_eq!(c.id(), 9);
    assert_eq!(c.joined.peers.keys().copied().collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn unreachable_etcd_is_a_clear_error_in_bounded_time() {
    let port = free_port(); // nothing listens there
    let cfg = ClusterConfig {
        etcd_endpoints: vec![format!("http://127.0.0.1:{port}")],
        lease_ttl: TTL,
        request_timeout: TIMEOUT,
        ..ClusterConfig::default()
    };
    let started = Instant::now();
    let err = Node::try_join(&cfg, "127.0.0.1:1", vec![])
        .err()
        .expect("no etcd");
    assert!(started.elapsed() < TIMEOUT * 3, "{:?}", started.elapsed());
    assert!(matches!(err, MembershipError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

#[test]
fn peers_come_and_go() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let a = Node::join(&cfg, "127.0.0.1:1", vec![]);
    let b = Node::join(&cfg, "127.0.0.1:2", vec![]);
    assert!(b.joined.peers.contains_key(&a.id()));
    assert!(a.wait_peers(secs(2), |p| p
        .get(&b.id())
        .is_some_and(|p| p.addr == "127.0.0.1:2")));

    // Killed without revoking: gone once etcd expires the lease.
    let crashed = Instant::now();
    b.handle().crash();
    assert!(a.wait_peers(TTL + secs(1), |p| !p.contains_key(&b.id())));
    assert!(crashed.elapsed() <= TTL + secs(1));

    // Shut down: the lease is revoked, so at once.
    let c = Node::join(&cfg, "127.0.0.1:3", vec![]);
    assert!(a.wait_peers(secs(2), |p| p.contains_key(&c.id())));
    let stopped = Instant::now();
    c.handle().shutdown();
    assert!(a.wait_peers(secs(1), |p| !p.contains_key(&c.id())));
    assert!(
        stopped.elapsed() < Duration::from_millis(700),
        "{:?}",
        stopped.elapsed()
    );
}

#[test]
fn refresh_delivers_peers_before_it_completes() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let a = Node::join(&cfg, "127.0.0.1:1", vec![]);
    let b = Node::join(&cfg, "127.0.0.1:2", vec![]);
    assert!(a.wait_peers(secs(2), |p| p.contains_key(&b.id())));
    block_on(a.handle().refresh());
    let got = a.events.try_iter().any(|e| match e {
        ClusterEvent::Peers(p) => p.contains_key(&b.id()) && !p.contains_key(&a.id()),
        _ => false,
    });
    assert!(got, "refresh delivered no Peers event");
}

#[test]
fn register_is_exclusive_and_the_secret_is_not_stored() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let a = Node::join(&cfg, "127.0.0.1:1", vec![]);
    let b = Node::join(&cfg, "127.0.0.1:2", vec![]);
    assert!(a.register("sys", token(SECRET_A)).is_ok());
    assert!(matches!(
        a.register("sys", token(SECRET_B)),
        Err(RegisterError::Taken)
    ));
    assert!(matches!(
        b.register("sys", token(SECRET_B)),
        Err(RegisterError::Taken)
    ));
    // On Ok the registering node's sink already had the event.
    assert_eq!(a.wait_system(Duration::ZERO, "sys"), Some(token(SECRET_A)));
    assert_eq!(b.wait_system(secs(1), "sys"), Some(token(SECRET_A)));

    let (value, lease, _) =
        raw_get(&etcd, &format!("{}/systems/sys", prefix(&etcd))).expect("stored");
    let text = String::from_utf8(value).expect("utf8");
    assert!(!text.contains(SECRET_A), "{text}");
    assert_eq!(lease, 0, "systems are not leased");

    let open = SystemEntry::default();
    assert!(b.register("open", open.clone()).is_ok());
    assert_eq!(a.wait_system(secs(1), "open"), Some(open));
}

#[test]
fn api_systems_are_created_if_absent_and_existing_ones_kept() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let a = Node::join(&cfg, "127.0.0.1:1", vec![("s1".into(), token(SECRET_A))]);
    assert_eq!(a.joined.systems, vec![("s1".to_string(), token(SECRET_A))]);
    let b = Node::join(
        &cfg,
        "127.0.0.1:2",
        vec![
            ("s1".into(), token(SECRET_B)),
            ("s2".into(), token(SECRET_B)),
        ],
    );
    let mut systems = b.joined.systems.clone();
    systems.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        systems,
        vec![
            ("s1".into(), token(SECRET_A)),
            ("s2".into(), token(SECRET_B))
        ]
    );
    assert_eq!(a.wait_system(secs(1), "s2"), Some(token(SECRET_B)));
}

#[test]
fn a_short_etcd_pause_loses_nothing() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let a = Node::join(&cfg, "127.0.0.1:1", vec![]);
    let b = Node::join(&cfg, "127.0.0.1:2", vec![]);
    assert!(a.wait_peers(secs(2), |p| p.contains_key(&b.id())));
    let key = format!("{}/nodes/{}", prefix(&etcd), a.id());
    let (_, _, created) = raw_get(&etcd, &key).expect("registered");

    etcd.pause();
    let asked = Instant::now();
    let answer = a.register("paused", SystemEntry::default());
    let waited = asked.elapsed();
    thread::sleep(Duration::from_millis(800).saturating_sub(asked.elapsed()));
    etcd.resume();
    assert!(
        matches!(answer, Err(RegisterError::Unavailable(_))),
        "{answer:?}"
    );
    assert!(waited < TIMEOUT + Duration::from_millis(300), "{waited:?}");

    // Within the TTL: still ready, still a peer, same registration.
    let lost = a.wait_for(TTL, |e| match e {
        ClusterEvent::Ready(false) | ClusterEvent::NodeLost => Some(()),
        ClusterEvent::Peers(p) if !p.contains_key(&b.id()) => Some(()),
        _ => None,
    });
    assert!(lost.is_none(), "the pause cost something");
    assert_eq!(raw_get(&etcd, &key).map(|(_, _, c)| c), Some(created));
    // The watch still delivers.
    assert!(b.register("after", SystemEntry::default()).is_ok());
    assert!(a.wait_system(secs(1), "after").is_some());
}

#[test]
fn a_pause_longer_than_the_ttl_costs_readiness_not_the_node_id() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let a = Node::join(&cfg, "127.0.0.1:1", vec![]);
    etcd.pause();
    let paused = Instant::now();
    assert!(a.wait_ready(TTL + Duration::from_millis(300), false));
    let unready_after = paused.elapsed();
    // Ready while the lease could still be alive (renewed every ttl/3).
    assert!(
        unready_after >= TTL * 2 / 3 - Duration::from_millis(100),
        "{unready_after:?}"
    );
    thread::sleep(Duration::from_millis(500));
    etcd.resume();
    assert!(a.wait_ready(secs(3), true));
    let key = format!("{}/nodes/{}", prefix(&etcd), a.id());
    let (value, lease, _) = raw_get(&etcd, &key).expect("registered again");
    assert_ne!(lease, 0);
    let info: NodeInfo = serde_json::from_slice(&value).expect("record");
    assert_eq!(info.addr, "127.0.0.1:1");
    // And it stays registered: the new lease is kept alive.
    thread::sleep(TTL + Duration::from_millis(500));
    assert_eq!(raw_get(&etcd, &key).map(|(_, l, _)| l), Some(lease));
}

#[test]
fn a_revoked_lease_is_replaced_under_the_same_id() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let a = Node::join(&cfg, "127.0.0.1:1", vec![]);
    let key = format!("{}/nodes/{}", prefix(&etcd), a.id());
    let (_, lease, _) = raw_get(&etcd, &key).expect("registered");
    raw(&etcd, |mut c| async move {
        c.lease_revoke(lease).await.expect("revoke")
    });
    assert!(a.wait_ready(TTL, false));
    assert!(a.wait_ready(secs(2), true));
    let (_, new_lease, _) = raw_get(&etcd, &key).expect("registered again");
    assert_ne!(new_lease, lease);
}

#[test]
fn an_id_taken_by_another_node_is_node_lost() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let a = Node::join(&cfg, "127.0.0.1:1", vec![]);
    let key = format!("{}/nodes/{}", prefix(&etcd), a.id());
    let (_, lease, _) = raw_get(&etcd, &key).expect("registered");
    let impostor = serde_json::to_vec(&me("127.0.0.1:66")).expect("json");
    raw(&etcd, |mut c| async move {
        c.lease_revoke(lease).await.expect("revoke");
        c.put(key, impostor, None).await.expect("put");
    });
    assert!(a.wait_ready(TTL, false));
    assert!(a
        .wait_for(secs(2), |e| matches!(e, ClusterEvent::NodeLost)
            .then_some(()))
        .is_some());
}

#[test]
fn the_watch_survives_an_etcd_restart() {
    let mut etcd = Etcd::start();
    let cfg = config(&etcd);
    let a = Node::join(&cfg, "127.0.0.1:1", vec![]);
    let b = Node::join(&cfg, "127.0.0.1:2", vec![]);
    assert!(a.wait_peers(secs(2), |p| p.contains_key(&b.id())));
    etcd.restart();
    let c = Node::join(&cfg, "127.0.0.1:3", vec![]);
    assert!(a.wait_peers(secs(3), |p| p.contains_key(&c.id())
        && p.contains_key(&b.id())));
    assert!(c.register("after", SystemEntry::default()).is_ok());
    assert!(a.wait_system(secs(2), "after").is_some());
}

#[test]
fn a_claim_moves_only_our_own_record_to_a_new_lease() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let ours = serde_json::to_vec(&me("127.0.0.1:1")).expect("json");
    let theirs = serde_json::to_vec(&me("127.0.0.1:2")).expect("json");
    let key = format!("{}/nodes/5", prefix(&etcd));
    let key = key.as_str();
    let (old, new, result) = raw(&etcd, |mut c| async move {
        let old = c.lease_grant(30, None).await.expect("grant").id();
        let opts = etcd_client::PutOptions::new().with_lease(old);
        c.put(key, ours.clone(), Some(opts)).await.expect("put");
        let store = Store::connect(&cfg, Default::default())
            .await
            .expect("store");
        let new = store.grant().await.expect("grant");
        let mine = store.claim_node(5, &ours, new).await.expect("claim");
        let other = store.claim_node(5, &theirs, new).await.expect("claim");
        (old, new, [mine, other])
    });
    assert!(matches!(result, [Claim::Claimed, Claim::Taken]));
    assert_ne!(old, new);
    assert_eq!(raw_get(&etcd, key).map(|(_, lease, _)| lease), Some(new));
}

/// Token mode: systems stored without a secret get one, and two nodes doing
/// it at once store one secret per system, which both then read.
#[test]
fn secretless_systems_get_one_secret_even_when_two_nodes_race() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let opened = Node::join(
        &cfg,
        "127.0.0.1:1",
        vec![("old".into(), SystemEntry::default())],
    );
    assert!(opened.register("kept", token(SECRET_A)).is_ok());
    drop(opened);
    let (given, seen) = raw(&etcd, |_| async {
        let a = Store::connect(&cfg, Default::default())
            .await
            .expect("store a");
        let b = Store::connect(&cfg, Default::default())
            .await
            .expect("store b");
        let (ga, gb) = tokio::join!(
            a.give_secrets(|| Ok(SECRET_A.to_string())),
            b.give_secrets(|| Ok(SECRET_B.to_string()))
        );
        let given = [ga.expect("give a"), gb.expect("give b")];
        let seen = [
            a.snapshot().await.expect("snapshot a").systems,
            b.snapshot().await.expect("snapshot b").systems,
        ];
        (given, seen)
    });
    let winners: Vec<_> = given.iter().flatten().collect();
    assert_eq!(winners, vec!["old"], "one node gives the secret: {given:?}");
    assert_eq!(seen[0], seen[1], "both nodes read the same entries");
    let old = seen[0].iter().find(|(id, _)| id == "old").map(|(_, e)| e);
    let winner = if given[0].is_empty() {
        SECRET_B
    } else {
        SECRET_A
    };
    assert_eq!(old, Some(&token(winner)));
    let kept = seen[0].iter().find(|(id, _)| id == "kept").map(|(_, e)| e);
    assert_eq!(kept, Some(&token(SECRET_A)), "a secret is never replaced");
}

/// Puts `value` at `key` with a client of its own, as anyone with write
/// access to etcd could.
fn raw_put(etcd: &Etcd, key: &str, value: Vec<u8>) {
    raw(etcd, |mut c| async move {
        c.put(key, value, None).await.expect("put");
    });
}

/// An etcd writer copies one system's stored entry into another's key (the
/// secret of a tenant it holds, to become the other tenant), and writes an
/// entry of an earlier release: neither opens there. Each is ignored —
/// the running node keeps the entry it had, a node joining afterwards has
/// none for those ids — counted once and logged with its key.
#[test]
fn a_copied_or_unsealed_registry_entry_is_ignored_and_counted() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let a = Node::join(&cfg, "127.0.0.1:1", vec![]);
    assert!(a.register("sa", token(SECRET_A)).is_ok());
    assert!(a.register("sb", token(SECRET_B)).is_ok());
    let (stored_a, _, _) = raw_get(&etcd, &format!("{}/systems/sa", prefix(&etcd))).expect("sa");

    raw_put(
        &etcd,
        &format!("{}/systems/sb", prefix(&etcd)),
        stored_a.clone(),
    );
    raw_put(
        &etcd,
        &format!("{}/systems/legacy", prefix(&etcd)),
        b"{}".to_vec(),
    );
    // Once the watch delivers a later write, it has passed the bad ones.
    assert!(a.register("probe", SystemEntry::default()).is_ok());
    let b = Node::join(&cfg, "127.0.0.1:2", vec![]);
    assert!(b.register("probe2", SystemEntry::default()).is_ok());
    assert!(a.wait_system(secs(1), "probe2").is_some());
    let changed = a.events.try_iter().find_map(|e| match e {
        ClusterEvent::System { id, entry } if id == "sb" || id == "legacy" => Some((id, entry)),
        _ => None,
    });
    assert_eq!(changed, None, "a rejected entry reached the node");
    let metrics = a.handle().metrics();
    assert_eq!(metrics.registry_entries_rejected(), 2);
    assert_eq!(metrics.node_records_rejected(), 0);

    // A node that joined after the writes read the same keys: the copied
    // and unsealed entries are skipped (it never had a good one for them).
    let mut ids: Vec<&str> = b.joined.systems.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["probe", "sa"]);
    assert_eq!(b.handle().metrics().registry_entries_rejected(), 2);
    // The copy still holds A's entry, which still opens at A's key only.
    let sa = b.joined.systems.iter().find(|(id, _)| id == "sa");
    assert_eq!(sa.map(|(_, e)| e), Some(&token(SECRET_A)));
}

/// A node record whose `addr` carries a line break (or is no host:port) is
/// not a peer: ignored, counted once however often `nodes/` is read again.
#[test]
fn a_node_record_with_a_bad_addr_is_ignored_and_counted_once() {
    let etcd = Etcd::start();
    let cfg = config(&etcd);
    let a = Node::join(&cfg, "127.0.0.1:1", vec![]);
    let forged = NodeInfo {
        addr: "127.0.0.1:9\n2026-01-01T00:00:00Z ERROR forged".into(),
        ..me("x")
    };
    let value = serde_json::to_vec(&forged).expect("json");
    raw_put(&etcd, &format!("{}/nodes/77", prefix(&etcd)), value);
    let spaced = serde_json::to_vec(&me("a host:1")).expect("json");
    raw_put(&etcd, &format!("{}/nodes/78", prefix(&etcd)), spaced);
    let b = Node::join(&cfg, "127.0.0.1:2", vec![]);
    let listed = std::cell::Cell::new(false);
    let lists_bad = |p: &BTreeMap<u16, Peer>| p.contains_key(&77) || p.contains_key(&78);
    assert!(a.wait_peers(secs(2), |p| {
        listed.set(listed.get() || lists_bad(p));
        p.contains_key(&b.id())
    }));
    for _ in 0..3 {
        block_on(a.handle().refresh());
    }
    for e in a.events.try_iter() {
        if let ClusterEvent::Peers(p) = e {
            listed.set(listed.get() || lists_bad(&p));
        }
    }
    assert!(!listed.get(), "a record with a bad addr became a peer");
    assert_eq!(a.handle().metrics().node_records_rejected(), 2);
    assert_eq!(b.handle().metrics().node_records_rejected(), 2);
    assert!(!b.joined.peers.contains_key(&77));
}
