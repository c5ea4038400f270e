//! The node's own copy of what membership says: the peers and whether this
//! node holds a live lease.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::membership::{ClusterEvent, Peer};

/// The other nodes of the cluster by node id.
pub type PeerTable = BTreeMap<u16, Peer>;

/// What the membership thread maintains for the whole node: the latest
/// peer table and whether we hold a live lease. Cores get every change by
/// mailbox; this copy seeds new cores, serves `/readyz` and the rare lookup
/// of a node a core has not heard of.
pub struct ClusterView {
    peers: Mutex<Arc<PeerTable>>,
    ready: AtomicBool,
}

impl ClusterView {
    pub fn new(ready: bool) -> Self {
        Self {
            peers: Default::default(),
            ready: AtomicBool::new(ready),
        }
    }

    pub fn peers(&self) -> Arc<PeerTable> {
        self.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Takes in what one event of the membership thread says about the
    /// node as a whole (the cores hear of it separately).
    pub fn apply(&self, event: &ClusterEvent) {
        match event {
            ClusterEvent::Peers(peers) => {
                if let Ok(mut p) = self.peers.lock() {
                    *p = peers.clone();
                }
            }
            ClusterEvent::Ready(ready) => self.ready.store(*ready, Ordering::Release),
            ClusterEvent::System { .. } | ClusterEvent::NodeLost => {}
        }
    }
}
