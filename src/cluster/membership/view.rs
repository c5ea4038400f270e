//! The loop that owns what this node knows of the cluster.
//!
//! It is the only caller of the sink, so events reach the node in order, and
//! it never waits on etcd itself: etcd calls run in tasks (lease keeping,
//! watching, each register or refresh) whose results come back here as
//! [`Internal`] messages. Node views from the watch, re-snapshots and
//! refreshes can arrive out of order; each carries its etcd revision and an
//! older one never overwrites a newer one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::lease::{LeaseEvent, LeaseTask};
use super::store::{Snapshot, Store};
use super::watch::{self, Change};
use super::{ClusterEvent, Command, Established, Internal, Peer, RegisterError, Reply};
use crate::logtext::esc;
use crate::registry::SystemEntry;

/// Whether the loop goes on after a command.
enum Flow {
    Continue,
    Stop,
}

/// The loop that owns what this node knows of the cluster.
pub(super) struct View {
    store: Arc<Store>,
    node_id: u16,
    sink: Box<dyn Fn(ClusterEvent) + Send>,
    /// Live peers as of `nodes_revision`.
    peers: BTreeMap<u16, Peer>,
    /// What the sink was last given.
    published: Arc<BTreeMap<u16, Peer>>,
    nodes_revision: i64,
    systems: HashMap<String, SystemEntry>,
    ready: bool,
    lease: Arc<AtomicI64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    internal: mpsc::UnboundedSender<Internal>,
}

impl View {
    /// Starts the lease and watch tasks; the receiver is for [`View::run`].
    pub(super) fn start(
        store: Arc<Store>,
        est: Established,
        peers: BTreeMap<u16, Peer>,
        sink: Box<dyn Fn(ClusterEvent) + Send>,
    ) -> (Self, mpsc::UnboundedReceiver<Internal>) {
        let (internal, internal_rx) = mpsc::unbounded_channel();
        let lease = Arc::new(AtomicI64::new(est.lease));
        let keeper = LeaseTask::new(
            store.clone(),
            est.node_id,
            est.record,
            lease.clone(),
            est.granted_at,
            internal.clone(),
        );
        let from = est.snapshot.revision + 1;
        let tasks = vec![
            tokio::spawn(keeper.run()),
            tokio::spawn(watch::run(store.clone(), from, internal.clone())),
        ];
        let view = Self {
            store,
            node_id: est.node_id,
            sink,
            published: Arc::new(peers.clone()),
            peers,
            nodes_revision: est.snapshot.revision,
            systems: est.snapshot.systems.into_iter().collect(),
            ready: true,
            lease,
            tasks,
            internal,
        };
        (view, internal_rx)
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        loop {
            tokio::select! {
                command = commands.recv() => {
                    if let Flow::Stop = self.command(command).await {
                        return;
                    }
                }
                Some(message) = internal.recv() => self.internal(message),
            }
        }
    }

    /// `None`: every handle is gone, so nobody can stop the thread later.
    async fn command(&mut self, command: Option<Command>) -> Flow {
        match command {
            Some(Command::Register { id, entry, reply }) => self.spawn_register(id, entry, reply),
            Some(Command::Refresh { reply }) => self.spawn_refresh(reply),
            Some(Command::Shutdown { reply }) => {
                self.stop(true).await;
                let _ = reply.send(());
                return Flow::Stop;
            }
            #[cfg(test)]
            Some(Command::Crash { reply }) => {
                self.stop(false).await;
                let _ = reply.send(());
                return Flow::Stop;
            }
            None => {
                self.stop(true).await;
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    async fn stop(&mut self, revoke: bool) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if !revoke {
            return;
        }
        match self.store.revoke(self.lease.load(Ordering::SeqCst)).await {
            Ok(()) => info!(node = self.node_id, "left the cluster"),
            Err(e) => {
                warn!(node = self.node_id, error = %esc(&e), "lease not revoked; peers drop this node when it expires")
            }
        }
    }

    fn spawn_register(
        &self,
        id: String,
        entry: SystemEntry,
        reply: Reply<Result<(), RegisterError>>,
    ) {
        let store = self.store.clone();
        let internal = self.internal.clone();
        tokio::spawn(async move {
            match store.create_system(&id, &entry).await {
                Ok(true) => {
                    info!(system = %esc(&id), "system registered");
                    let _ = internal.send(Internal::Registered { id, entry, reply });
                }
                Ok(false) => {
                    let _ = reply.send(Err(RegisterError::Taken));
                }
                Err(e) => {
                    let _ = reply.send(Err(RegisterError::Unavailable(e.to_string())));
                }
            }
        });
    }

    fn spawn_refresh(&self, reply: Reply<()>) {
        let store = self.store.clone();
        let internal = self.internal.clone();
        tokio::spawn(async move {
            let read = store.read_nodes().await.ok();
            let _ = internal.send(Internal::Nodes { read, reply });
        });
    }

    fn internal(&mut self, message: Internal) {
        match message {
            Internal::Registered { id, entry, reply } => {
                self.add_system(id, entry);
                let _ = reply.send(Ok(()));
            }
            Internal::Nodes { read, reply } => {
                if let Some((revision, nodes)) = read {
                    self.replace_nodes(revision, nodes);
                    self.publish();
                }
                let _ = reply.send(());
            }
            Internal::Snapshot(snapshot) => self.apply_snapshot(snapshot),
            Internal::Changes(changes) => self.apply_changes(changes),
            Internal::Lease(event) => self.lease_event(event),
        }
    }

    fn add_system(&mut self, id: String, entry: SystemEntry) {
        if self.systems.get(&id) == Some(&entry) {
            return;
        }
        self.systems.insert(id.clone(), entry.clone());
        (self.sink)(ClusterEvent::System { id, entry });
    }

    fn apply_snapshot(&mut self, snapshot: Snapshot) {
        for (id, entry) in snapshot.systems {
            self.add_system(id, entry);
        }
        self.replace_nodes(snapshot.revision, snapshot.nodes);
        self.publish_if_changed();
    }

    /// Takes `nodes` as the view unless the view is already newer.
    fn replace_nodes(&mut self, revision: i64, mut nodes: BTreeMap<u16, Peer>) {
        if revision <= self.nodes_revision {
            return;
        }
        nodes.remove(&self.node_id);
        self.nodes_revision = revision;
        self.set_peers(nodes);
    }

    /// Applies watch events newer than the view (a refresh may be ahead).
    fn apply_changes(&mut self, changes: Vec<Change>) {
        let base = self.nodes_revision;
        let mut nodes = self.peers.clone();
        for change in changes {
            match change {
                Change::System(id, entry) => self.add_system(id, entry),
                Change::NodeUp(id, peer, rev) if rev > base => {
                    if id != self.node_id {
                        nodes.insert(id, peer);
                    }
                    self.nodes_revision = self.nodes_revision.max(rev);
                }
                Change::NodeDown(id, rev) if rev > base => {
                    nodes.remove(&id);
                    self.nodes_revision = self.nodes_revision.max(rev);
                }
                Change::NodeUp(..) | Change::NodeDown(..) => {}
            }
        }
        self.set_peers(nodes);
        self.publish_if_changed();
    }

    /// Replaces the peers, logging who joined and who left.
    fn set_peers(&mut self, nodes: BTreeMap<u16, Peer>) {
        for (id, peer) in &nodes {
            if self.peers.get(id) != Some(peer) {
                info!(node = id, addr = %esc(&peer.addr), "peer joined");
            }
        }
        for id in self.peers.keys().filter(|id| !nodes.contains_key(id)) {
            info!(node = id, "peer left");
        }
        self.peers = nodes;
    }

    fn publish_if_changed(&mut self) {
        if *self.published != self.peers {
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.published = Arc::new(self.peers.clone());
        (self.sink)(ClusterEvent::Peers(self.published.clone()));
    }

    fn lease_event(&mut self, event: LeaseEvent) {
        match event {
            LeaseEvent::Lost | LeaseEvent::Regained => {
                let ready = matches!(event, LeaseEvent::Regained);
                if self.ready != ready {
                    self.ready = ready;
                    (self.sink)(ClusterEvent::Ready(ready));
                }
            }
            LeaseEvent::NodeLost => (self.sink)(ClusterEvent::NodeLost),
        }
    }
}
