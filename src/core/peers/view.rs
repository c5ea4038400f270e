//! This core's view of the peers: the membership table it was last given,
//! and what it has learnt of each peer on its own — whether a dialling task
//! keeps a link to it, whether that link has broken, when the peer last
//! joined, and which node ids were recently looked up in etcd and not
//! found. From these it decides whether a peer without a link is worth
//! waiting for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};
use tokio::sync::mpsc;

use crate::cluster::PeerTable;

/// How long a node id not found in etcd is remembered as unknown.
const UNKNOWN_TTL: Duration = Duration::from_secs(1);

/// What this core knows of the other nodes.
pub(in crate::core) struct View {
    pub(in crate::core) table: Arc<PeerTable>,
    /// Peers a dialling task is responsible for, with the sender that
    /// wakes the task to dial at once (the peer joined again).
    pub(in crate::core) maintained: HashMap<u16, mpsc::Sender<()>>,
    /// Peers whose link broke or failed to come up and is not up again.
    broken: HashSet<u16>,
    /// When each peer last joined this core's view (appeared, or came back
    /// with a new record): within `request_timeout` of it, a peer without a
    /// link is waited for even if a dial has failed.
    joined: HashMap<u16, Instant>,
    /// Nodes recently looked up in etcd and not found: ids of departed
    /// nodes are answered offline without asking etcd again each time.
    unknown: HashMap<u16, Instant>,
}

impl View {
    pub(super) fn new(table: Arc<PeerTable>) -> Self {
        Self {
            table,
            maintained: HashMap::new(),
            broken: HashSet::new(),
            joined: HashMap::new(),
            unknown: HashMap::new(),
        }
    }

    /// Takes `table` as the peers from now on. Returns the peers that need
    /// a dialling task, with the receiver of its wake-ups; a peer that
    /// joined again while its task runs has that task woken instead.
    pub(super) fn adopt(
        &mut self,
        table: Arc<PeerTable>,
        now: Instant,
    ) -> Vec<(u16, mpsc::Receiver<()>)> {
        self.broken.retain(|n| table.contains_key(n));
        self.joined.retain(|n, _| table.contains_key(n));
        let mut new = Vec::new();
        for (node, peer) in table.iter() {
            let known = self.maintained.contains_key(node) && self.table.get(node) == Some(peer);
            if known {
                continue;
            }
            self.joined.insert(*node, now);
            self.broken.remove(node);
            match self.maintained.get(node) {
                // Wake it; a wake-up already pending is as good.
                Some(kick) => drop(kick.try_send(())),
                None => {
                    let (kick, woken) = mpsc::channel(1);
                    self.maintained.insert(*node, kick);
                    new.push((*node, woken));
                }
            }
        }
        self.table = table;
        new
    }

    /// The peers of this view.
    pub(super) fn nodes(&self) -> Vec<u16> {
        self.table.keys().copied().collect()
    }

    /// Whether `node` was looked up and not found within the last second;
    /// records a new lookup when not.
    pub(in crate::core) fn recently_unknown(&mut self, node: u16) -> bool {
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

    /// Whether `node` joined this view less than `within` ago.
    pub(super) fn just_joined(&self, node: u16, within: Duration) -> bool {
        self.joined.get(&node).is_some_and(|t| t.elapsed() < within)
    }

    /// A peer in etcd whose link has not failed yet, or that has joined
    /// less than `within` ago: worth waiting for.
    pub(super) fn worth_waiting_for(&self, node: u16, within: Duration) -> bool {
        self.table.contains_key(&node)
            && (!self.broken.contains(&node) || self.just_joined(node, within))
    }

    /// Records whether this core's link to `node` is broken.
    pub(super) fn set_broken(&mut self, node: u16, broken: bool) {
        if broken {
            self.broken.insert(node);
        } else {
            self.broken.remove(&node);
        }
    }
}
