//! Cluster mode: etcd membership, authenticated links between nodes, and
//! the per-core state that routes operations to other nodes.
//!
//! Each core keeps its own view of the peers (delivered by mailbox from the
//! membership thread), its own links, and the requests it is waiting on. A
//! peer's reply comes back on the link that carried the request, to the
//! core that sent it, so no state is shared between cores.

pub mod frame;
pub mod handshake;
pub mod link;
pub mod membership;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};

use crate::core::mailbox::Reply;
use crate::core::slots::Slots;
use frame::{ClientInfoWire, ConnStatus, GroupCount, InfoResult};
use link::{Credentials, LinkIo};
use membership::Peer;

pub type PeerTable = BTreeMap<u16, Peer>;

/// How long a node id not found in etcd is remembered as unknown.
const UNKNOWN_TTL: Duration = Duration::from_secs(1);

/// A peer's answer to one request.
#[derive(Debug)]
pub enum Answer {
    Done(ConnStatus),
    Count(u64),
    Info(InfoResult),
    Clients(Vec<ClientInfoWire>),
    Groups(Vec<GroupCount>),
}

/// A request waiting for its answer.
pub struct Pending {
    pub node: u16,
    pub reply: Reply<Answer>,
    pub sent: Instant,
}

/// One core's share of the cluster.
pub struct CoreCluster {
    pub creds: Rc<Credentials>,
    pub request_timeout: Duration,
    pub peers: Arc<PeerTable>,
    pub links: Slots<LinkIo>,
    /// Key of this core's established link to each peer.
    pub outbound: HashMap<u16, (u32, u32)>,
    /// Peers a dialling task is responsible for.
    pub maintained: HashSet<u16>,
    /// Peers whose link broke or failed to come up and is not up again.
    pub broken: HashSet<u16>,
    pub pending: HashMap<u64, Pending>,
    pub next_req: u64,
    pub dirty: Vec<(u32, u32)>,
    /// Nodes recently looked up in etcd and not found: ids of departed
    /// nodes are answered offline without asking etcd again each time.
    pub unknown: HashMap<u16, Instant>,
}

impl CoreCluster {
    pub fn new(creds: Credentials, request_timeout: Duration, peers: Arc<PeerTable>) -> Self {
        Self {
            creds: Rc::new(creds),
            request_timeout,
            peers,
            links: Slots::default(),
            outbound: HashMap::new(),
            maintained: HashSet::new(),
            broken: HashSet::new(),
            pending: HashMap::new(),
            next_req: 1,
            dirty: Vec::new(),
            unknown: HashMap::new(),
        }
    }

    /// Whether `node` was looked up and not found within the last second;
    /// records a new lookup when not.
    pub fn recently_unknown(&mut self, node: u16) -> bool {
        let now = Instant::now();
        match self.unknown.get(&node) {
            Some(t) if now.duration_since(*t) < UNKNOWN_TTL => true,
            _ => {
                self.unknown
                    .retain(|_, t| now.duration_since(*t) < UNKNOWN_TTL);
                self.unknown.insert(node, now);
                false
            }
        }
    }

    /// Answers nobody will claim: their requester timed out and left.
    pub fn expire_pending(&mut self) {
        let limit = self.request_timeout * 2;
        self.pending.retain(|_, p| p.sent.elapsed() < limit);
    }
}

/// What the membership thread maintains for the whole node: the latest
/// peer table and whether we hold a live lease. Cores get every change by
/// mailbox; this copy seeds new cores, serves `/readyz` and the rare lookup
/// of a node a core has not heard of.
pub struct ClusterView {
    peers: std::sync::Mutex<Arc<PeerTable>>,
    ready: std::sync::atomic::AtomicBool,
    mailboxes: Vec<flume::Sender<crate::core::mailbox::CoreMsg>>,
}

impl ClusterView {
    pub fn new(mailboxes: Vec<flume::Sender<crate::core::mailbox::CoreMsg>>, ready: bool) -> Self {
        Self {
            peers: Default::default(),
            ready: std::sync::atomic::AtomicBool::new(ready),
            mailboxes,
        }
    }

    pub fn peers(&self) -> Arc<PeerTable> {
        self.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Applies one event of the membership thread.
    pub fn apply(&self, event: membership::ClusterEvent) {
        use crate::core::mailbox::CoreMsg;
        use membership::ClusterEvent;
        match event {
            ClusterEvent::Peers(peers) => {
                if let Ok(mut p) = self.peers.lock() {
                    *p = peers.clone();
                }
                self.tell_cores(|| CoreMsg::Peers(peers.clone()));
            }
            ClusterEvent::System { id, entry } => {
                let id: Arc<str> = Arc::from(id);
                self.tell_cores(|| CoreMsg::SystemAdded {
                    id: id.clone(),
                    entry: entry.clone(),
                    reply: None,
                });
            }
            ClusterEvent::Ready(ready) => self
                .ready
                .store(ready, std::sync::atomic::Ordering::Release),
            ClusterEvent::NodeLost => self.tell_cores(|| CoreMsg::NodeLost),
        }
    }

    fn tell_cores(&self, make: impl Fn() -> crate::core::mailbox::CoreMsg) {
        for mb in &self.mailboxes {
            let _ = mb.send(make());
        }
    }
}
