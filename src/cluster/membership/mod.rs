//! Cluster membership: the etcd side thread.
//!
//! etcd holds two things for a cluster (docs/cluster.md, docs/api.md §4): which nodes
//! are alive (`nodes/<id>`, each under a lease this thread keeps alive) and
//! the registry of systems (`systems/<id>`, created only if absent so two
//! nodes can never both register one id). etcd-client needs tokio while the
//! rest of the node runs monoio, so all of it lives on one std thread with a
//! current-thread tokio runtime; cores talk to it through a tokio channel
//! ([`MembershipHandle`]) and hear from it through the `sink` callback
//! ([`ClusterEvent`]), so no core ever waits on tokio.
//!
//! On that thread one loop owns the view (peers, systems, readiness) and is
//! the only caller of `sink`, so events arrive in order; etcd calls run in
//! their own tasks (lease keeping, watching, each register or refresh) so a
//! slow or silent etcd delays none of the others. A paused etcd answers
//! nothing and reports no error, so every call is bounded by
//! `cluster.request_timeout`: `register` answers `Unavailable` in time, the
//! node stays ready while its lease may still be alive, and the watch
//! re-snapshots when its stream breaks.
//!
//! Lease loss: while etcd does not confirm the lease the node stays ready
//! until `lease_ttl` has passed since the last confirmation (the lease may
//! still be alive); then it emits `Ready(false)` and keeps granting a new
//! lease and putting `nodes/<id>` back, emitting `Ready(true)` when that
//! works, or `NodeLost` when another node's record holds the id
//! (`membership_lease.rs`).
//!
//! The sink runs on the etcd thread: it must hand events over (mailboxes)
//! and return, never block, or keep-alives wait behind it. Dropping every
//! [`MembershipHandle`] has the effect of [`MembershipHandle::shutdown`].
//!
//! Secrets: registry entries are stored sealed (`registry_codec.rs`: AES-GCM
//! under a key from the cluster secret, the system id as associated data);
//! neither system secrets nor the cluster secret are ever logged. What etcd
//! holds is outside input: a record that does not open or decode is ignored
//! (the view keeps what it had), counted in [`MembershipMetrics`] and logged
//! once, and every value from etcd goes into a log line through
//! `logtext::esc`.

mod lease;
mod registry_codec;
mod store;
#[cfg(test)]
mod tests;
mod view;
mod watch;

use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::ClusterConfig;
use crate::logtext::esc;
use crate::metrics::MembershipMetrics;
use crate::registry::SystemEntry;
use lease::LeaseEvent;
use store::{Claim, Fail, Snapshot, Store};
use view::View;
use watch::Change;

/// How long joining may take, in request timeouts (connect, lease, id,
/// systems and snapshot each take one round trip when etcd is healthy).
const JOIN_BUDGET_TIMEOUTS: u32 = 5;
/// Slack on top of the thread's own bounds before a caller stops waiting.
const GRACE: Duration = Duration::from_millis(500);
/// How long a finished thread gives leftover tasks to wind down.
const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(200);

/// What a node publishes about itself at `nodes/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub addr: String,
    pub cores: u8,
    pub version: String,
    pub started: u64,
}

/// Another live node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node: u16,
    pub addr: String,
    pub cores: u8,
    pub started: u64,
}

impl Peer {
    fn new(node: u16, info: NodeInfo) -> Self {
        Self {
            node,
            addr: info.addr,
            cores: info.cores,
            started: info.started,
        }
    }
}

/// Everything the node learns from etcd, delivered to `sink` in order, from
/// the etcd thread.
///
/// Events describe changes after the state returned in [`Joined`]; the sink
/// may be called before `join` has returned.
#[derive(Debug, Clone)]
pub enum ClusterEvent {
    /// The full set of live peers (this node excluded) after every change.
    Peers(Arc<BTreeMap<u16, Peer>>),
    /// A system registered (or seen at snapshot) anywhere in the cluster.
    System { id: String, entry: SystemEntry },
    /// Ready = registered under a live lease. False while the lease is lost
    /// and being re-granted.
    Ready(bool),
    /// Re-registration under our node id failed (another node took it): the
    /// node must close its connections (reason node_lost).
    NodeLost,
}

/// The result of [`join`]: this node's id and the cluster as it was then.
pub struct Joined {
    pub node_id: u16,
    pub peers: BTreeMap<u16, Peer>,
    pub systems: Vec<(String, SystemEntry)>,
    pub handle: MembershipHandle,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("system id is already registered")]
    Taken,
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("cannot reach etcd at {endpoints}: {reason}")]
    Unreachable { endpoints: String, reason: String },
    #[error("node id {0} is in use")]
    NodeIdInUse(u16),
    #[error("no free node id: all of 1..=65535 are in use")]
    NoFreeId,
    #[error("etcd did not answer in time while joining ({0})")]
    Timeout(String),
    #[error("etcd failed while joining: {0}")]
    Etcd(String),
    #[error("cannot start the etcd thread: {0}")]
    Thread(String),
}

impl From<Fail> for MembershipError {
    fn from(f: Fail) -> Self {
        if f.timed_out {
            Self::Timeout(f.to_string())
        } else {
            Self::Etcd(f.to_string())
        }
    }
}

/// The answer to a command a task awaits.
type Reply<T> = oneshot::Sender<T>;
/// The answer to a command a plain thread waits for, with a deadline
/// (`std`: tokio's channels have no blocking receive with a timeout).
type Done = std_mpsc::SyncSender<()>;

/// Requests from the node to the etcd thread.
enum Command {
    Register {
        id: String,
        entry: SystemEntry,
        reply: Reply<Result<(), RegisterError>>,
    },
    Refresh {
        reply: Reply<()>,
    },
    Shutdown {
        reply: Done,
    },
    /// Tests: stop without revoking the lease, like a killed process.
    #[cfg(test)]
    Crash {
        reply: Done,
    },
}

/// Results of the thread's tasks, handed to the loop that owns the view.
enum Internal {
    Registered {
        id: String,
        entry: SystemEntry,
        reply: Reply<Result<(), RegisterError>>,
    },
    Nodes {
        read: Option<(i64, BTreeMap<u16, Peer>)>,
        reply: Reply<()>,
    },
    Snapshot(Snapshot),
    Changes(Vec<Change>),
    Lease(LeaseEvent),
}

/// The node's side of the etcd thread. Cheap to clone.
#[derive(Clone)]
pub struct MembershipHandle {
    commands: mpsc::UnboundedSender<Command>,
    timeout: Duration,
    thread: Arc<Mutex<Option<thread::JoinHandle<()>>>>,
    metrics: Arc<MembershipMetrics>,
}

impl MembershipHandle {
    /// The counters of the etcd thread (rejected records), for `/metrics`.
    pub fn metrics(&self) -> Arc<MembershipMetrics> {
        self.metrics.clone()
    }

    /// Create-if-absent transaction on `systems/<id>`. Answers within
    /// cluster.request_timeout: Unavailable when etcd does not answer in
    /// time. Awaitable from any runtime (tokio's channels need none).
    ///
    /// On `Ok` the sink has already been given the `System` event. An
    /// `Unavailable` write may still land in etcd later (etcd paused, not
    /// dead); every node then learns it through the watch.
    pub async fn register(&self, id: &str, entry: SystemEntry) -> Result<(), RegisterError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Register {
            id: id.to_owned(),
            entry,
            reply,
        };
        if self.commands.send(command).is_err() {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Re-read `nodes/` now (an id from an unknown node arrived); completes
    /// after the resulting Peers event was delivered to the sink (or after
    /// request_timeout).
    pub async fn refresh(&self) {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Refresh { reply }).is_ok() {
            let _ = answer.await;
        }
    }

    /// Revoke the lease (peers learn at once) and stop the thread. Blocking,
    /// bounded by request_timeout + `GRACE` + `RUNTIME_SHUTDOWN`. Later calls on any clone do
    /// nothing; `register` then answers `Unavailable`.
    pub fn shutdown(&self) {
        self.stop(|reply| Command::Shutdown { reply });
    }

    /// Tests: stop the thread without revoking, as if the process died.
    #[cfg(test)]
    pub(crate) fn crash(&self) {
        self.stop(|reply| Command::Crash { reply });
    }

    fn stop(&self, command: impl FnOnce(Done) -> Command) {
        let (reply, answer) = std_mpsc::sync_channel(1);
        if self.commands.send(command(reply)).is_err() {
            return;
        }
        if answer.recv_timeout(self.timeout + GRACE).is_err() {
            warn!("etcd thread did not stop in time");
            return;
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn stopped() -> RegisterError {
    RegisterError::Unavailable("membership thread stopped".into())
}

/// What the thread reports once joined.
struct Welcome {
    node_id: u16,
    peers: BTreeMap<u16, Peer>,
    systems: Vec<(String, SystemEntry)>,
}

/// Connects, obtains a node id, registers it under a lease, registers
/// `systems` (api.systems: create if absent, keep existing ones and their
/// secrets; the entry passed has secret None in open mode or Some(fresh
/// secret) in token mode — only used when creating), takes the snapshot,
/// starts the watch, and returns. With `give_secrets` (token mode), every
/// stored system without a secret (registered in open mode) first gets one,
/// written back to etcd so that every node uses the same (see
/// `Store::give_secrets`). Blocks the caller (the main thread, before the
/// cores start) at most `JOIN_BUDGET_TIMEOUTS` + 2 request timeouts (+
/// `GRACE`); a clear error when etcd is unreachable.
///
/// The node is ready when this returns; the sink gets only what changes
/// after the returned snapshot (it may be called before this returns).
pub fn join(
    cfg: &ClusterConfig,
    me: NodeInfo,
    systems: Vec<(String, SystemEntry)>,
    give_secrets: bool,
    sink: Box<dyn Fn(ClusterEvent) + Send>,
) -> Result<Joined, MembershipError> {
    let (commands, received) = mpsc::unbounded_channel();
    let (welcome_tx, welcome_rx) = std_mpsc::sync_channel(1);
    let metrics = Arc::new(MembershipMetrics::default());
    let start = Start {
        cfg: cfg.clone(),
        me,
        systems,
        give_secrets,
        metrics: metrics.clone(),
    };
    let thread = thread::Builder::new()
        .name("shardcast-etcd".into())
        .spawn(move || thread_main(start, sink, received, welcome_tx))
        .map_err(|e| MembershipError::Thread(e.to_string()))?;
    let wait = cfg.request_timeout * (JOIN_BUDGET_TIMEOUTS + 2) + GRACE;
    let welcome = match welcome_rx.recv_timeout(wait) {
        Ok(result) => result?,
        Err(_) => return Err(MembershipError::Timeout(format!("no answer in {wait:?}"))),
    };
    Ok(Joined {
        node_id: welcome.node_id,
        peers: welcome.peers,
        systems: welcome.systems,
        handle: MembershipHandle {
            commands,
            timeout: cfg.request_timeout,
            thread: Arc::new(Mutex::new(Some(thread))),
            metrics,
        },
    })
}

/// What the thread needs to join.
struct Start {
    cfg: ClusterConfig,
    me: NodeInfo,
    systems: Vec<(String, SystemEntry)>,
    /// Token mode: systems without a secret get one (`Store::give_secrets`).
    give_secrets: bool,
    metrics: Arc<MembershipMetrics>,
}

/// The join's result, for the thread that waits for it with a deadline.
type WelcomeTx = std_mpsc::SyncSender<Result<Welcome, MembershipError>>;

fn thread_main(
    start: Start,
    sink: Box<dyn Fn(ClusterEvent) + Send>,
    commands: mpsc::UnboundedReceiver<Command>,
    welcome: WelcomeTx,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = welcome.send(Err(MembershipError::Thread(e.to_string())));
            return;
        }
    };
    runtime.block_on(run_thread(start, sink, commands, welcome));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
}

async fn run_thread(
    start: Start,
    sink: Box<dyn Fn(ClusterEvent) + Send>,
    commands: mpsc::UnboundedReceiver<Command>,
    welcome: WelcomeTx,
) {
    let store = match connect(&start.cfg, start.metrics.clone()).await {
        Ok(store) => Arc::new(store),
        Err(e) => {
            let _ = welcome.send(Err(e));
            return;
        }
    };
    let mut granted = None;
    let budget = start.cfg.request_timeout * JOIN_BUDGET_TIMEOUTS;
    let joined = tokio::time::timeout(budget, establish(&store, &start, &mut granted))
        .await
        .unwrap_or_else(|_| {
            Err(MembershipError::Timeout(format!(
                "joining took over {budget:?}"
            )))
        });
    match joined {
        Ok(joined) => serve(store, joined, sink, commands, welcome).await,
        Err(e) => {
            if let Some(lease) = granted {
                let _ = store.revoke(lease).await;
            }
            let _ = welcome.send(Err(e));
        }
    }
}

async fn connect(
    cfg: &ClusterConfig,
    metrics: Arc<MembershipMetrics>,
) -> Result<Store, MembershipError> {
    let unreachable = |reason: String| MembershipError::Unreachable {
        endpoints: cfg.etcd_endpoints.join(","),
        reason,
    };
    match tokio::time::timeout(cfg.request_timeout, Store::connect(cfg, metrics)).await {
        Ok(Ok(store)) => Ok(store),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "no answer within {:?}",
            cfg.request_timeout
        ))),
    }
}

/// This node as registered: id, lease, record, and the cluster at join.
struct Established {
    node_id: u16,
    lease: i64,
    granted_at: Instant,
    record: Vec<u8>,
    snapshot: Snapshot,
}

async fn establish(
    store: &Store,
    start: &Start,
    granted: &mut Option<i64>,
) -> Result<Established, MembershipError> {
    let record = serde_json::to_vec(&start.me).map_err(|e| MembershipError::Etcd(e.to_string()))?;
    let granted_at = Instant::now();
    // The first call: its failure means etcd is not there.
    let lease = store
        .grant()
        .await
        .map_err(|e| MembershipError::Unreachable {
            endpoints: start.cfg.etcd_endpoints.join(","),
            reason: e.to_string(),
        })?;
    *granted = Some(lease);
    let node_id = node_id(store, start.cfg.node_id, &record, lease).await?;
    for (id, entry) in &start.systems {
        if store.create_system(id, entry).await? {
            info!(system = %esc(id), "system from api.systems registered");
        }
    }
    if start.give_secrets {
        for id in store.give_secrets(crate::registry::new_secret).await? {
            warn!(system = %esc(&id), "the system had no secret: a new one is stored in etcd");
        }
    }
    let snapshot = store.snapshot().await?;
    Ok(Established {
        node_id,
        lease,
        granted_at,
        record,
        snapshot,
    })
}

/// The configured id if free, else the lowest free one.
async fn node_id(
    store: &Store,
    configured: u16,
    record: &[u8],
    lease: i64,
) -> Result<u16, MembershipError> {
    if configured == 0 {
        return store
            .allocate(record, lease)
            .await?
            .ok_or(MembershipError::NoFreeId);
    }
    for _ in 0..3 {
        match store.claim_node(configured, record, lease).await? {
            Claim::Claimed => return Ok(configured),
            Claim::Taken => return Err(MembershipError::NodeIdInUse(configured)),
            Claim::Conflict => {}
        }
    }
    Err(MembershipError::NodeIdInUse(configured))
}

/// Hands the join result over, then runs the loop until shutdown.
async fn serve(
    store: Arc<Store>,
    est: Established,
    sink: Box<dyn Fn(ClusterEvent) + Send>,
    commands: mpsc::UnboundedReceiver<Command>,
    welcome: WelcomeTx,
) {
    let mut peers = est.snapshot.nodes.clone();
    peers.remove(&est.node_id);
    let hello = Welcome {
        node_id: est.node_id,
        peers: peers.clone(),
        systems: est.snapshot.systems.clone(),
    };
    if welcome.send(Ok(hello)).is_err() {
        let _ = store.revoke(est.lease).await; // the caller gave up waiting
        return;
    }
    info!(
        node = est.node_id,
        peers = peers.len(),
        "joined the cluster"
    );
    let (view, internal) = View::start(store, est, peers, sink);
    view.run(commands, internal).await;
}
